"""Training configuration: dataclasses, YAML files and dotted ``key=value`` overrides.

    reidkit train --config cfg.yaml optim.lr=3e-4 data.batch_size=64

Overrides are parsed by the type of the field they set (never with eval); an unknown key
or a value of the wrong type is a UsageError that names the key and suggests the closest
valid one. What the values may be, and what the model fills in, is
:mod:`reidkit.config_checks` (:func:`load_config` applies it).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reidkit.config_checks import check_config, value_of
from reidkit.errors import UsageError


@dataclass
class DataConfig:
    dataset: str = "synthreid"
    root: str = "data"
    height: int = 256
    width: int = 128
    mean: list[float] | None = None  # None: the model's (ImageNet's for most)
    std: list[float] | None = None
    interpolation: str = "bilinear"  # the resize: bilinear, or bicubic (fast-reid's)
    # "pk": P identities x K images per batch; "pk_cameras": the same, each identity's K
    # preferring other cameras than its first image's (Cluster Contrast's); "random"
    sampler: str = "pk"
    batch_size: int = 64
    num_instances: int = 4  # K of the PK sampler
    workers: int = -1  # -1: none on the CPU, up to 8 with a GPU
    flip: float = 0.5  # probability of a horizontal flip
    pad: int = 10  # pad, then random crop back to size
    erasing: float = 0.5  # probability of random erasing
    color_jitter: float = 0.0  # strength of brightness/contrast/saturation jitter
    autoaugment: float = 0.0  # probability of torchvision's AutoAugment (ImageNet policy)
    skip_bad: bool = False  # leave unreadable images out (listed in train.log), not stop
    sources: list[str] = field(default_factory=list)  # train on several datasets; []: dataset
    val_ids: int = 0  # training identities held out as a validation split; best.pt follows it
    seq_len: int = 4  # video: frames per training clip (and per tracklet with eval.sample evenly)
    sample: str = "evenly"  # video: a training clip's frames: evenly spread, random, or all
    max_frames: int | None = None  # video, sample all: most frames a batch holds; None: 512


@dataclass
class ModelConfig:
    name: str = "resnet50"
    pretrained: str = "imagenet"  # imagenet, none, or a weights file to start from
    allow_partial: bool = False  # start from weights that leave trunk tensors unloaded
    last_stride: int | None = None  # None: the model's default (ResNets: 1, as BoT)
    bnneck: bool | None = None  # None: the model's default (ResNets: on)
    classifier: str | None = None  # linear or cosine; None: what loss.id_loss needs
    neck_feat: str | None = None  # the metric losses' feature: before or after the BNNeck
    # the published designs' options (ResNets; None: the model's default)
    non_local: bool | None = None  # non-local blocks in layer2 and layer3 (AGW, SBS, MGN)
    pooling: str | None = None  # avg or gem
    gem_p: float | None = None  # GeM's p (3 when not given)
    gem_learnable: bool | None = None  # GeM's p learned (SBS, MGN)
    stem_pool: str | None = None  # padding (torchvision) or ceil (fast-reid since 2020-11)
    head_layout: str | None = None  # MGN: later (fast-reid's code), or zoo (its 2020 files)
    part_feature: str | None = None  # PCB's test feature: full (2048 x parts) or reduced
    temporal: str = "avg"  # video: a clip's frame features pooled over time by avg or max

    def given_options(self) -> dict[str, typing.Any]:
        """The model options set here (None: the model's default)."""
        return {key: getattr(self, key) for key in MODEL_OPTIONS}


# ModelConfig's fields that are options of the model's builder
MODEL_OPTIONS = (
    "last_stride", "bnneck", "classifier", "neck_feat", "non_local", "pooling", "gem_p",
    "gem_learnable", "stem_pool", "part_feature", "head_layout",
)  # fmt: skip


@dataclass
class LossConfig:
    softmax: float = 1.0  # weight of the identity (classification) term
    id_loss: str = "ce"  # ce; cosface (AM-softmax) or circle on a cosine classifier
    id_scale: float | None = None  # cosface/circle scale; None: 30 / 64
    id_margin: float | None = None  # cosface/circle margin; None: 0.35 / 0.25
    label_smoothing: float = 0.1
    triplet: float = 1.0  # weight of the batch-hard triplet term
    margin: float = 0.3
    soft_margin: bool = False
    triplet_mining: str = "hard"  # hard (batch-hard), or weighted (AGW's softmax weights)
    # epochs over which the triplet weight rises from 0 (docs/training.md: from scratch the
    # triplet term collapses an embedding that does not rank yet); None: the schedule's
    # warmup epochs when training from scratch, 0 from pretrained weights (BoT as published)
    triplet_warmup: int | None = None
    center: float = 0.0  # weight of the center loss (BoT: 0.0005), 0: off
    center_lr: float = 0.5  # the centers' own SGD learning rate


@dataclass
class OptimConfig:
    name: str = "adam"  # adam, amsgrad, sgd
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    momentum: float = 0.9
    nesterov: bool = False
    base_lr_mult: float = 1.0  # staged learning rates: the pretrained base's share of lr
    grad_clip: float = 0.0  # max gradient norm, 0: off


@dataclass
class ScheduleConfig:
    name: str = "multistep"  # step, multistep, cosine
    warmup_epochs: int = 10
    warmup_factor: float = 0.01
    warmup_iters: int = 0  # a warmup over iterations instead (fast-reid); warmup_epochs 0
    delay_epochs: int = 0  # cosine: epochs at the full rate before the decay (fast-reid)
    milestones: list[int] = field(default_factory=lambda: [40, 70])
    step_size: int = 40
    gamma: float = 0.1
    min_lr: float = 0.0


@dataclass
class TrainConfig:
    epochs: int = 120
    seed: int = 0
    deterministic: bool = False
    amp: str = "off"  # off, bf16, fp16
    channels_last: bool = False
    freeze_base_epochs: int = 0  # train only the new layers first
    freeze_base_iters: int = 0  # the same, for this many iterations (fast-reid)
    # batches per epoch (each process's), drawn from as many passes of the sampler as it
    # takes (Cluster Contrast's iters); 0: an epoch is one pass over the training samples
    iters_per_epoch: int = 0
    device: str = "auto"
    save_every: int = 0  # also keep weights/epoch-NNN.pt every N epochs, 0: never


@dataclass
class EvalConfig:
    every: int = 10  # evaluate every N epochs (and after the last), 0: never
    targets: list[str] = field(default_factory=list)  # datasets to evaluate; []: the sources
    metric: str = "auto"  # auto: the distance the model is meant for
    normalize: bool = False
    protocol: str = "auto"  # auto: the training dataset's protocol
    flip: bool = False
    sample: str = "all"  # video: a tracklet's feature pools all its frames, or data.seq_len evenly


@dataclass
class AdaptConfig:
    """Clustering-based adaptation to an unlabelled target (docs/adaptation.md): each
    epoch, DBSCAN pseudo-labels of the training images' features and a cluster memory in
    place of the classifier (Cluster Contrast's settings by default)."""

    enabled: bool = False  # data.dataset's identities are ignored (kept only to score)
    eps: float = 0.6  # DBSCAN's radius on Jaccard distances
    min_samples: int = 4
    k1: int = 30
    k2: int = 6
    variant: str = "cluster-contrast"  # the Jaccard encoding: cluster-contrast or zhong
    # cluster features less their camera's mean (camera-aware methods' intra-camera
    # normalisation): off in Cluster Contrast
    camera_centre: bool = False
    temperature: float = 0.05
    momentum: float = 0.1  # a centroid keeps this share at each update


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _keys(obj: Any, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            keys += _keys(value, f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


RENAMED = {"model.weights": "model.pretrained"}  # key: its new name


def _unknown(key: str, config: Config) -> UsageError:
    if key in RENAMED:
        return UsageError(
            f"config key '{key}' is now '{RENAMED[key]}'",
            hint="model.pretrained takes imagenet, none or a weights file",
        )
    close = difflib.get_close_matches(key, _keys(config), n=1, cutoff=0.6)
    suggestion = f"; did you mean '{close[0]}'?" if close else ""
    return UsageError(
        f"unknown config key '{key}'{suggestion}",
        hint="reidkit train --print-config shows every key",
    )


def _convert(key: str, text: Any, kind: Any) -> Any:
    """``text`` (a string from the command line, or a YAML value) as the field's type."""
    import yaml

    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        if text is None or (isinstance(text, str) and text.lower() in ("none", "null", "")):
            return None
        return _convert(key, text, options[0])
    value = yaml.safe_load(text) if isinstance(text, str) and kind is not str else text
    try:
        if kind is bool:
            if not isinstance(value, bool):
                raise ValueError
            return value
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError
            return value
        if kind is float:
            if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
                return float(value)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError
            return float(value)
        if kind is str:
            return str(value)
        if origin is list:
            (item,) = typing.get_args(kind)
            if isinstance(value, (int, float, str)) and not isinstance(value, bool):
                value = [value]  # one item without brackets
            if not isinstance(value, list):
                raise ValueError
            return [_convert(key, v, item) for v in value]
    except (ValueError, TypeError):
        pass
    name = getattr(kind, "__name__", str(kind))
    raise UsageError(f"config key '{key}' expects {name}, got {text!r}")


def set_value(config: Config, key: str, text: Any) -> None:
    """Set dotted ``key`` of ``config`` from ``text``, parsed by the field's type."""
    parts = key.split(".")
    target: Any = config
    for part in parts[:-1]:
        if not hasattr(target, part) or not dataclasses.is_dataclass(getattr(target, part)):
            raise _unknown(key, config)
        target = getattr(target, part)
    fields = {f.name: f for f in dataclasses.fields(target)}
    if parts[-1] not in fields or dataclasses.is_dataclass(getattr(target, parts[-1])):
        raise _unknown(key, config)
    hints = typing.get_type_hints(type(target))
    setattr(target, parts[-1], _convert(key, text, hints[parts[-1]]))


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    """Apply ``key=value`` strings in order."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(
                f"override {item!r} is not of the form key=value", hint="for example optim.lr=3e-4"
            )
        set_value(config, key.strip(), value.strip())
    return config


def _merge(config: Config, data: dict[str, Any], prefix: str = "") -> None:
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            _merge(config, value, f"{dotted}.")
        else:
            set_value(config, dotted, value)


def changed_keys(config: Config, recorded: dict[str, Any]) -> list[str]:
    """The dotted keys whose value in ``config`` differs from the ``recorded`` config (a
    checkpoint's ``config``, as :meth:`Config.to_dict` wrote it), in the config's order."""
    known = {}
    for section, values in recorded.items():
        for name, value in (values or {}).items() if isinstance(values, dict) else ():
            known[f"{section}.{name}"] = value
    then = Config()
    for key, value in list(known.items()):
        try:
            set_value(then, key, value)
        except UsageError:  # a key an older reidkit wrote: nothing to compare it with
            known.pop(key)
    return [k for k in _keys(config) if k in known and value_of(config, k) != value_of(then, k)]


def load_config(
    path: str | os.PathLike[str] | None = None, overrides: list[str] | None = None
) -> Config:
    """Defaults, then the YAML file (if any), then the overrides.

    Raises:
        MissingInputError: the file does not exist.
        UsageError: malformed YAML, unknown keys, values of the wrong type or out of range.
    """
    import yaml

    from reidkit.errors import MissingInputError

    config = Config()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise MissingInputError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark else ""
            raise UsageError(
                f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})"
            ) from None
        if not isinstance(data, dict):
            raise UsageError(f"{path}: expected a mapping of config sections")
        _merge(config, data)
    return check_config(apply_overrides(config, overrides or []))


def dump_config(config: Config, comment: str | None = None) -> str:
    """The config as YAML text (the form ``load_config`` reads back), after a comment."""
    import yaml

    text = yaml.safe_dump(config.to_dict(), sort_keys=False)
    return f"# {comment}\n{text}" if comment else text
