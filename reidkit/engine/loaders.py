"""The training data loader: a PK (or random) batch sampler over the training samples,
the training transform, and the workers.

Batches are a deterministic function of (seed, epoch) and each process takes its share
(:mod:`reidkit.data.samplers`). Augmentations draw from torch's global generator (in the
process, or in workers seeded from it), which :func:`seed_augmentation` sets apart for
each process.
"""

from __future__ import annotations

import random

import numpy as np

from reidkit.config import Config
from reidkit.errors import UsageError

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


def worker_count(config: Config, device: str) -> int:
    """``data.workers``, with -1 meaning none on the CPU and 8 with a GPU."""
    workers = config.data.workers
    return workers if workers >= 0 else (0 if device == "cpu" else 8)


def train_loader(samples, config: Config, *, rank: int, world: int, device: str):
    """``(sampler, loader)`` of the training samples; the sampler's ``set_epoch`` and
    ``skip`` choose the batches of the next pass."""
    import torch

    from reidkit.data.samplers import PKSampler, RandomBatchSampler
    from reidkit.data.transforms import TrainImages, train_transform

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
    loader = torch.utils.data.DataLoader(
        TrainImages(samples, train_transform(d)),
        batch_sampler=sampler,
        num_workers=worker_count(config, device),
        pin_memory=device.startswith("cuda"),
    )
    return sampler, loader
