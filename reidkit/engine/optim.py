"""Optimiser, learning-rate schedule and triplet-weight warmup of a run, from its config.

Parameter groups: the pretrained base at ``optim.lr * optim.base_lr_mult`` and the new
layers (the model's declared head) at ``optim.lr``. The schedule is a per-epoch factor of
each group's base rate: a linear warmup from ``warmup_factor``, then step, multistep or
cosine decay (after ``delay_epochs`` at the full rate). fast-reid's warmup runs over
iterations instead (``warmup_iters``): a per-step factor on top of the epoch's
(:func:`warmup_factor`), as fast-reid's warmup scheduler multiplies its epoch scheduler's
rate.
"""

from __future__ import annotations

import functools
import math

from reidkit.config import Config
from reidkit.errors import UsageError

SCHEDULES = ("step", "multistep", "cosine")
OPTIMIZERS = ("adam", "amsgrad", "sgd")
FUSED_DEVICES = {"cpu", "cuda"}  # where torch's fused Adam and SGD kernels run


def lr_factor(epoch: int, config: Config) -> float:
    """Multiplier of the base learning rate at ``epoch`` (counted from 0)."""
    s = config.schedule
    if epoch < s.warmup_epochs:
        alpha = epoch / max(1, s.warmup_epochs)
        return s.warmup_factor * (1 - alpha) + alpha
    if s.name == "step":
        return s.gamma ** (epoch // max(1, s.step_size))
    if s.name == "multistep":
        return s.gamma ** sum(epoch >= m for m in s.milestones)
    if s.name == "cosine":  # fast-reid: no step until the warmup and the delay are over
        start = max(s.warmup_epochs, s.delay_epochs)
        span = max(1, config.train.epochs - start)
        progress = max(0, epoch - start) / span
        floor = s.min_lr / config.optim.lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    raise UsageError(f"unknown schedule '{s.name}'", hint=", ".join(SCHEDULES))


def warmup_factor(step: int, config: Config) -> float:
    """The iteration warmup's multiplier at ``step`` (from 0): linear from
    ``warmup_factor`` to 1 over ``warmup_iters`` steps, then 1 (fast-reid's WarmupLR)."""
    s = config.schedule
    if step >= s.warmup_iters:
        return 1.0
    alpha = step / s.warmup_iters
    return s.warmup_factor * (1 - alpha) + alpha


def triplet_factor(epoch: int, config: Config) -> float:
    """Share of ``loss.triplet`` at ``epoch`` (from 0): a linear rise from 0 over
    ``loss.triplet_warmup`` epochs, then 1."""
    warmup = config.loss.triplet_warmup or 0
    return min(1.0, epoch / warmup) if warmup else 1.0


def build_optimizer(model, config: Config, new_layers: tuple[str, ...]):
    """The run's optimiser over ``model``: the base and the new layers in two groups."""
    import torch

    o = config.optim
    new = [p for n, p in model.named_parameters() if n.startswith(new_layers)]
    base = [p for n, p in model.named_parameters() if not n.startswith(new_layers)]
    groups = [{"params": base, "lr": o.lr * o.base_lr_mult}, {"params": new, "lr": o.lr}]
    groups = [g for g in groups if g["params"]]
    fused = fused_kernel(model.parameters())
    if o.name in ("adam", "amsgrad"):
        return torch.optim.Adam(
            groups,
            lr=o.lr,
            weight_decay=o.weight_decay,
            amsgrad=o.name == "amsgrad",
            fused=fused,
        )
    if o.name == "sgd":
        return torch.optim.SGD(
            groups,
            lr=o.lr,
            momentum=o.momentum,
            weight_decay=o.weight_decay,
            nesterov=o.nesterov,
            fused=fused,
        )
    raise UsageError(f"unknown optimizer '{o.name}'", hint=", ".join(OPTIMIZERS))


def fused_kernel(params) -> bool | None:
    """Whether an optimiser over ``params`` runs torch's fused kernel: one pass over each
    tensor instead of one per operation. On 2 CPU cores an Adam step over a ResNet-18 took
    6.8 ms instead of 43 ms, a whole training step at 64x32 1.41x less time
    (docs/benchmarks.md); torch has the kernel for the devices reidkit trains on (None:
    torch's default elsewhere)."""
    return True if {p.device.type for p in params} <= FUSED_DEVICES else None


def build_scheduler(optimizer, config: Config):
    """Per-epoch schedule of :func:`lr_factor`; ``step()`` once after each epoch."""
    import torch

    return torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(lr_factor, config=config))
