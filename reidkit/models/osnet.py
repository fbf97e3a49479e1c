"""OSNet, the omni-scale network for person re-identification.

Follows the architecture in K. Zhou, Y. Yang, A. Cavallaro and T. Xiang, "Omni-Scale Feature
Learning for Person Re-Identification", ICCV 2019 (arXiv:1905.00953): residual bottlenecks
whose four streams of stacked lite 3x3 convolutions see growing receptive fields, fused by a
shared channel gate. Width multipliers 1.0, 0.75, 0.5 and 0.25 scale every stage; the
embedding stays ``feature_dim`` wide for all of them.

Two designs add affine instance norms for cross-domain use, placed as torchreid places them
(torchreid/models/osnet.py ``osnet_ibn_x1_0``, osnet_ain.py ``osnet_ain_*``; K. Zhou et al.,
"Learning Generalisable Omni-Scale Representations for Person Re-Identification", TPAMI
2021): both give the stem an instance norm in place of its batch norm. OSNet-IBN adds one
after the residual sum of both conv2 blocks; OSNet-AIN puts one inside the residual branch,
in place of the expansion's batch norm, in the blocks its architecture search chose (conv2:
both, conv3: the second, conv4: the first). The instance norms keep torchreid's name ``IN``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from reidkit.models.net import ReIDNet

__all__ = ["DESIGNS", "OSNet"]

# Output channels of conv1 and of the conv2, conv3 and conv4 stages at width 1.0 (paper, Table 1).
BASE_CHANNELS = (64, 256, 384, 512)

# Where a block's instance norm goes: after the residual sum ("sum", OSNet-IBN) or on the
# residual branch in place of the expansion's batch norm ("branch", OSNet-AIN).
# design -> (instance norm in the stem, per stage conv2..conv4 the two blocks' places)
DESIGNS: dict[str | None, tuple[bool, tuple[tuple[str | None, str | None], ...]]] = {
    None: (False, ((None, None), (None, None), (None, None))),
    "ibn": (True, (("sum", "sum"), (None, None), (None, None))),
    "ain": (True, (("branch", "branch"), (None, "branch"), ("branch", None))),
}


def _conv_bn(
    in_ch: int,
    out_ch: int,
    kernel: int,
    stride: int = 1,
    relu: bool = True,
    norm: str | None = "batch",
) -> nn.Module:
    """Convolution without bias, then a norm (batch, affine instance, or none) and ReLU."""
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False)
    layers: list[nn.Module] = [conv]
    if norm == "batch":
        layers.append(nn.BatchNorm2d(out_ch))
    elif norm == "instance":
        layers.append(nn.InstanceNorm2d(out_ch, affine=True))
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _LiteConv3x3(nn.Module):
    """Pointwise 1x1 then depthwise 3x3 convolution, then BN and ReLU.

    The factorised form costs roughly a ninth of a dense 3x3 at these widths, which is what
    lets every block afford four streams.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.pointwise = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.depthwise = nn.Conv2d(out_ch, out_ch, 3, padding=1, groups=out_ch, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.depthwise(self.pointwise(x))), inplace=True)


class _AggregationGate(nn.Module):
    """Channel-wise gate computed from the input itself (squeeze, bottleneck MLP, sigmoid).

    One instance is shared by all streams of a block, so the weighting of scales is learned
    jointly and depends on the image rather than being fixed.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = F.adaptive_avg_pool2d(x, 1)
        weights = torch.sigmoid(self.fc2(F.relu(self.fc1(weights))))
        return x * weights


class OSBlock(nn.Module):
    """Omni-scale residual bottleneck: 1x1 reduce, gated multi-stream lite 3x3s, 1x1 expand;
    ``instance_norm`` "sum" or "branch" adds an affine instance norm (see :data:`DESIGNS`)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        reduction: int = 4,
        num_streams: int = 4,
        instance_norm: str | None = None,
    ) -> None:
        super().__init__()
        mid = out_ch // reduction
        self.reduce = _conv_bn(in_ch, mid, 1)
        # Stream t stacks t lite 3x3 layers: receptive fields of 3, 5, 7 and 9 pixels.
        self.streams = nn.ModuleList(
            nn.Sequential(*(_LiteConv3x3(mid, mid) for _ in range(depth)))
            for depth in range(1, num_streams + 1)
        )
        self.gate = _AggregationGate(mid)
        # No ReLU before the sum, so the residual branch can also subtract from the shortcut.
        branch = instance_norm == "branch"
        self.expand = _conv_bn(mid, out_ch, 1, relu=False, norm=None if branch else "batch")
        self.instance_norm = instance_norm
        self.IN = nn.InstanceNorm2d(out_ch, affine=True) if instance_norm else None
        self.shortcut: nn.Module = (
            nn.Identity() if in_ch == out_ch else _conv_bn(in_ch, out_ch, 1, relu=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.reduce(x)
        fused = self.gate(self.streams[0](reduced))
        for stream in self.streams[1:]:
            fused = fused + self.gate(stream(reduced))
        out = self.expand(fused)
        if self.instance_norm == "branch":
            out = self.IN(out)
        out = out + self.shortcut(x)
        if self.instance_norm == "sum":
            out = self.IN(out)
        return F.relu(out)


def _transition(channels: int) -> nn.Module:
    """1x1 conv-BN-ReLU then 2x2 average pooling: halves the resolution between stages."""
    return nn.Sequential(_conv_bn(channels, channels, 1), nn.AvgPool2d(2, stride=2))


class OSNet(ReIDNet):
    """OSNet backbone with a BN embedding layer and a linear identity classifier.

    In eval mode ``forward`` returns the embedding ``(N, feature_dim)``; in train mode it
    returns ``(logits, embedding)`` so a softmax loss and a metric loss can share one pass.

    Args:
        num_classes: number of training identities (classifier outputs).
        width: channel width multiplier; the paper uses 1.0, 0.75, 0.5 and 0.25.
        feature_dim: size of the embedding produced by the final fc layer.
        design: None, "ibn" (OSNet-IBN) or "ain" (OSNet-AIN): where instance norms go.
    """

    def __init__(
        self,
        num_classes: int,
        width: float = 1.0,
        feature_dim: int = 512,
        design: str | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        if feature_dim < 1:
            raise ValueError(f"feature_dim must be at least 1, got {feature_dim}")
        if design not in DESIGNS:
            raise ValueError(f"design must be one of {list(DESIGNS)}, got {design!r}")
        c1, c2, c3, c4 = (max(round(c * width), 4) for c in BASE_CHANNELS)
        self.width = width
        self.feature_dim = feature_dim
        stem_in, places = DESIGNS[design]

        self.conv1 = _conv_bn(3, c1, 7, stride=2, norm="instance" if stem_in else "batch")
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        def blocks(cin: int, cout: int, stage: int) -> list[nn.Module]:
            first, second = places[stage]
            return [
                OSBlock(cin, cout, instance_norm=first),
                OSBlock(cout, cout, instance_norm=second),
            ]

        self.conv2 = nn.Sequential(*blocks(c1, c2, 0), _transition(c2))
        self.conv3 = nn.Sequential(*blocks(c2, c3, 1), _transition(c3))
        self.conv4 = nn.Sequential(*blocks(c3, c4, 2))
        self.conv5 = _conv_bn(c4, c4, 1)
        # The fc bias would be cancelled by the BN that follows, so it is left out.
        self.fc = nn.Sequential(
            nn.Linear(c4, feature_dim, bias=False),
            nn.BatchNorm1d(feature_dim),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(feature_dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding ``(N, feature_dim)`` of images ``(N, 3, H, W)``."""
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.conv4(self.conv3(self.conv2(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def head(self, embedding: torch.Tensor):
        """The embedding itself in eval mode; ``(logits, embedding)`` in train mode, with
        logits of shape ``(N, num_classes)``."""
        if not self.training:
            return embedding
        return self.classifier(embedding), embedding
