"""OSNet, the omni-scale network for person re-identification.

Follows the architecture in K. Zhou, Y. Yang, A. Cavallaro and T. Xiang, "Omni-Scale Feature
Learning for Person Re-Identification", ICCV 2019 (arXiv:1905.00953): residual bottlenecks
whose four streams of stacked lite 3x3 convolutions see growing receptive fields, fused by a
shared channel gate. Plain batch normalisation throughout (the instance-norm OSNet-AIN variant
is not implemented). Width multipliers 1.0, 0.75, 0.5 and 0.25 scale every stage; the
embedding stays ``feature_dim`` wide for all of them.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from reidkit.models.net import ReIDNet

__all__ = ["OSNet"]

# Output channels of conv1 and of the conv2, conv3 and conv4 stages at width 1.0 (paper, Table 1).
BASE_CHANNELS = (64, 256, 384, 512)


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, relu: bool = True) -> nn.Module:
    """Convolution without bias (BN supplies the shift), then BN and optionally ReLU."""
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False)
    layers: list[nn.Module] = [conv, nn.BatchNorm2d(out_ch)]
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


class _OSBlock(nn.Module):
    """Omni-scale residual bottleneck: 1x1 reduce, gated multi-stream lite 3x3s, 1x1 expand."""

    def __init__(self, in_ch: int, out_ch: int, reduction: int = 4, num_streams: int = 4) -> None:
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
        self.expand = _conv_bn(mid, out_ch, 1, relu=False)
        self.shortcut: nn.Module = (
            nn.Identity() if in_ch == out_ch else _conv_bn(in_ch, out_ch, 1, relu=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.reduce(x)
        fused = self.gate(self.streams[0](reduced))
        for stream in self.streams[1:]:
            fused = fused + self.gate(stream(reduced))
        return F.relu(self.expand(fused) + self.shortcut(x))


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
    """

    def __init__(self, num_classes: int, width: float = 1.0, feature_dim: int = 512) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        if feature_dim < 1:
            raise ValueError(f"feature_dim must be at least 1, got {feature_dim}")
        c1, c2, c3, c4 = (max(round(c * width), 4) for c in BASE_CHANNELS)
        self.width = width
        self.feature_dim = feature_dim

        self.conv1 = _conv_bn(3, c1, 7, stride=2)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = nn.Sequential(_OSBlock(c1, c2), _OSBlock(c2, c2), _transition(c2))
        self.conv3 = nn.Sequential(_OSBlock(c2, c3), _OSBlock(c3, c3), _transition(c3))
        self.conv4 = nn.Sequential(_OSBlock(c3, c4), _OSBlock(c4, c4))
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
