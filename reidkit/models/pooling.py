"""How a trunk's last feature map becomes one vector: average pooling, or generalised mean.

Generalised-mean (GeM) pooling (Radenović et al., TPAMI 2018) is the mean of the
activations raised to a power p, then its p-th root: p = 1 is the average, a large p comes
near the maximum. AGW pools with a fixed p = 3; fast-reid's SBS and MGN learn p, starting
from 3 (its ``GeneralizedMeanPoolingP``, whose p is the key ``p`` of the pooling layer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reidkit.errors import UsageError

POOLINGS = ("avg", "gem")
GEM_EPS = 1e-6  # activations are clamped to this before the power, as fast-reid does


class GeM(nn.Module):
    """Generalised-mean pooling to 1x1, with a fixed p or a learned one (a parameter ``p``
    of shape [1])."""

    def __init__(self, p: float = 3.0, learnable: bool = False) -> None:
        super().__init__()
        if p <= 0:
            raise UsageError(f"model.gem_p must be positive, got {p}")
        self.p: torch.Tensor | float = (
            nn.Parameter(torch.full((1,), float(p))) if learnable else float(p)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(x.clamp(min=GEM_EPS).pow(self.p), 1)
        return pooled.pow(1.0 / self.p)

    def extra_repr(self) -> str:
        learned = isinstance(self.p, nn.Parameter)
        return f"p={float(self.p):g}{', learned' if learned else ''}"


GEM_P = 3.0  # p when model.gem_p is not set


def make_pool(kind: str, p: float | None = None, learnable: bool = False) -> nn.Module:
    """The pooling layer ``kind`` ("avg" or "gem", see :data:`POOLINGS`); ``p`` and
    ``learnable`` are GeM's, and refused with "avg" rather than left unused."""
    if kind == "avg":
        if p is not None or learnable:
            what = "model.gem_p" if p is not None else "model.gem_learnable"
            raise UsageError(f"{what} is for model.pooling=gem; this model pools with avg")
        return nn.AdaptiveAvgPool2d(1)
    if kind == "gem":
        return GeM(GEM_P if p is None else p, learnable)
    raise UsageError(f"model.pooling: choose from {', '.join(POOLINGS)}, got {kind!r}")
