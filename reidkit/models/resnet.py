"""ResNet backbones (torchvision, and their IBN-Net designs) with a re-ID head.

Pooling (global average, or GeM: :mod:`reidkit.models.pooling`), the head of
:mod:`reidkit.models.head` (an optional BNNeck and a classifier), an optional last stride
of 1, which doubles the final feature map's resolution (Luo et al., CVPRW 2019), and
optional non-local blocks (:mod:`reidkit.models.nonlocal_block`). With ``bnneck=False,
last_stride=2`` it is torchreid's ``resnet50``, with the same module names.

The stem's max pooling: torchvision's pads by one (``stem_pool="padding"``); fast-reid's
code since 2020-11-06 (commit 42cadae) rounds up instead (``"ceil"``, no padding), which
changes every position of the maps behind it, so weights trained with one are run with the
same one.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet as tv_resnet

from reidkit.errors import UsageError
from reidkit.models.head import check_neck_feat, head_forward, make_head
from reidkit.models.ibn import ibn_resnet
from reidkit.models.net import ReIDNet
from reidkit.models.nonlocal_block import BLOCKS_BY_DEPTH, NonLocal, positions
from reidkit.models.pooling import make_pool

STEM_POOLS = {
    "padding": dict(kernel_size=3, stride=2, padding=1),  # torchvision, torchreid
    "ceil": dict(kernel_size=3, stride=2, ceil_mode=True),  # fast-reid since 2020-11
}
DEPTHS = {
    18: tv_resnet.resnet18,
    34: tv_resnet.resnet34,
    50: tv_resnet.resnet50,
    101: tv_resnet.resnet101,
    152: tv_resnet.resnet152,
}


TRUNK_PARTS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


def resnet_trunk(
    depth: int, *, last_stride: int = 1, ibn: str | None = None, stem_pool: str = "padding"
) -> tv_resnet.ResNet:
    """torchvision's ResNet (or its IBN-Net design) with the last stride and stem pooling
    asked for; its ``fc`` is left unused."""
    if last_stride not in (1, 2):
        raise UsageError(f"model.last_stride must be 1 or 2, got {last_stride}")
    if stem_pool not in STEM_POOLS:
        raise UsageError(f"model.stem_pool: choose from {', '.join(STEM_POOLS)}, got {stem_pool!r}")
    trunk = DEPTHS[depth](weights=None) if ibn is None else ibn_resnet(depth, ibn)
    trunk.maxpool = nn.MaxPool2d(**STEM_POOLS[stem_pool])
    if last_stride == 1:
        block = trunk.layer4[0]
        (block.conv2 if hasattr(block, "conv3") else block.conv1).stride = (1, 1)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)
    return trunk


def stem_and_stages(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The stem and layer1-4 of a model holding :data:`TRUNK_PARTS`."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    return model.layer4(model.layer3(model.layer2(model.layer1(x))))


class ReIDResNet(ReIDNet):
    """A torchvision ResNet trunk, pooled, with an optional BNNeck and a classifier.

    Args:
        depth: 18, 34, 50, 101 or 152.
        num_classes: training identities (the classifier's outputs).
        bnneck: batch-norm bottleneck before the classifier.
        last_stride: stride of the last stage (1 keeps a 16x8 map at 256x128 input).
        classifier: "linear", or "cosine" for the margin losses.
        neck_feat: the metric losses' feature, "before" the BNNeck (BoT) or "after" it
            (fast-reid's SBS and MGN).
        ibn: None, or IBN-Net's design "a" or "b" (:mod:`reidkit.models.ibn`).
        non_local: non-local blocks after the last blocks of layer2 and layer3, where AGW
            and fast-reid place them (ResNet-50 and 101).
        pooling, gem_p, gem_learnable: "avg", or "gem" with p (3 when not given), fixed or
            learned (:func:`reidkit.models.pooling.make_pool`).
        stem_pool: "padding" (torchvision) or "ceil" (fast-reid): see the module's text.

    In eval mode ``forward`` returns the embedding (after the BNNeck when there is one); in
    train mode it returns ``(logits, feature)`` with the feature the triplet losses use
    (``neck_feat``).
    """

    def __init__(
        self,
        depth: int = 50,
        num_classes: int = 751,
        *,
        bnneck: bool = True,
        last_stride: int = 1,
        classifier: str = "linear",
        neck_feat: str = "before",
        ibn: str | None = None,
        non_local: bool = False,
        pooling: str = "avg",
        gem_p: float | None = None,
        gem_learnable: bool = False,
        stem_pool: str = "padding",
    ) -> None:
        super().__init__()
        if non_local and depth not in BLOCKS_BY_DEPTH:
            raise UsageError(
                f"model.non_local: the published models place non-local blocks in ResNet-50 "
                f"and ResNet-101 only, not in ResNet-{depth}",
                hint="choose resnet50 or resnet101 (or their IBN-Net designs)",
            )
        trunk = resnet_trunk(depth, last_stride=last_stride, ibn=ibn, stem_pool=stem_pool)
        for part in TRUNK_PARTS:  # torchvision's names, as the published files have them
            setattr(self, part, getattr(trunk, part))
        self.non_local_after: list[list[int]] = [[] for _ in range(4)]  # per stage
        if non_local:
            for stage, count in enumerate(BLOCKS_BY_DEPTH[depth]):
                if not count:
                    continue
                stage_blocks = getattr(self, f"layer{stage + 1}")
                self.non_local_after[stage] = positions(len(stage_blocks), count)
                width = stage_blocks[-1].conv3.out_channels  # bottlenecks only (50, 101)
                blocks = nn.ModuleList(NonLocal(width) for _ in range(count))
                setattr(self, f"NL_{stage + 1}", blocks)
        self.feature_dim = trunk.fc.in_features
        self.pool = make_pool(pooling, gem_p, gem_learnable)
        self.option_layers = tuple(
            f"NL_{s + 1}" for s, after in enumerate(self.non_local_after) if after
        )
        self.bnneck, self.classifier = make_head(self.feature_dim, num_classes, bnneck, classifier)
        self.neck_feat = check_neck_feat(neck_feat, bnneck)
        if neck_feat == "after":  # the metric losses train the BNNeck too
            self.identity_only = ("classifier.",)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage, after in enumerate(self.non_local_after):
            blocks = getattr(self, f"layer{stage + 1}")
            if not after:
                x = blocks(x)
                continue
            extra = iter(getattr(self, f"NL_{stage + 1}"))
            for i, block in enumerate(blocks):
                x = block(x)
                if i in after:
                    x = next(extra)(x)
        return self.pool(x).flatten(1)

    def head(self, feature: torch.Tensor):
        return head_forward(feature, self)
