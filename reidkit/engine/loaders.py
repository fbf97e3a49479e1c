"""The training data loader: a PK (or random) batch sampler over the training samples (or
tracklets, then as clips of ``data.seq_len`` frames), the training transform, and the
workers.

Batches are a deterministic function of (seed, epoch) and each process takes its share
(:mod:`reidkit.data.samplers`). Augmentations draw from torch's global generator (in the
process, or in workers seeded from it), which :func:`seed_augmentation` sets apart for
each process.
"""

from __future__ import annotations

import logging
import random
from typing import NamedTuple

import numpy as np

from reidkit.config import Config
from reidkit.config_checks import CHOICES
from reidkit.errors import UsageError

log = logging.getLogger(__name__)
SAMPLERS = CHOICES["data.sampler"]


def seed_everything(seed: int) -> None:
    """Python's, numpy's and torch's global generators from one seed."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_stream(*entropy: int) -> None:
    """Seed every generator from a stream of its own, derived from ``entropy``."""
    seed_everything(int(np.random.SeedSequence(list(entropy)).generate_state(1)[0]))


def seed_augmentation(seed: int, rank: int) -> None:
    """Seed the generators the augmentations draw from with a stream of this process's
    own: every process starts from the same weights, but they must not flip, crop and
    erase their batches alike."""
    seed_stream(seed, rank, 1)


VIDEO_KEYS = ("data.seq_len", "data.sample", "data.max_frames", "model.temporal", "eval.sample")


def check_video_keys(config: Config, kind: str, name: str) -> None:
    """Video settings changed for an image dataset are refused, not ignored.

    Raises:
        UsageError: naming the first such key.
    """
    if kind == "tracklet":
        return
    default = Config()
    for key in VIDEO_KEYS:
        section, attr = key.split(".")
        if getattr(getattr(config, section), attr) != getattr(getattr(default, section), attr):
            raise UsageError(
                f"{key} is for video datasets, and {name} holds images",
                hint=f"remove {key} from the config or train on a video dataset",
            )


def worker_count(config: Config, device: str) -> int:
    """``data.workers``, with -1 meaning none on the CPU and 8 with a GPU."""
    workers = config.data.workers
    return workers if workers >= 0 else (0 if device == "cpu" else 8)


class Item(NamedTuple):
    """What a worker is asked for: a sample's index, the epoch (workers reseed at each), and
    with ``data.sample=all`` the most frames its clip may keep (the batch's frame budget)."""

    index: int
    epoch: int
    cap: int | None = None


class EpochBatches:
    """The sampler's batches as :class:`Item` lists; with ``budget`` (frames) the caps of
    :func:`reidkit.data.clips.frame_caps` keep each batch of tracklets within it."""

    def __init__(self, sampler, lengths: list[int] | None = None, budget: int | None = None):
        self.sampler, self.lengths, self.budget = sampler, lengths, budget

    def __iter__(self):
        from reidkit.data.clips import frame_caps

        for batch in self.sampler:
            if self.budget is None:
                caps = [None] * len(batch)
            else:
                caps = frame_caps([self.lengths[i] for i in batch], self.budget)
            yield [Item(i, self.sampler.epoch, cap) for i, cap in zip(batch, caps, strict=True)]

    def __len__(self) -> int:
        return len(self.sampler)


class EpochSeeded:
    """The training samples as the loader's workers see them. The workers live for the
    whole run (forking them every epoch costs seconds each time on a GPU machine); each
    reseeds its generators at its first item of an epoch from (seed, rank, epoch, worker),
    so an epoch's augmentations do not depend on the epochs before it, and an
    epoch-boundary resume draws what the uninterrupted run drew. In the main process
    (no workers) the items draw from the process's own generator, which checkpoints hold."""

    def __init__(self, items, seed: int, rank: int) -> None:
        self.items, self.seed, self.rank = items, seed, rank
        self.epoch: int | None = None  # the epoch this copy (in one worker) last drew for

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, item: Item):
        import torch

        worker = torch.utils.data.get_worker_info()
        if worker is not None and item.epoch != self.epoch:
            self.epoch = item.epoch
            seed_stream(self.seed, self.rank, item.epoch, worker.id, 2)
        return self.items[item.index if item.cap is None else (item.index, item.cap)]


def train_loader(samples, config: Config, *, rank: int, world: int, device: str):
    """``(sampler, loader)`` of the training samples; the sampler's ``set_epoch`` and
    ``skip`` choose the batches of the next pass."""
    import torch

    from reidkit.data.clips import pack_clips
    from reidkit.data.sample import cameras_of, kind_of
    from reidkit.data.samplers import PKSampler, RandomBatchSampler
    from reidkit.data.transforms import TrainClips, TrainImages, train_transform

    d = config.data
    labels = [s.pid for s in samples]
    seed = config.train.seed
    iters = config.train.iters_per_epoch
    if d.sampler in ("pk", "pk_cameras"):
        cameras = cameras_of(samples) if d.sampler == "pk_cameras" else None
        sampler = PKSampler(
            labels, d.batch_size, d.num_instances, cameras=cameras,
            seed=seed, rank=rank, world=world, iters=iters,
        )  # fmt: skip
    elif d.sampler == "random":
        sampler = RandomBatchSampler(
            len(labels), d.batch_size, seed=seed, rank=rank, world=world, iters=iters
        )
    else:
        raise UsageError(f"unknown sampler '{d.sampler}'", hint=", ".join(SAMPLERS))
    video = kind_of(samples) == "tracklet"
    batches = EpochBatches(sampler)
    if video:  # clips (of seq_len frames, or all), PK over tracklets
        items = TrainClips(
            samples, train_transform(d), (d.width, d.height), d.seq_len, d.sample, d.interpolation
        )
        if d.sample == "all":
            batches = EpochBatches(sampler, [t.frames for t in samples], d.max_frames)
            log.info(
                "data.sample=all: at most %d frames a batch (data.max_frames), tracklets of "
                "up to %d frames", d.max_frames, max(t.frames for t in samples),
            )  # fmt: skip
    else:
        items = TrainImages(samples, train_transform(d))
    workers = worker_count(config, device)
    loader = torch.utils.data.DataLoader(
        EpochSeeded(items, seed, rank),
        batch_sampler=batches,
        collate_fn=pack_clips if video and d.sample == "all" else None,
        num_workers=workers,
        pin_memory=device.startswith("cuda"),
        persistent_workers=workers > 0,
        # the seed torch draws for starting workers: from a generator of their own, so
        # that starting them (once, or again after a resume) leaves the process's alone
        generator=torch.Generator().manual_seed(seed) if workers else None,
    )
    return sampler, loader
