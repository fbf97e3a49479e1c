"""fast-reid's MGN written down from the facts of its code (fastreid/modeling/meta_arch/
mgn.py, heads/embedding_head.py, layers/pooling.py), over tests/resnet_reference.py's
ResNet-50: the names and shapes of its state dicts and its test feature, independently of
reidkit's module code.

Facts used:

- ``backbone`` = Sequential(conv1, bn1, relu, maxpool, layer1, layer2, layer3[0]): indices
  0, 1, 4, 5, 6 hold tensors;
- three branches ``b1``, ``b2``, ``b3`` = Sequential(copy of layer3[1:], a layer4): b1's is
  the backbone's layer4 (its last stride from the config, 1 in every MGN config); b2's and
  b3's are built with stride 1 and loaded from layer4's state dict;
- registration order b1, b1_head, b2, b2_head, b21_head, b22_head, b3, b3_head, b31_head,
  b32_head, b33_head; a head holds ``weight`` [classes, 256] (the classifier), ``pool_layer``
  (GeM with a learned ``p`` [1] in MGN's SBS base) and ``bottleneck`` = (1x1 conv 2048 -> 256
  without bias, BatchNorm 256 with its bias frozen);
- b2's map is cut into 2 and b3's into 3 horizontal parts with ``torch.chunk(dim=2)``; each
  head pools its map or part, then its bottleneck; the test feature concatenates the heads'
  outputs in the order b1, b2, b3, b21, b22, b31, b32, b33.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from resnet_reference import resnet_map

EMBEDDING = 256
BRANCH_HEADS = {"b1": ("b1",), "b2": ("b2", "b21", "b22"), "b3": ("b3", "b31", "b32", "b33")}
FEATURE_ORDER = ("b1", "b2", "b3", "b21", "b22", "b31", "b32", "b33")
PARTS = {"b1": (0, 1), "b2": (0, 1), "b3": (0, 1), "b21": (0, 2), "b22": (1, 2),
         "b31": (0, 3), "b32": (1, 3), "b33": (2, 3)}  # fmt: skip


def mgn_shapes(resnet: dict, classes: int) -> dict[str, tuple[int, ...]]:
    """MGN's state dict names and shapes in its order (BatchNorm counters left out, as
    the ResNet state has none), from a ResNet-50 state dict's."""
    stem = {"conv1.": "backbone.0.", "bn1.": "backbone.1.", "layer1.": "backbone.4.",
            "layer2.": "backbone.5.", "layer3.0.": "backbone.6."}  # fmt: skip
    shapes: dict[str, tuple[int, ...]] = {}
    for key, value in resnet.items():
        new = next((n + key[len(o) :] for o, n in stem.items() if key.startswith(o)), None)
        if new:
            shapes[new] = tuple(value.shape)
    for branch, heads in BRANCH_HEADS.items():
        for key, value in resnet.items():
            if key.startswith("layer3.") and not key.startswith("layer3.0."):
                block, rest = key[len("layer3.") :].split(".", 1)
                shapes[f"{branch}.0.{int(block) - 1}.{rest}"] = tuple(value.shape)
        for key, value in resnet.items():
            if key.startswith("layer4."):
                shapes[f"{branch}.1.{key[len('layer4.') :]}"] = tuple(value.shape)
        for head in heads:
            shapes[f"{head}_head.weight"] = (classes, EMBEDDING)
            shapes[f"{head}_head.pool_layer.p"] = (1,)
            shapes[f"{head}_head.bottleneck.0.weight"] = (EMBEDDING, 2048, 1, 1)
            for name in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"{head}_head.bottleneck.1.{name}"] = (EMBEDDING,)
    return shapes


def mgn_feature(resnet: dict, heads: dict, x: torch.Tensor, design=None, last_stride=1):
    """MGN's test feature in evaluation mode, for branches loaded from the ResNet-50 state
    ``resnet`` (each branch a copy of its layer3[1:] and layer4) and the heads' tensors
    ``heads`` (MGN's names)."""
    maps = {"b1": resnet_map(resnet, x, 50, design, last_stride=last_stride)}
    maps["b2"] = maps["b3"] = resnet_map(resnet, x, 50, design, last_stride=1)
    out = []
    for head in FEATURE_ORDER:
        part, parts = PARTS[head]
        region = torch.chunk(maps[head[:2]], parts, dim=2)[part]
        p = heads[f"{head}_head.pool_layer.p"]
        pooled = region.clamp(min=1e-6).pow(p).mean((2, 3), keepdim=True).pow(1.0 / p)
        b = f"{head}_head.bottleneck"
        y = F.conv2d(pooled, heads[f"{b}.0.weight"])
        y = F.batch_norm(
            y, heads[f"{b}.1.running_mean"], heads[f"{b}.1.running_var"],
            heads[f"{b}.1.weight"], heads[f"{b}.1.bias"], False, 0.0, 1e-5,
        )  # fmt: skip
        out.append(y.flatten(1))
    return torch.cat(out, 1)
