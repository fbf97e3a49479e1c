"""Batch samplers for training: PK identity batches (optionally preferring other cameras
within an identity), or plain random batches.

All are deterministic functions of (seed, epoch), so a resumed run draws exactly the
batches the uninterrupted run would have; under torch.distributed each process takes
every world-th batch of the same epoch order. An epoch is one pass over the samples, or,
with ``iters``, exactly that many batches for each process, drawn from as many passes as
it takes (Cluster Contrast's fixed iterations per epoch).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import numpy as np


class _EpochBatches:
    """What both samplers share: batches fixed by (seed, epoch), the same number of them
    for every process, every world-th one for this process, and skipping the batches a
    resumed run already trained."""

    def __init__(self, seed: int, rank: int, world: int, iters: int = 0) -> None:
        if iters < 0:
            raise ValueError(f"iterations per epoch must be 0 (one pass) or more, not {iters}")
        self.seed, self.rank, self.world, self.iters = seed, rank, world, iters
        self.epoch = 0
        self.skip = 0  # batches of this epoch already trained (a resumed run)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self, rng: np.random.Generator) -> list[list[int]]:
        """One pass over the samples."""
        raise NotImplementedError

    def _epoch(self) -> list[list[int]]:
        if not self.iters:
            return self._batches(np.random.default_rng([self.seed, self.epoch]))
        # (the first pass's seed [seed, epoch, 0] draws what [seed, epoch] draws: numpy's
        # seed sequences ignore trailing zeros, so fewer iterations than a pass take the
        # one-pass epoch's first batches)
        batches: list[list[int]] = []
        want = self.iters * self.world
        while len(batches) < want:
            one = self._batches(np.random.default_rng([self.seed, self.epoch, len(batches)]))
            if not one:
                raise ValueError("a pass over the samples fills no batch")
            batches += one
        return batches[:want]

    def _mine(self) -> list[list[int]]:
        # every process must take the same number of steps, or DDP waits forever
        batches = self._epoch()
        return batches[: len(batches) // self.world * self.world][self.rank :: self.world]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._mine()[self.skip :])

    def __len__(self) -> int:
        return len(self._mine())


class PKSampler(_EpochBatches):
    """Batches of P identities x K images (Hermans et al., 2017).

    Each pass shuffles every identity's images, cuts them into groups of K (drawing with
    replacement for identities with fewer than K images, dropping a last partial group),
    and fills batches with P groups of distinct identities drawn at random.

    With ``cameras``, a group is one of those shuffled images (its anchor) and K-1 others
    of its identity drawn from cameras other than the anchor's, or from the anchor's own
    where the identity has no other (without replacement where there are enough, the
    anchor itself only for an identity of one image): each group shows its identity
    across cameras, as Cluster Contrast's sampler does for a cluster (it draws one group
    per cluster a pass; here an identity gives as many groups as without ``cameras``).

    Args:
        labels: the training label of every sample.
        batch_size: P * K.
        num_instances: K.
        cameras: every sample's camera (any hashable), or None.
        seed: base seed; the epoch is mixed in.
        rank, world: this process's share under torch.distributed.
        iters: batches per epoch for each process; 0: one pass.
    """

    def __init__(
        self,
        labels: list[int],
        batch_size: int,
        num_instances: int,
        *,
        cameras: list | None = None,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        iters: int = 0,
    ) -> None:
        super().__init__(seed, rank, world, iters)
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
        # for each (identity, camera): the identity's images on other cameras, and on it
        self.cameras: list | None = None
        self.across: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        if cameras is not None:
            if len(cameras) != len(labels):
                raise ValueError(f"{len(cameras)} cameras for {len(labels)} samples")
            self.cameras = list(cameras)
            for label, members in self.by_label.items():
                idx, on = np.array(members), [self.cameras[i] for i in members]
                for cam in dict.fromkeys(on):
                    here = np.array([c == cam for c in on])
                    self.across[label, cam] = idx[~here], idx[here]

    def _group(self, label: int, anchor: int, rng: np.random.Generator) -> list[int]:
        """The anchor and K-1 of its identity, preferring other cameras."""
        other, own = self.across[label, self.cameras[anchor]]
        pool = other if len(other) else own[own != anchor]
        if not len(pool):  # an identity of one image
            pool = np.array([anchor])
        rest = rng.choice(pool, self.k - 1, replace=len(pool) < self.k - 1)
        return [anchor, *rest.tolist()]

    def _batches(self, rng: np.random.Generator) -> list[list[int]]:
        groups: dict[int, list[list[int]]] = {}
        for label in sorted(self.by_label):
            idx = np.array(self.by_label[label])
            idx = (
                rng.choice(idx, self.k, replace=True) if len(idx) < self.k else rng.permutation(idx)
            )
            groups[label] = [
                idx[s : s + self.k].tolist() for s in range(0, len(idx) - self.k + 1, self.k)
            ]
            if self.cameras is not None:  # the same number of groups, each across cameras
                groups[label] = [self._group(label, g[0], rng) for g in groups[label]]
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
        self,
        size: int,
        batch_size: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        iters: int = 0,
    ) -> None:
        super().__init__(seed, rank, world, iters)
        self.size, self.batch_size = size, batch_size

    def _batches(self, rng: np.random.Generator) -> list[list[int]]:
        order = rng.permutation(self.size).tolist()
        n = self.size // self.batch_size
        return [order[b * self.batch_size : (b + 1) * self.batch_size] for b in range(n)]
