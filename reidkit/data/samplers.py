"""Batch samplers for training: PK identity batches, or plain random batches.

Both are deterministic functions of (seed, epoch), so a resumed run draws exactly the
batches the uninterrupted run would have; under torch.distributed each process takes
every world-th batch of the same epoch order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import numpy as np


class _EpochBatches:
    """What both samplers share: batches fixed by (seed, epoch), the same number of them
    for every process, every world-th one for this process, and skipping the batches a
    resumed run already trained."""

    def __init__(self, seed: int, rank: int, world: int) -> None:
        self.seed, self.rank, self.world = seed, rank, world
        self.epoch = 0
        self.skip = 0  # batches of this epoch already trained (a resumed run)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        raise NotImplementedError

    def _mine(self) -> list[list[int]]:
        # every process must take the same number of steps, or DDP waits forever
        batches = self._batches()
        return batches[: len(batches) // self.world * self.world][self.rank :: self.world]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._mine()[self.skip :])

    def __len__(self) -> int:
        return len(self._mine())


class PKSampler(_EpochBatches):
    """Batches of P identities x K images (Hermans et al., 2017).

    Each epoch shuffles every identity's images, cuts them into groups of K (drawing with
    replacement for identities with fewer than K images, dropping a last partial group),
    and fills batches with P groups of distinct identities drawn at random.

    Args:
        labels: the training label of every sample.
        batch_size: P * K.
        num_instances: K.
        seed: base seed; the epoch is mixed in.
        rank, world: this process's share under torch.distributed.
    """

    def __init__(
        self,
        labels: list[int],
        batch_size: int,
        num_instances: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        super().__init__(seed, rank, world)
        if num_instances < 1 or batch_size < num_instances or batch_size % num_instances:
            raise ValueError(
                f"batch size {batch_size} must be a positive multiple of K={num_instances}"
            )
        self.by_label: dict[int, list[int]] = defaultdict(list)
        for index, label in enumerate(labels):
            self.by_label[label].append(index)
        self.k = num_instances
        self.p = batch_size // num_instances
        if self.p > len(self.by_label):
            raise ValueError(
                f"a batch needs {self.p} identities but there are only {len(self.by_label)}"
            )

    def _batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        groups: dict[int, list[list[int]]] = {}
        for label in sorted(self.by_label):
            idx = np.array(self.by_label[label])
            idx = (
                rng.choice(idx, self.k, replace=True) if len(idx) < self.k else rng.permutation(idx)
            )
            groups[label] = [
                idx[s : s + self.k].tolist() for s in range(0, len(idx) - self.k + 1, self.k)
            ]
        batches = []
        while True:
            available = [label for label, g in groups.items() if g]
            if len(available) < self.p:
                break
            chosen = rng.choice(available, self.p, replace=False)
            batches.append([i for label in chosen for i in groups[int(label)].pop()])
        return batches


class RandomBatchSampler(_EpochBatches):
    """Shuffled batches of ``batch_size`` (the last partial batch dropped)."""

    def __init__(
        self, size: int, batch_size: int, *, seed: int = 0, rank: int = 0, world: int = 1
    ) -> None:
        super().__init__(seed, rank, world)
        self.size, self.batch_size = size, batch_size

    def _batches(self) -> list[list[int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.size).tolist()
        n = self.size // self.batch_size
        return [order[b * self.batch_size : (b + 1) * self.batch_size] for b in range(n)]
