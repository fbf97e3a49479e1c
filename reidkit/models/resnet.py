"""ResNet backbones (torchvision, and their IBN-Net designs) with a re-ID head.

Global average pooling, the head of :mod:`reidkit.models.head` (an optional BNNeck and a
classifier) and an optional last stride of 1, which doubles the final feature map's
resolution (Luo et al., CVPRW 2019). With ``bnneck=False, last_stride=2`` it is torchreid's
``resnet50``, with the same module names.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet as tv_resnet

from reidkit.errors import UsageError
from reidkit.models.head import head_forward, make_head
from reidkit.models.ibn import ibn_resnet
from reidkit.models.net import ReIDNet

DEPTHS = {
    18: tv_resnet.resnet18,
    34: tv_resnet.resnet34,
    50: tv_resnet.resnet50,
    101: tv_resnet.resnet101,
    152: tv_resnet.resnet152,
}


class ReIDResNet(ReIDNet):
    """A torchvision ResNet trunk, pooled, with an optional BNNeck and a classifier.

    Args:
        depth: 18, 34, 50, 101 or 152.
        num_classes: training identities (the classifier's outputs).
        bnneck: batch-norm bottleneck before the classifier.
        last_stride: stride of the last stage (1 keeps a 16x8 map at 256x128 input).
        classifier: "linear", or "cosine" for the margin losses.
        ibn: None, or IBN-Net's design "a" or "b" (:mod:`reidkit.models.ibn`).

    In eval mode ``forward`` returns the embedding (after the BNNeck when there is one); in
    train mode it returns ``(logits, feature)`` with the feature before the BNNeck, as
    triplet losses use it.
    """

    def __init__(
        self,
        depth: int = 50,
        num_classes: int = 751,
        *,
        bnneck: bool = True,
        last_stride: int = 1,
        classifier: str = "linear",
        ibn: str | None = None,
    ) -> None:
        super().__init__()
        if last_stride not in (1, 2):
            raise UsageError(f"model.last_stride must be 1 or 2, got {last_stride}")
        trunk = DEPTHS[depth](weights=None) if ibn is None else ibn_resnet(depth, ibn)
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
        self.bnneck, self.classifier = make_head(self.feature_dim, num_classes, bnneck, classifier)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.pool(x).flatten(1)

    def head(self, feature: torch.Tensor):
        return head_forward(feature, self)
