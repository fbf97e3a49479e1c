"""fast-reid's checkpoints written down from the facts of its code, as its Checkpointer
saves them, and a functional forward over their names: reidkit's reading of fast-reid files
is checked against this, independently of reidkit's translation and module code.

Facts used (fast-reid at its model zoo's commit 1ed73fb, 2020-07-30, and at its last):

- a file is ``torch.save({"model": model.state_dict(), "iteration": N, ...})``; its
  BatchNorms (``get_norm``: subclasses of torch's) carry ``num_batches_tracked``;
- Baseline: ``backbone.`` + torchvision's ResNet names (IBN-a ``bn1.IN``/``bn1.BN`` in
  layer1-3; non-local blocks ``NL_2.j``/``NL_3.j``: tests/resnet_reference.py) and a head:
  the zoo's ``heads.bnneck`` (BatchNorm on the pooled map, shift frozen) and
  ``heads.classifier.weight`` [classes, 2048] (Linear without bias, or the margin layers'
  ``weight``), with the Baseline's buffers ``pixel_mean``/``pixel_std`` [1, 3, 1, 1] in the
  state dict; from 4d573b8 (2020-09-10, its v1.0 release included) ``heads.bottleneck.0``
  (the BNNeck) and still ``heads.classifier.weight``, the pixel buffers registered as not
  persistent; from 883fd4a (2021-03-23) ``heads.weight``; a learned GeM's
  ``heads.pool_layer.p`` [1];
- the test feature is the BNNeck's output on the pooled final map; the model computes
  ``(x - pixel_mean) / pixel_std`` on 0-255 pixels resized bicubic;
- MGN at the zoo's commit: per head ``bN_pool`` = (pooling, 1x1 conv 2048 -> 256 without
  bias, BatchNorm 256, ReLU) and ``bN_head`` = (``bnneck`` BatchNorm 256, shift frozen,
  ``classifier.weight``); the pooling layer is one module shared by every ``bN_pool``; the
  test feature concatenates the heads' BNNeck outputs in the order b1, b2, b3, b21, b22,
  b31, b32, b33. MGN later: tests/mgn_reference.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from mgn_reference import FEATURE_ORDER, PARTS, mgn_shapes
from resnet_reference import resnet_map, resnet_state

IMAGENET_PIXEL_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)  # fast-reid's MODEL.PIXEL_MEAN
IMAGENET_PIXEL_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def _calibrate(trunk: dict, depth: int, design: str | None, **options) -> None:
    images = torch.randn(2, 3, 64, 32, generator=torch.Generator().manual_seed(5))
    resnet_map(trunk, images, depth, design, last_stride=1, calibrate=True, **options)


def _with_counters(state: dict) -> dict:
    """Every BatchNorm's ``num_batches_tracked``, as torch saves a BatchNorm."""
    out = {}
    for key, value in state.items():
        out[key] = value
        if key.endswith("running_var"):
            out[key[: -len("running_var")] + "num_batches_tracked"] = torch.tensor(1000)
    return out


def _bn(prefix: str, c: int, g: torch.Generator) -> dict:
    return {
        f"{prefix}.weight": 1 + 0.1 * torch.randn(c, generator=g),
        f"{prefix}.bias": 0.1 * torch.randn(c, generator=g),
        f"{prefix}.running_mean": 0.1 * torch.randn(c, generator=g),
        f"{prefix}.running_var": 0.5 + torch.rand(c, generator=g),
    }


def baseline_file(
    depth: int,
    design: str | None,
    *,
    layout: str,
    non_local: bool = False,
    gem_p: float | None = None,
    classes: int = 751,
    seed: int = 0,
    calibrate: bool = False,
) -> dict:
    """A Baseline (BoT, AGW, SBS) file's container in ``layout`` "zoo", "2020-09" or
    "later";
    ``calibrate``: BatchNorm statistics of a batch, as trained ones are (random ones make
    a deep trunk's maps overflow float32 in the non-local blocks)."""
    g = torch.Generator().manual_seed(seed + 1)
    trunk = resnet_state(depth, design, seed=seed, non_local=non_local)
    del trunk["fc.weight"], trunk["fc.bias"]
    if calibrate:
        _calibrate(trunk, depth, design, non_local=non_local)
    width = 2048 if depth >= 50 else 512
    state = {f"backbone.{k}": v for k, v in trunk.items()}
    head, classifier = {
        "zoo": ("heads.bnneck", "heads.classifier.weight"),
        "2020-09": ("heads.bottleneck.0", "heads.classifier.weight"),
        "later": ("heads.bottleneck.0", "heads.weight"),
    }[layout]
    if gem_p is not None:
        state["heads.pool_layer.p"] = torch.tensor([gem_p])
    state |= _bn(head, width, g)
    state[classifier] = 0.01 * torch.randn(classes, width, generator=g)
    if layout == "zoo":
        state["pixel_mean"] = torch.tensor(IMAGENET_PIXEL_MEAN).view(1, 3, 1, 1)
        state["pixel_std"] = torch.tensor(IMAGENET_PIXEL_STD).view(1, 3, 1, 1)
    return {"model": _with_counters(state), "iteration": 1000}


def baseline_feature(file: dict, x: torch.Tensor, depth: int, design: str | None, **trunk):
    """The Baseline's test feature from the file's tensors, on 0-255 pixels ``x``;
    ``trunk``: last_stride, non_local, stem_pool (tests/resnet_reference.py)."""
    state = file["model"]
    mean = torch.tensor(IMAGENET_PIXEL_MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_PIXEL_STD, dtype=x.dtype).view(1, 3, 1, 1)
    backbone = {k[len("backbone.") :]: v.to(x.dtype) for k, v in state.items()
                if k.startswith("backbone.")}  # fmt: skip
    fmap = resnet_map(backbone, (x - mean) / std, depth, design, **trunk)
    p = state.get("heads.pool_layer.p")
    if p is None:
        pooled = fmap.mean((2, 3))
    else:
        p = p.to(x.dtype)
        pooled = fmap.clamp(min=1e-6).pow(p).mean((2, 3)).pow(1.0 / p)
    neck = "heads.bnneck" if "heads.bnneck.weight" in state else "heads.bottleneck.0"
    return F.batch_norm(
        pooled, *(state[f"{neck}.{n}"].to(x.dtype) for n in ("running_mean", "running_var")),
        *(state[f"{neck}.{n}"].to(x.dtype) for n in ("weight", "bias")), False, 0.0, 1e-5,
    )  # fmt: skip


def mgn_zoo_file(design: str | None, classes: int = 751, seed: int = 0, p: float = 3.3) -> dict:
    """An MGN file of the zoo's layout: branches from a ResNet-50's tensors (as its code
    copies layer3[1:] and layer4 into each), heads with random trained-looking values."""
    g = torch.Generator().manual_seed(seed + 1)
    resnet = resnet_state(50, design, seed=seed)
    _calibrate(resnet, 50, design)
    later = mgn_shapes(resnet, classes)
    stem = {"backbone.0.": "conv1.", "backbone.1.": "bn1.", "backbone.4.": "layer1.",
            "backbone.5.": "layer2.", "backbone.6.": "layer3.0."}  # fmt: skip
    state: dict[str, torch.Tensor] = {}
    for key in later:
        if key.startswith("backbone."):
            old = next(o for o in stem if key.startswith(o))
            state[key] = resnet[stem[old] + key[len(old) :]]
        elif key[:3] in ("b1.", "b2.", "b3."):
            _, part, rest = key.split(".", 2)
            if part == "0":
                block, tail = rest.split(".", 1)
                state[key] = resnet[f"layer3.{int(block) + 1}.{tail}"]
            else:
                state[key] = resnet[f"layer4.{rest}"]
    for head in FEATURE_ORDER:
        state[f"{head}_pool.0.p"] = torch.tensor([p])  # one module shared by every pool
        state[f"{head}_pool.1.weight"] = 0.05 * torch.randn(256, 2048, 1, 1, generator=g)
        state |= _bn(f"{head}_pool.2", 256, g)
        state |= _bn(f"{head}_head.bnneck", 256, g)
        state[f"{head}_head.classifier.weight"] = 0.01 * torch.randn(classes, 256, generator=g)
    return {"model": _with_counters(state), "iteration": 1000}, resnet


def mgn_zoo_feature(file: dict, resnet: dict, x: torch.Tensor, design: str | None):
    """The zoo MGN's test feature on 0-255 pixels ``x`` (the stem padded, as in 2020)."""
    state = {k: v.to(x.dtype) for k, v in file["model"].items() if v.is_floating_point()}
    resnet = {k: v.to(x.dtype) for k, v in resnet.items()}
    mean = torch.tensor(IMAGENET_PIXEL_MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_PIXEL_STD, dtype=x.dtype).view(1, 3, 1, 1)
    x = (x - mean) / std
    maps = {"b1": resnet_map(resnet, x, 50, design, last_stride=1)}
    maps["b2"] = maps["b3"] = maps["b1"]  # every branch has a stride-1 layer4 here

    def bn(y, prefix):
        stats = (state[f"{prefix}.{n}"] for n in ("running_mean", "running_var", "weight", "bias"))
        return F.batch_norm(y, *stats, False, 0.0, 1e-5)

    out = []
    for head in FEATURE_ORDER:
        part, parts = PARTS[head]
        region = torch.chunk(maps[head[:2]], parts, dim=2)[part]
        p = state[f"{head}_pool.0.p"]
        pooled = region.clamp(min=1e-6).pow(p).mean((2, 3), keepdim=True).pow(1.0 / p)
        y = F.relu(bn(F.conv2d(pooled, state[f"{head}_pool.1.weight"]), f"{head}_pool.2"))
        out.append(bn(y, f"{head}_head.bnneck").flatten(1))
    return torch.cat(out, 1)
