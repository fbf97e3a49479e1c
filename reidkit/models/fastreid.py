"""fast-reid's checkpoints (JDAI-CV/fast-reid, its model zoo and the files its training
writes): what model a file holds, read from its names and shapes, and its tensors in
reidkit's names. The one place fast-reid's names are known; :mod:`reidkit.models.weights`
calls it for every file it reads.

A fast-reid file is its Checkpointer's ``{"model": state_dict, ...}``. Two meta-
architectures are read:

- **Baseline** (BoT, AGW, SBS): ``backbone.*`` is a torchvision ResNet (IBN-a halves
  ``bn1.IN``/``bn1.BN``; non-local blocks ``NL_2.*``, ``NL_3.*``), and the head comes in
  three layouts: the zoo's of July 2020 (``heads.bnneck``, ``heads.classifier.weight``),
  fast-reid's from 2020-09-10 (4d573b8: ``heads.bottleneck.0``,
  ``heads.classifier.weight``; its v1.0 release) and from 2021-03-23 (883fd4a:
  ``heads.bottleneck.0``, ``heads.weight``). A learned GeM keeps its
  ``heads.pool_layer.p``.
- **MGN**: the later layouts are reidkit's own MGN (:mod:`reidkit.models.mgn`; the
  classifier ``bN_head.classifier.weight`` until 2021-03); the zoo's has a ``bN_pool``
  (pooling, 1x1 conv, BN, ReLU) and a ``bN_head`` (BNNeck, classifier) per head, built by
  ``head_layout="zoo"``.

What the names cannot say comes from fast-reid's ``config.yaml`` (:func:`read_config`) or
documented defaults: the test size (256x128; MGN 384x128), the last stride (1), the stem's
max pooling (the zoo's layout: padded, as fast-reid's code was until 2020-11-06; the later
layouts: ``ceil_mode``, as it has been since, commit 42cadae, though the files of 2020-09-10
to 2020-11-06 were padded), the resize (bicubic, fast-
reid's test transform) and the pixel mean and std (the file's ``pixel_mean``/``pixel_std``,
else ImageNet's).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reidkit.errors import DataError, MissingInputError, UsageError
from reidkit.models.spec import IMAGENET_MEAN, IMAGENET_STD

# blocks per stage -> depth, for bottleneck and basic blocks (torchvision's layouts)
BOTTLENECK_DEPTHS = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}
BASIC_DEPTHS = {(2, 2, 2, 2): 18, (3, 4, 6, 3): 34}
MGN_HEADS = ("b1", "b2", "b3", "b21", "b22", "b31", "b32", "b33")
PIXELS = ("pixel_mean", "pixel_std")
# fast-reid's datasets that are not of people: their files are refused
NOT_PERSON = {
    "VeRi": "vehicle", "VehicleID": "vehicle", "VeRiWild": "vehicle", "SmallVeRiWild": "vehicle",
    "SmallVehicleID": "vehicle", "LargeVehicleID": "vehicle", "LargeVeRiWild": "vehicle",
    "MediumVehicleID": "vehicle", "MediumVeRiWild": "vehicle",
    "PA100K": "attribute", "Market1501Attr": "attribute", "DukeMTMCAttr": "attribute",
}  # fmt: skip
# POOL_LAYER names of fast-reid's eras: the learned GeM's p is in the file, the fixed GeM's
# and the average's are not ("gempool" was the learned one until 2020-09, the fixed one after)
AVERAGE_POOLS = {"avgpool", "fastavgpool", "GlobalAvgPool", "FastGlobalAvgPool"}
GEM_POOLS = {"gempool", "gempoolP", "GeneralizedMeanPooling", "GeneralizedMeanPoolingP"}
MARGIN_CLASSIFIERS = {"circleSoftmax", "CircleSoftmax", "cosSoftmax", "CosSoftmax",
                      "amSoftmax", "arcSoftmax", "ArcSoftmax"}  # fmt: skip


def is_fastreid(state: Mapping[str, Any], container: str | None) -> bool:
    """Whether a state dict (``module.`` removed) is fast-reid's: a ``backbone`` and fast-
    reid's heads (a Baseline's ``heads.*``, the zoo MGN's ``b1_pool.*``). MGN's later names
    are reidkit's own MGN's too: they are fast-reid's only in its Checkpointer's container
    (``container`` is the key the state dict was found under, "model"), never in a plain
    state dict or a reidkit checkpoint."""
    if not any(k.startswith("backbone.") for k in state):
        return False
    if any(k.startswith(("heads.", "b1_pool.")) for k in state):
        return True
    return container == "model" and any(k.startswith("b1_head.") for k in state)


def describe(state: Mapping[str, Any], source: str) -> dict[str, Any]:
    """What model a fast-reid state dict holds: {"model", "options", "layout", "data"}.

    Raises:
        UsageError: a model reidkit does not build (naming what it is): exit 2, as a
            config that does not fit.
    """
    others = sorted({k.split(".")[0] for k in state} - {"backbone", "heads", *PIXELS}
                    - {f"{h}{s}" for h in MGN_HEADS for s in ("", "_head", "_pool")})  # fmt: skip
    if others:
        raise UsageError(
            f"{source}: a fast-reid file with parts reidkit does not build "
            f"({', '.join(others[:4])}): a meta-architecture other than Baseline or MGN",
            hint="reidkit reads fast-reid's Baseline (BoT, AGW, SBS) and MGN files",
        )
    mgn = any(k.startswith(("b1_head.", "b1_pool.")) for k in state)
    prefix = "backbone.4." if mgn else "backbone.layer1."
    _refuse_foreign_backbone(state, source, prefix)
    options: dict[str, Any] = {}
    if mgn:
        depth, ibn = 50, any(k.startswith("backbone.4.0.bn1.IN.") for k in state)
        layout = _layout(state, "b1_pool.", "b1_head.classifier.")
        p_key = "b1_pool.0.p" if layout == "zoo" else "b1_head.pool_layer.p"
        if layout == "zoo":
            options["head_layout"] = "zoo"
        model = "mgn_resnet50_ibn_a" if ibn else "mgn_resnet50"
        height = 384
        _check_mgn_trunk(state, source)
    else:
        depth = _depth(state, source)
        ibn = any(k.startswith("backbone.layer1.0.bn1.IN.") for k in state)
        layout = _layout(state, "heads.bnneck.", "heads.classifier.")
        p_key = "heads.pool_layer.p"
        model = f"resnet{depth}_ibn_a" if ibn else f"resnet{depth}"
        if ibn and depth == 152:
            raise UsageError(
                f"{source}: a fast-reid ResNet-152 with IBN-a, which reidkit does not build"
            )
        options |= _baseline_head(state, source, layout)
        options["non_local"] = any(k.startswith("backbone.NL_") for k in state)
        height = 256
    if p_key in state:
        options |= {"pooling": "gem", "gem_p": float(state[p_key].reshape(-1)[0]),
                    "gem_learnable": True}  # fmt: skip
    elif options.get("non_local"):
        options |= {"pooling": "gem", "gem_learnable": False}  # AGW: fixed p 3, no tensor
    else:
        options |= {"pooling": "avg", "gem_learnable": False}
    options["stem_pool"] = "padding" if layout == "zoo" else "ceil"
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if all(k in state for k in PIXELS):
        mean, std = (tuple(float(v) / 255 for v in state[k].reshape(-1)) for k in PIXELS)
    data = {"height": height, "width": 128, "mean": list(mean), "std": list(std),
            "interpolation": "bicubic"}  # fmt: skip
    return {"model": model, "options": options, "layout": layout, "data": data}


def _layout(state: Mapping[str, Any], zoo: str, classifier: str) -> str:
    """The head's layout: the zoo's (July 2020), fast-reid's from 2020-09-10 (4d573b8: the
    BNNeck in ``bottleneck``, the classifier still ``classifier``) or its later one (since
    2021-03-23, 883fd4a: the classifier's ``weight`` in the head itself)."""
    if any(k.startswith(zoo) for k in state):
        return "zoo"
    return "2020-09" if any(k.startswith(classifier) for k in state) else "later"


def _refuse_foreign_backbone(state: Mapping[str, Any], source: str, layer1: str) -> None:
    if any(".se." in k for k in state if k.startswith("backbone")):
        raise UsageError(
            f"{source}: a fast-reid ResNet with SE blocks (WITH_SE), which reidkit does not build"
        )
    if any(".conv2.conv." in k or ".conv2.fc1." in k for k in state):  # split attention
        raise UsageError(
            f"{source}: a fast-reid ResNeSt (S50, S101...), which reidkit does not build"
        )
    if f"{layer1}0.conv1.weight" not in state:
        first = next(iter(state))
        raise UsageError(
            f"{source}: a fast-reid file whose backbone is not a ResNet (its first tensor: "
            f"{first}); reidkit reads fast-reid's ResNets and their IBN-a designs"
        )


def _depth(state: Mapping[str, Any], source: str) -> int:
    blocks = []
    for stage in range(1, 5):
        found = {int(m.group(1)) for k in state
                 if (m := re.match(rf"backbone\.layer{stage}\.(\d+)\.", k))}  # fmt: skip
        blocks.append(len(found))
    bottleneck = "backbone.layer1.0.conv3.weight" in state
    depth = (BOTTLENECK_DEPTHS if bottleneck else BASIC_DEPTHS).get(tuple(blocks))
    if depth is None:
        raise UsageError(
            f"{source}: a fast-reid ResNet with {blocks} blocks per stage, not a known depth"
        )
    return depth


def _check_mgn_trunk(state: Mapping[str, Any], source: str) -> None:
    layer3 = {int(m.group(1)) for k in state if (m := re.match(r"b1\.0\.(\d+)\.", k))}
    if len(layer3) != 5 or "backbone.4.0.conv3.weight" not in state:
        raise UsageError(
            f"{source}: a fast-reid MGN on a trunk other than ResNet-50, which reidkit does "
            "not build"
        )


def _baseline_head(state: Mapping[str, Any], source: str, layout: str) -> dict[str, Any]:
    """The head's options; heads that reduce the feature are refused (the zoo's
    ReductionHead: a ``bottleneck`` before its BNNeck; later: a convolution in it)."""
    if layout == "zoo":
        neck, reduces = "heads.bnneck.weight", any(k.startswith("heads.bottleneck.") for k in state)
    else:
        neck = "heads.bottleneck.0.weight"
        reduces = neck in state and state[neck].dim() != 1
    if reduces:
        raise UsageError(
            f"{source}: a fast-reid head that reduces the feature with a convolution "
            "(a ReductionHead, or EMBEDDING_DIM), which reidkit's ResNets do not have"
        )
    if layout != "zoo" and any(k.startswith("heads.bottleneck.1.") for k in state):
        raise UsageError(
            f"{source}: a fast-reid head with layers after its BNNeck, which reidkit does not build"
        )
    return {"bnneck": neck in state}


def translate(state: Mapping[str, Any], layout: str) -> dict[str, Any]:
    """A fast-reid state dict in reidkit's names (the pixel buffers left out)."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key in PIXELS:
            continue
        out[_name(key, layout)] = value
    return out


def _name(key: str, layout: str) -> str:
    if key.startswith("heads."):
        rest = key[len("heads.") :]
        for old, new in (("pool_layer.", "pool."), ("bnneck.", "bnneck."),
                         ("bottleneck.0.", "bnneck."), ("classifier.", "classifier.")):  # fmt: skip
            if rest.startswith(old):
                return new + rest[len(old) :]
        return "classifier.weight" if rest == "weight" else key
    if key.startswith("backbone.") and not key[len("backbone.") :].split(".")[0].isdigit():
        return key[len("backbone.") :]  # a Baseline's trunk: torchvision's names
    m = re.match(r"(b\d+)_(pool|head)\.(.*)", key)
    if layout == "zoo" and m:  # MGN's zoo heads into reidkit's zoo-layout heads
        head, part, rest = m.groups()
        if part == "pool":
            index, tail = rest.split(".", 1)
            if index == "0":
                return f"{head}_head.pool_layer.{tail}"
            return f"{head}_head.bottleneck.{int(index) - 1}.{tail}"
        if rest.startswith("bnneck."):
            return f"{head}_head.bottleneck.3.{rest[len('bnneck.') :]}"
        if rest == "classifier.weight":
            return f"{head}_head.weight"
    if m and m.group(2) == "head" and m.group(3) == "classifier.weight":  # 2020-09 to 2021-03
        return f"{m.group(1)}_head.weight"
    return key


def read_config(path: str | os.PathLike[str], described: dict[str, Any]) -> dict[str, Any]:
    """``described`` (:func:`describe`) with what a fast-reid config says: the
    ``config.yaml`` a run dumped, or a recipe of its repository (``configs/<Dataset>/
    sbs_R50-ibn.yml``) whose ``_BASE_`` files are read as fast-reid reads them: test size,
    last stride, pooling, classifier, NECK_FEAT, pixels. The file's own
    ``pixel_mean``/``pixel_std`` (a zoo file's) win over the config's.

    Raises:
        MissingInputError: no such file (or base file).
        UsageError: a config that is not fast-reid's, or that contradicts the weights, or
            a dataset that is not of people.
    """
    path = Path(path)
    cfg = _read_yaml(path)
    if not isinstance(cfg.get("MODEL"), dict):
        raise UsageError(f"{path}: not a fast-reid config (no MODEL section)")
    model, heads = cfg["MODEL"], cfg["MODEL"].get("HEADS") or {}
    backbone = model.get("BACKBONE") or {}
    out = {**described, "options": dict(described["options"]), "data": dict(described["data"])}

    def refuse(what: str) -> UsageError:
        return UsageError(f"{path}: {what}, which does not fit the weights ({described['model']})")

    names = (cfg.get("DATASETS") or {}).get("NAMES") or ()
    if isinstance(names, str):  # fast-reid's recipes write tuples as text: ("VeRi",)
        names = re.findall(r"\w+", names)
    for name in names:
        if str(name) in NOT_PERSON:
            raise UsageError(
                f"{path}: a fast-reid model of the {NOT_PERSON[str(name)]} dataset {name}; "
                "reidkit re-identifies people"
            )
    arch = model.get("META_ARCHITECTURE", "Baseline")
    if arch not in ("Baseline", "MGN") or (arch == "MGN") != described["model"].startswith("mgn"):
        raise refuse(f"META_ARCHITECTURE {arch}")
    if backbone.get("NAME", "build_resnet_backbone") != "build_resnet_backbone":
        raise UsageError(
            f"{path}: BACKBONE.NAME {backbone['NAME']}: reidkit builds fast-reid's ResNets only"
        )
    depth = str(backbone.get("DEPTH", "50x")).rstrip("x")
    if f"resnet{depth}" not in described["model"]:
        raise refuse(f"BACKBONE.DEPTH {backbone.get('DEPTH')}")
    if bool(backbone.get("WITH_IBN", False)) != ("ibn" in described["model"]):
        raise refuse(f"BACKBONE.WITH_IBN {backbone.get('WITH_IBN')}")
    if backbone.get("WITH_SE"):
        raise refuse("BACKBONE.WITH_SE True")
    if (
        bool(backbone.get("WITH_NL", False)) != bool(out["options"].get("non_local"))
        and not arch == "MGN"
    ):
        raise refuse(f"BACKBONE.WITH_NL {backbone.get('WITH_NL')}")
    if "LAST_STRIDE" in backbone:
        out["options"]["last_stride"] = int(backbone["LAST_STRIDE"])
    _config_pooling(heads.get("POOL_LAYER"), out["options"], refuse)
    if heads.get("CLS_LAYER") in MARGIN_CLASSIFIERS:
        out["options"]["classifier"] = "cosine"
        circle = str(heads["CLS_LAYER"]).lower().startswith("circle")
        out["id_loss"] = "circle" if circle else "cosface"
    if (
        heads.get("NECK_FEAT") in ("before", "after")
        and arch == "Baseline"
        and out["options"].get("bnneck")
    ):
        out["options"]["neck_feat"] = heads["NECK_FEAT"]
    if int(heads.get("EMBEDDING_DIM", 0) or 0) > 0 and arch == "Baseline":
        raise refuse(f"HEADS.EMBEDDING_DIM {heads['EMBEDDING_DIM']}")
    size = (cfg.get("INPUT") or {}).get("SIZE_TEST")
    if size:
        out["data"]["height"], out["data"]["width"] = (int(v) for v in size)
    if described["data"]["mean"] == list(IMAGENET_MEAN) and "PIXEL_MEAN" in model:
        for key, name in (("mean", "PIXEL_MEAN"), ("std", "PIXEL_STD")):
            out["data"][key] = [float(v) / 255 for v in model[name]]
    return out


def _read_yaml(path: Path, depth: int = 0) -> dict[str, Any]:
    """A fast-reid YAML config with its ``_BASE_`` chain merged under it (a base's path is
    relative to the file that names it), as fast-reid's ``merge_from_file`` does."""
    import yaml

    if not path.is_file():
        raise MissingInputError(f"fast-reid config not found: {path}")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read it ({exc})") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not a YAML file ({str(exc).splitlines()[0]})") from None
    if not isinstance(cfg, dict):
        raise UsageError(f"{path}: not a fast-reid config (not a mapping)")
    base = cfg.pop("_BASE_", None)
    if base is None:
        return cfg
    if depth > 8:
        raise UsageError(f"{path}: _BASE_ files name each other in a loop")
    return _merged(_read_yaml(path.parent / os.path.expanduser(str(base)), depth + 1), cfg)


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _config_pooling(name: str | None, options: dict[str, Any], refuse) -> None:
    """POOL_LAYER against the weights: a learned p is in the file whatever the era called it."""
    if name is None or options.get("gem_learnable"):
        if name is not None and name not in GEM_POOLS:
            raise refuse(f"HEADS.POOL_LAYER {name} (the file has a learned GeM p)")
        return
    if name in AVERAGE_POOLS:
        options.update(pooling="avg")
        options.pop("gem_p", None)
    elif name in GEM_POOLS:  # the fixed GeM of fast-reid's later code: p 3, no tensor
        options.update(pooling="gem")
    else:
        raise refuse(f"HEADS.POOL_LAYER {name} (reidkit pools with avg or GeM)")


def config_beside(weights: str | os.PathLike[str]) -> Path | None:
    """fast-reid's run folder keeps ``config.yaml`` beside its ``model_final.pth``."""
    candidate = Path(weights).parent / "config.yaml"
    return candidate if candidate.is_file() else None
