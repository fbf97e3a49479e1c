"""MGN, the Multiple Granularity Network (Wang et al., ACM MM 2018), as fast-reid builds it
(fastreid/modeling/meta_arch/mgn.py), under its module names so that its files load.

A ResNet-50 (or its IBN-Net design) shared up to the first block of layer3 (``backbone``:
conv1, bn1, relu, maxpool, layer1, layer2, layer3[0]), then three branches, each its own
copy of the rest of layer3 and of layer4: ``b1`` keeps layer4's stride (``last_stride``)
and pools the whole map; ``b2`` and ``b3`` have a stride-1 layer4 and pool the whole map
and its 2 and 3 horizontal parts. Eight heads (``b1_head``, ``b2_head``, ``b21_head``, ...),
each a pooling, a 1x1 conv to 256 and a BatchNorm with its shift frozen (``bottleneck``)
and a classifier weight (``weight``), make eight 256-d features; the test feature is their
concatenation in fast-reid's order (b1, b2, b3, b21, b22, b31, b32, b33: 2048-d), each
after its BatchNorm. Training: an identity loss on each head (averaged, fast-reid's 0.125
each) and a triplet loss on five features (averaged, fast-reid's 0.2 each): the three
branches' whole-map features and the concatenations of b2's and of b3's parts.

Default pooling is fast-reid's MGN's (its SBS base): GeM with a learned p per head.

``head_layout="zoo"`` builds the heads of fast-reid's MGN files of July 2020 (its model
zoo, commit 1ed73fb): after the 1x1 conv and its BatchNorm, a ReLU and a second BatchNorm
(the BNNeck, shift frozen), whose output is the head's feature; the first BatchNorm learns
its shift.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from reidkit.errors import UsageError
from reidkit.models.head import CLASSIFIERS
from reidkit.models.net import ReIDNet
from reidkit.models.pooling import make_pool
from reidkit.models.resnet import resnet_trunk

EMBEDDING_DIM = 256
WIDTH = 2048  # ResNet-50's final map
# the heads in the test feature's order, and each one's branch and part (index, of parts)
HEADS = {
    "b1": (1, 0, 1),
    "b2": (2, 0, 1),
    "b3": (3, 0, 1),
    "b21": (2, 0, 2),
    "b22": (2, 1, 2),
    "b31": (3, 0, 3),
    "b32": (3, 1, 3),
    "b33": (3, 2, 3),
}
# fast-reid's current heads, or its model zoo's (conv, BN, ReLU, then a BNNeck)
HEAD_LAYOUTS = ("later", "zoo")
# the triplet loss's features: single heads, or parts concatenated
TRIPLET_FEATURES = (("b1",), ("b2",), ("b3",), ("b21", "b22"), ("b31", "b32", "b33"))


class EmbeddingHead(nn.Module):
    """fast-reid's head: pooling (``pool_layer``), 1x1 conv to 256 and a BatchNorm with a
    frozen shift (``bottleneck``), and the classifier's weight (``weight``; cosine logits
    for the margin losses)."""

    def __init__(
        self, num_classes: int, pool: nn.Module, cosine: bool, layout: str = "later"
    ) -> None:
        super().__init__()
        self.pool_layer = pool
        layers = [nn.Conv2d(WIDTH, EMBEDDING_DIM, 1, bias=False), nn.BatchNorm2d(EMBEDDING_DIM)]
        if layout == "zoo":
            layers += [nn.ReLU(inplace=True), nn.BatchNorm2d(EMBEDDING_DIM)]
        self.bottleneck = nn.Sequential(*layers)
        nn.init.kaiming_normal_(self.bottleneck[0].weight, mode="fan_out")
        self.bottleneck[-1].bias.requires_grad_(False)
        self.weight = nn.Parameter(torch.empty(num_classes, EMBEDDING_DIM))
        nn.init.normal_(self.weight, std=0.01)
        self.cosine = cosine

    def embed(self, pooled: torch.Tensor) -> torch.Tensor:
        """The 256-d feature of a pooled vector (N, 2048)."""
        return self.bottleneck(pooled[:, :, None, None])[:, :, 0, 0]

    def logits(self, feature: torch.Tensor) -> torch.Tensor:
        if self.cosine:
            return F.linear(F.normalize(feature, dim=1), F.normalize(self.weight, dim=1))
        return F.linear(feature, self.weight)


def _part_rows(height: int, maxpool: nn.MaxPool2d) -> int:
    """The height of the part branches' map: the stem's conv (stride 2) and max pooling,
    layer2's and layer3's stride 2; layer4's is 1."""
    rows = (height - 1) // 2 + 1  # 7x7 conv, padding 3, stride 2
    rows = (rows + 2 * maxpool.padding - 3 + (1 if maxpool.ceil_mode else 0)) // 2 + 1
    for _ in range(2):  # layer2, layer3: 3x3 conv, padding 1, stride 2
        rows = (rows - 1) // 2 + 1
    return rows


def _stride_one_layer4(layer4: nn.Sequential) -> nn.Sequential:
    """A copy of layer4 with its first block's stride 1 (fast-reid's ``res_p_conv5``)."""
    layer = copy.deepcopy(layer4)
    block = layer[0]
    block.conv2.stride = (1, 1)
    block.downsample[0].stride = (1, 1)
    return layer


class MGN(ReIDNet):
    """MGN on a ResNet-50 (``ibn``: None, "a" or "b"). ``features`` returns the eight
    heads' pooled vectors side by side (N, 8 x 2048); ``head`` embeds them: their
    concatenation (eval), or ``(logits (N, 8, classes), the five triplet features)``
    (train)."""

    def __init__(
        self,
        num_classes: int,
        *,
        ibn: str | None = None,
        last_stride: int = 1,
        classifier: str = "linear",
        pooling: str = "gem",
        gem_p: float | None = None,
        gem_learnable: bool | None = None,
        stem_pool: str = "padding",
        head_layout: str = "later",
    ) -> None:
        super().__init__()
        if head_layout not in HEAD_LAYOUTS:
            raise UsageError(
                f"model.head_layout: choose from {', '.join(HEAD_LAYOUTS)}, got {head_layout!r}"
            )
        if classifier not in CLASSIFIERS:
            raise UsageError(
                f"model.classifier: unknown value {classifier!r}",
                hint=f"one of: {', '.join(CLASSIFIERS)}",
            )
        trunk = resnet_trunk(50, last_stride=last_stride, ibn=ibn, stem_pool=stem_pool)
        self.backbone = nn.Sequential(
            trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool,
            trunk.layer1, trunk.layer2, trunk.layer3[0],
        )  # fmt: skip
        rest_of_layer3 = nn.Sequential(*trunk.layer3[1:])
        layer4 = {1: trunk.layer4}
        layer4 |= {b: _stride_one_layer4(trunk.layer4) for b in (2, 3)}
        # registered in fast-reid's order: b1, b1_head, b2, b2_head, b21_head, b22_head, b3, ...
        for name, (branch, part, _) in sorted(HEADS.items(), key=lambda item: item[1][0]):
            if part == 0 and not hasattr(self, f"b{branch}"):
                setattr(
                    self, f"b{branch}", nn.Sequential(copy.deepcopy(rest_of_layer3), layer4[branch])
                )
            learned = pooling == "gem" if gem_learnable is None else gem_learnable
            pool = make_pool(pooling, gem_p, learned)  # refuses p or learning with avg
            head = EmbeddingHead(num_classes, pool, classifier == "cosine", head_layout)
            setattr(self, f"{name}_head", head)
        self.feature_dim = EMBEDDING_DIM * len(HEADS)
        self.identity_only = tuple(f"{name}_head.weight" for name in HEADS)
        self.classifier_names = self.identity_only
        self.metric_features = len(TRIPLET_FEATURES)

    @staticmethod
    def translate_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A ResNet's weights (an ImageNet file) in MGN's names; MGN's own unchanged."""
        return from_resnet_names(state) if any(k.startswith("layer3.") for k in state) else state

    def heads(self) -> list[EmbeddingHead]:
        return [getattr(self, f"{name}_head") for name in HEADS]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x.shape[2], x.shape[3])
        shared = self.backbone(x)
        maps = {1: self.b1(shared), 2: self.b2(shared), 3: self.b3(shared)}
        pooled = []
        for head, (branch, part, parts) in zip(self.heads(), HEADS.values(), strict=True):
            region = torch.chunk(maps[branch], parts, dim=2)[part]  # as fast-reid cuts them
            pooled.append(head.pool_layer(region).flatten(1))
        return torch.cat(pooled, 1)

    def check_input(self, height: int, width: int) -> None:
        """torch.chunk cuts n rows into pieces of ceil(n / parts) rows: fewer pieces than
        parts when n is 1, 2 or 4 (b3's map of a 64-pixel image is 4 rows high); heights
        of 80 pixels and more always give 3."""
        rows = _part_rows(height, self.backbone[3])
        pieces = len(range(0, rows, -(-rows // 3)))
        if pieces < 3:
            raise UsageError(
                f"MGN cuts a map {rows} rows high into {pieces} parts, not 3: images "
                f"{height} pixels high are too low",
                hint="images 80 pixels high or more (data.height; --height): fast-reid's are 384",
            )

    def head(self, feature: torch.Tensor):
        pooled = feature.view(feature.shape[0], len(HEADS), WIDTH)
        heads = self.heads()
        embedded = [head.embed(pooled[:, i]) for i, head in enumerate(heads)]
        if not self.training:
            return torch.cat(embedded, 1)
        logits = torch.stack([h.logits(e) for h, e in zip(heads, embedded, strict=True)], 1)
        by_name = dict(zip(HEADS, embedded, strict=True))
        metric = tuple(torch.cat([by_name[n] for n in names], 1) for names in TRIPLET_FEATURES)
        return logits, metric


def from_resnet_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ResNet state dict (torchvision's or IBN-Net's names: an ImageNet file) in MGN's
    names: the stem, layer1, layer2 and layer3's first block into ``backbone``, the rest
    of layer3 and layer4 into each branch."""
    stem = {"conv1.": "backbone.0.", "bn1.": "backbone.1.", "layer1.": "backbone.4.",
            "layer2.": "backbone.5.", "layer3.0.": "backbone.6."}  # fmt: skip
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for old, new in stem.items():
            if key.startswith(old):
                out[new + key[len(old) :]] = value
                break
        else:
            if key.startswith("layer3."):
                index, rest = key[len("layer3.") :].split(".", 1)
                for branch in ("b1", "b2", "b3"):
                    out[f"{branch}.0.{int(index) - 1}.{rest}"] = value
            elif key.startswith("layer4."):
                for branch in ("b1", "b2", "b3"):
                    out[f"{branch}.1.{key[len('layer4.') :]}"] = value
            else:
                out[key] = value  # fc.*: ImageNet's classifier, left for the report
    return out
