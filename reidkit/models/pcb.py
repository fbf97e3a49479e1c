"""PCB, the Part-based Convolutional Baseline (Sun et al., ECCV 2018), as torchreid builds
it (torchreid/models/pcb.py), under its module names so that its files load as they are.

A ResNet-50 with a stride-1 layer4 whose final map is average-pooled into ``parts``
horizontal stripes. In training each stripe goes through a shared 1x1 reduction
(``conv5``: conv 2048 -> 256, BatchNorm, ReLU, after dropout 0.5) and a classifier of its
own (``classifier.0`` ...); the identity loss is averaged over the stripes. The test
feature is torchreid's: the stripes' 2048-d vectors, each L2-normalised, concatenated
channel by channel (2048 x parts values, channel-major as torchreid flattens them);
``part_feature="reduced"`` takes the reduced 256-d stripes instead (256 x parts), each
normalised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reidkit.errors import UsageError
from reidkit.models.net import ReIDNet
from reidkit.models.resnet import TRUNK_PARTS, resnet_trunk, stem_and_stages

PART_FEATURES = ("full", "reduced")
REDUCED_DIM = 256
WIDTH = 2048  # ResNet-50's final map


class DimReduceLayer(nn.Module):
    """torchreid's stripe reduction: 1x1 conv without bias, BatchNorm, ReLU (``layers``)."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(channels, reduced, 1, bias=False), nn.BatchNorm2d(reduced), nn.ReLU()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class PCB(ReIDNet):
    """PCB on ResNet-50. ``features`` returns the stripes' pooled vectors flattened
    channel-major (N, 2048 x parts); ``head`` normalises them (eval) or returns
    ``(logits of shape (N, parts, classes), the feature normalised per stripe)`` (train)."""

    def __init__(self, num_classes: int, parts: int = 6, part_feature: str = "full") -> None:
        super().__init__()
        if part_feature not in PART_FEATURES:
            raise UsageError(
                f"model.part_feature: choose from {', '.join(PART_FEATURES)}, got {part_feature!r}"
            )
        trunk = resnet_trunk(50, last_stride=1)
        for part in TRUNK_PARTS:
            setattr(self, part, getattr(trunk, part))
        self.parts, self.part_feature = parts, part_feature
        self.parts_avgpool = nn.AdaptiveAvgPool2d((parts, 1))
        self.dropout = nn.Dropout(0.5)
        self.conv5 = DimReduceLayer(WIDTH, REDUCED_DIM)
        self.classifier = nn.ModuleList(nn.Linear(REDUCED_DIM, num_classes) for _ in range(parts))
        for linear in self.classifier:  # torchreid's initialisation
            nn.init.normal_(linear.weight, 0, 0.01)
            nn.init.zeros_(linear.bias)
        self.feature_dim = (WIDTH if part_feature == "full" else REDUCED_DIM) * parts
        # the full stripes' metric feature is taken before the reduction
        self.identity_only = (
            ("classifier.", "conv5.") if part_feature == "full" else ("classifier.",)
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.parts_avgpool(stem_and_stages(self, x)).flatten(1)

    def head(self, feature: torch.Tensor):
        stripes = feature.view(-1, WIDTH, self.parts, 1)
        if not self.training:
            if self.part_feature == "reduced":
                stripes = self.conv5(stripes)
            return F.normalize(stripes, dim=1).flatten(1)
        reduced = self.conv5(self.dropout(stripes))  # (N, 256, parts, 1)
        logits = torch.stack([c(reduced[:, :, i, 0]) for i, c in enumerate(self.classifier)], 1)
        # the feature the metric losses see: the test feature's kind, normalised per stripe
        metric = reduced if self.part_feature == "reduced" else stripes
        return logits, F.normalize(metric, dim=1).flatten(1)
