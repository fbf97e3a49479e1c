"""Where a command runs: the device resolver and the torchrun process group.

Evaluation, extraction and training all resolve their device and join the process group
here. Nothing heavy is imported at module level: torch only when a GPU node exists or a
process group is asked for, so CPU-only evaluation starts fast.
"""

from __future__ import annotations

import atexit
import os
import sys
from typing import Any

from reidkit.errors import UsageError

DEVICES = ("auto", "cpu", "cuda")


# files that say a machine may have a GPU: NVIDIA's driver nodes, WSL2's GPU paravirtual
# device; without any of them "auto" is the CPU without loading torch
GPU_MARKERS = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia", "/dev/dxg")


def may_have_gpu() -> bool:
    """Whether this machine may have a GPU (cheap: no torch, no CUDA initialised)."""
    return any(os.path.exists(marker) for marker in GPU_MARKERS)


def resolve_device(device: str) -> str:
    """ "auto" becomes "cuda" when a usable GPU is present, else "cpu". ``cuda`` asks torch
    whatever the machine's files say (a container may hide the driver's nodes)."""
    if device not in DEVICES:
        raise UsageError(f"unknown device '{device}'", hint=f"devices: {', '.join(DEVICES)}")
    if device == "cpu":
        return "cpu"
    if device == "cuda" or may_have_gpu():
        import torch

        if torch.cuda.is_available():
            return "cuda"
    if device == "cuda":
        raise UsageError(
            "--device cuda was asked for but no CUDA device is available",
            hint="use --device cpu or auto",
        )
    return "cpu"


# how long a process waits at a collective for the others: rank 0 evaluates and writes
# checkpoints alone while the others wait, and evaluating a large test set (MARS: 0.6 M
# frames) takes longer than torch's default of 10 minutes
DIST_TIMEOUT = 6 * 3600.0


def dist_timeout() -> float:
    """Seconds a collective may wait (REIDKIT_DIST_TIMEOUT, else :data:`DIST_TIMEOUT`)."""
    from reidkit.envvars import env_number

    return env_number("REIDKIT_DIST_TIMEOUT", DIST_TIMEOUT)


def init_distributed(device: str) -> str:
    """Join the process group torchrun describes (WORLD_SIZE > 1): NCCL with one GPU per
    process, gloo on the CPU, waiting up to :func:`dist_timeout` at a collective. Returns
    the device of this process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    import datetime

    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return device
    timeout = datetime.timedelta(seconds=dist_timeout())
    atexit.register(_leave_group)
    if device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dist.init_process_group("nccl", timeout=timeout)
        return f"cuda:{local}"
    dist.init_process_group("gloo", timeout=timeout)
    return device


def _leave_group() -> None:
    """Leave the process group before the interpreter exits, as torch asks: a group left
    to the interpreter's teardown can abort a process whose work is done ("terminate called
    without an active exception", seen with gloo at the end of a run)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _process_group():
    """torch.distributed when a group is initialised, else None (torch is not loaded for
    this: without torch there is no group, and ONNX Runtime extraction stays torch-free)."""
    if "torch" not in sys.modules:
        return None
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) of an initialised torch.distributed group, else (0, 1)."""
    dist = _process_group()
    return (dist.get_rank(), dist.get_world_size()) if dist else (0, 1)


def barrier() -> None:
    """Wait for every process of the group (nothing to wait for without one)."""
    dist = _process_group()
    if dist:
        dist.barrier()


def gather(value: Any) -> list[Any]:
    """Every process's ``value`` (picklable) in rank order; ``[value]`` without a group.
    A collective: every process of the group calls it."""
    dist = _process_group()
    if not dist:
        return [value]
    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def tune_convolutions(device: str) -> None:
    """cuDNN's autotuner on CUDA: it times each convolution's algorithms at the first input
    of a shape and keeps the fastest, which pays where shapes repeat (a training's batches,
    extraction's batch size). Not for ``train.deterministic`` (its choice may differ from run
    to run), nor where every batch has another shape (``data.sample=all`` clips)."""
    if device.startswith("cuda"):
        import torch

        torch.backends.cudnn.benchmark = True


def make_deterministic(device: str) -> None:
    """torch's deterministic algorithms for ``train.deterministic``. On the CPU every
    kernel reidkit runs has one; on CUDA, cuBLAS needs a fixed workspace (set here, before
    its first use) and a few kernels have no deterministic form (AdaptiveAvgPool2d's and
    NLLLoss's backward, among others): torch then warns where they run instead of stopping
    the run, and this says once that such a run is close to, not equal to, another."""
    import logging

    import torch

    on_gpu = device.startswith("cuda")
    if on_gpu:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        logging.getLogger(__name__).warning(
            "train.deterministic on CUDA: some kernels (AdaptiveAvgPool2d's and NLLLoss's "
            "backward) have no deterministic form; torch warns where they run, and two runs "
            "are close, not bit-identical"
        )
    torch.use_deterministic_algorithms(True, warn_only=on_gpu)
