"""Non-local blocks (Wang et al., CVPR 2018) as the published re-ID models place them.

A non-local block adds to every position of a feature map a weighted sum over all the
positions: the embedded dot product of the two, divided by their number, weighs ``g`` of
the other; a 1x1 convolution and a BatchNorm (initialised to zero, so the block starts as
the identity) bring the sum back to the map's width. AGW (Ye et al., TPAMI 2021) and
fast-reid's AGW, SBS and MGN models put them after the last blocks of layer2 and layer3.

The published models' inner width is **1**: fast-reid computes it as
``reduc_ratio // reduc_ratio`` (fast-reid #558), an accident every published checkpoint
depends on, so it is the width here too. Module names follow fast-reid's
(``NL_2.0.theta``, ``NL_2.0.W.1`` ...) so its files translate key for key.
"""

from __future__ import annotations

import torch
from torch import nn

INNER_WIDTH = 1
# blocks per ResNet stage (layer1 to layer4) followed by a non-local block, after the
# stage's last ones (fast-reid's backbones/resnet.py; the AGW paper's R50 placement)
BLOCKS_BY_DEPTH = {50: (0, 2, 3, 0), 101: (0, 2, 9, 0)}


class NonLocal(nn.Module):
    """The embedded-dot-product non-local block with a residual connection."""

    def __init__(self, channels: int, inner: int = INNER_WIDTH) -> None:
        super().__init__()
        self.inner = inner
        self.theta = nn.Conv2d(channels, inner, 1)
        self.phi = nn.Conv2d(channels, inner, 1)
        self.g = nn.Conv2d(channels, inner, 1)
        self.W = nn.Sequential(nn.Conv2d(inner, channels, 1), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.W[1].weight)
        nn.init.zeros_(self.W[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)  # (n, hw, inner)
        phi = self.phi(x).flatten(2)  # (n, inner, hw)
        g = self.g(x).flatten(2).transpose(1, 2)  # (n, hw, inner)
        weights = torch.bmm(theta, phi) / (h * w)
        y = torch.bmm(weights, g).transpose(1, 2).reshape(n, self.inner, h, w)
        return x + self.W(y)


def positions(blocks: int, count: int) -> list[int]:
    """The indices of a stage's last ``count`` blocks, after which a non-local block runs."""
    return list(range(blocks - count, blocks))
