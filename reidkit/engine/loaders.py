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

import numpy as np

from reidkit.config import Config
from reidkit.errors import UsageError

log = logging.getLogger(__name__)
SAMPLERS = ("pk", "random")


def seed_everything(seed: int) -> None:
    """Python's, numpy's and torch's global generators from one seed."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_augmentation(seed: int, rank: int) -> None:
    """Seed the generators the augmentations draw from with a stream of this process's
    own: every process starts from the same weights, but they must not flip, crop and
    erase their batches alike."""
    seed_everything(int(np.random.SeedSequence([seed, rank, 1]).generate_state(1)[0]))


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


class FrameBudget:
    """A batch sampler of tracklets whose batches come as ``(index, cap)`` pairs, the caps
    keeping each batch within ``budget`` frames (``data.sample=all``); ``batches`` is the
    sampler it draws from."""

    def __init__(self, batches, lengths: list[int], budget: int) -> None:
        self.batches, self.lengths, self.budget = batches, lengths, budget

    def __iter__(self):
        from reidkit.data.clips import frame_caps

        for batch in self.batches:
            caps = frame_caps([self.lengths[i] for i in batch], self.budget)
            yield list(zip(batch, caps, strict=True))

    def __len__(self) -> int:
        return len(self.batches)


def train_loader(samples, config: Config, *, rank: int, world: int, device: str):
    """``(sampler, loader)`` of the training samples; the sampler's ``set_epoch`` and
    ``skip`` choose the batches of the next pass."""
    import torch

    from reidkit.data.clips import pack_clips
    from reidkit.data.sample import kind_of
    from reidkit.data.samplers import PKSampler, RandomBatchSampler
    from reidkit.data.transforms import TrainClips, TrainImages, train_transform

    d = config.data
    labels = [s.pid for s in samples]
    seed = config.train.seed
    if d.sampler == "pk":
        sampler = PKSampler(
            labels, d.batch_size, d.num_instances, seed=seed, rank=rank, world=world
        )
    elif d.sampler == "random":
        sampler = RandomBatchSampler(len(labels), d.batch_size, seed=seed, rank=rank, world=world)
    else:
        raise UsageError(f"unknown sampler '{d.sampler}'", hint=", ".join(SAMPLERS))
    video = kind_of(samples) == "tracklet"
    batches = sampler
    if video:  # clips (of seq_len frames, or all), PK over tracklets
        items = TrainClips(samples, train_transform(d), (d.width, d.height), d.seq_len, d.sample)
        if d.sample == "all":
            batches = FrameBudget(sampler, [t.frames for t in samples], d.max_frames)
            log.info(
                "data.sample=all: at most %d frames a batch (data.max_frames), tracklets of "
                "up to %d frames", d.max_frames, max(t.frames for t in samples),
            )  # fmt: skip
    else:
        items = TrainImages(samples, train_transform(d))
    loader = torch.utils.data.DataLoader(
        items,
        batch_sampler=batches,
        collate_fn=pack_clips if video and d.sample == "all" else None,
        num_workers=worker_count(config, device),
        pin_memory=device.startswith("cuda"),
    )
    return sampler, loader
