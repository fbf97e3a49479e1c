"""The random generators a checkpoint saves and a resume restores: Python's, numpy's,
torch's CPU generator and, for a run on CUDA, each GPU's.

A run on the CPU never touches CUDA here: asking a machine's GPUs for their generator state
initialises CUDA, which fails where the GPUs are exclusive or busy with another job. A
resume on a machine with fewer GPUs than the one that saved the states (a cluster job
resumed on another node shape) restores the GPUs it has and says so.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def _numpy_state() -> list[Any]:
    """numpy's global generator state in types a weights_only checkpoint can hold."""
    import torch

    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), cached]


def rng_state(device: str) -> dict[str, Any]:
    """Every generator's state; the GPUs' only when ``device`` is a CUDA device."""
    import torch

    version, state, gauss = random.getstate()
    on_gpu = device.startswith("cuda") and torch.cuda.is_available()
    return {
        "python": [version, list(state), gauss],
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if on_gpu else [],
    }


def set_rng_state(state: dict[str, Any], device: str) -> None:
    """Restore what :func:`rng_state` saved; GPU states only on a CUDA run, and only for the
    GPUs this machine has."""
    import torch

    version, values, gauss = state["python"]
    random.setstate((version, tuple(values), gauss))
    if "numpy" in state:  # checkpoints of reidkit 0.1 have none
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    saved = state.get("cuda") or []
    if not saved or not device.startswith("cuda") or not torch.cuda.is_available():
        return
    here = torch.cuda.device_count()
    if len(saved) != here:
        log.warning(
            "the checkpoint holds the generator states of %d GPUs and this machine has %d: "
            "restoring %d (random draws on the others start anew)",
            len(saved), here, min(len(saved), here),
        )  # fmt: skip
    for index, gpu_state in enumerate(saved[:here]):
        torch.cuda.set_rng_state(gpu_state, index)


def gather_rng_states(device: str) -> list[dict[str, Any]] | None:
    """Every process's generator states in rank order, under torchrun (a collective: every
    process calls it); None for a single process. Each process draws its own augmentations,
    so a resume must give each its own states back, not rank 0's."""
    from reidkit.device import gather

    states = gather(rng_state(device))
    return states if len(states) > 1 else None


def restore_rng_states(checkpoint: dict[str, Any], device: str, seed: int) -> None:
    """Give this process its generator states back from a checkpoint: its own, where the
    checkpoint holds every process's (saved at an epoch's end by as many processes); else
    the saved ones, and under torchrun each process reseeds its augmentations from
    (``seed``, rank), so that the processes do not all draw rank 0's."""
    from reidkit.device import distributed_rank

    rank, world = distributed_rank()
    ranks = checkpoint.get("rng_ranks")
    if ranks and len(ranks) == world:
        set_rng_state(ranks[rank], device)
        return
    set_rng_state(checkpoint["rng"], device)
    if world > 1:  # saved mid-epoch, or by another number of processes
        from reidkit.engine.loaders import seed_augmentation

        seed_augmentation(seed, rank)
        log.warning(
            "the checkpoint does not hold the generator states of %d processes: each "
            "process draws new augmentations of its own from here",
            world,
        )
