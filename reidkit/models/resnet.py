"""ResNet backbones (torchvision) with a re-ID head.

The head follows "Bag of Tricks and A Strong Baseline for Deep Person Re-identification"
(Luo et al., CVPRW 2019): global average pooling, an optional BNNeck (a batch-norm layer
between the pooled feature and a bias-free classifier, its shift frozen), and an optional
last stride of 1 that doubles the final feature map's resolution.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet as tv_resnet

DEPTHS = {
    18: tv_resnet.resnet18,
    34: tv_resnet.resnet34,
    50: tv_resnet.resnet50,
    101: tv_resnet.resnet101,
    152: tv_resnet.resnet152,
}


class ReIDResNet(nn.Module):
    """A torchvision ResNet trunk, pooled, with an optional BNNeck and a classifier.

    Args:
        depth: 18, 34, 50, 101 or 152.
        num_classes: training identities (the classifier's outputs).
        bnneck: batch-norm bottleneck before the classifier.
        last_stride: stride of the last stage (1 keeps a 16x8 map at 256x128 input).

    In eval mode ``forward`` returns the embedding (after the BNNeck when there is one); in
    train mode it returns ``(logits, feature)`` with the feature before the BNNeck, as
    triplet losses use it.
    """

    def __init__(
        self, depth: int = 50, num_classes: int = 751, *, bnneck: bool = True, last_stride: int = 1
    ) -> None:
        super().__init__()
        trunk = DEPTHS[depth](weights=None)
        if last_stride == 1:
            block = trunk.layer4[0]
            (block.conv2 if hasattr(block, "conv3") else block.conv1).stride = (1, 1)
            if block.downsample is not None:
                block.downsample[0].stride = (1, 1)
        self.conv1, self.bn1, self.relu, self.maxpool = (
            trunk.conv1,
            trunk.bn1,
            trunk.relu,
            trunk.maxpool,
        )
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            trunk.layer1,
            trunk.layer2,
            trunk.layer3,
            trunk.layer4,
        )
        self.feature_dim = trunk.fc.in_features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.bnneck = nn.BatchNorm1d(self.feature_dim) if bnneck else None
        if self.bnneck is not None:
            self.bnneck.bias.requires_grad_(False)  # BNNeck: scale only, as in the paper
        self.classifier = nn.Linear(self.feature_dim, num_classes, bias=not bnneck)
        nn.init.normal_(self.classifier.weight, std=0.001)
        if self.classifier.bias is not None:
            nn.init.zeros_(self.classifier.bias)

    def forward(self, x: torch.Tensor):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        feature = self.pool(x).flatten(1)
        neck = self.bnneck(feature) if self.bnneck is not None else feature
        if not self.training:
            return neck
        return self.classifier(neck), feature
