"""IBN-Net: instance and batch normalisation in a ResNet (Pan et al., ECCV 2018).

Instance normalisation removes what a picture's style adds (lighting, colour casts, a
camera's tone) while batch normalisation keeps what tells content apart; IBN-Net mixes the
two in a ResNet's shallow stages, where style lives, and so transfers better to unseen
cameras. Two designs, as IBN-Net's own code builds them (XingangPan/IBN-Net,
ibnnet/resnet_ibn.py), with its module names, so that its published files and torchreid's
and fast-reid's load as they are:

- ``a``: in every block of layer1 to layer3, ``bn1`` is an :class:`IBN`: the first
  ``int(planes / 2)`` channels through an affine InstanceNorm (``bn1.IN``), the rest
  through BatchNorm (``bn1.BN``).
- ``b``: the stem's norm ``bn1`` is an affine InstanceNorm, and an affine InstanceNorm
  (``IN``) follows the residual addition in the last block of layer1 and of layer2.

The trunk is torchvision's ResNet (its blocks, and their forward with IBN-b's norm) with
these changes made to it.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet as tv_resnet

from reidkit.errors import UsageError

DESIGNS = ("a", "b")


class IBN(nn.Module):
    """Half of the channels (rounded down) instance-normalised, the rest batch-normalised."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.half = planes // 2
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(planes - self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, rest = torch.split(x, [self.half, x.shape[1] - self.half], 1)
        return torch.cat((self.IN(first.contiguous()), self.BN(rest.contiguous())), 1)


LAYOUTS = {  # torchvision's: the block and the blocks per stage of each depth
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


class NormAfterAdd:
    """A torchvision ResNet block whose ``IN``, when it has one, normalises the sum of the
    residual addition before the last ReLU (IBN-b)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.IN: nn.Module | None = None  # set on the blocks that have one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if hasattr(self, "conv3"):  # a bottleneck
            out = self.bn3(self.conv3(self.relu(out)))
        out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out if self.IN is None else self.IN(out))


class BasicBlock(NormAfterAdd, tv_resnet.BasicBlock):
    pass


class Bottleneck(NormAfterAdd, tv_resnet.Bottleneck):
    pass


def ibn_resnet(depth: int, design: str) -> tv_resnet.ResNet:
    """A torchvision ResNet of ``depth`` in IBN-Net's design ``a`` or ``b``."""
    if design not in DESIGNS:
        raise UsageError(f"model.ibn must be one of {', '.join(DESIGNS)}, got {design!r}")
    kind, layers = LAYOUTS[depth]
    trunk = tv_resnet.ResNet(BasicBlock if kind == "basic" else Bottleneck, list(layers))
    if design == "a":
        for layer in (trunk.layer1, trunk.layer2, trunk.layer3):
            for block in layer:
                block.bn1 = IBN(block.bn1.num_features)
    else:
        trunk.bn1 = nn.InstanceNorm2d(trunk.bn1.num_features, affine=True)
        for layer in (trunk.layer1, trunk.layer2):
            last = layer[-1]
            last.IN = nn.InstanceNorm2d(last.conv1.in_channels, affine=True)
    return trunk
