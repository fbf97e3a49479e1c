"""What a configuration may hold, checked before a run writes anything: the choices and
bounds of its values, the combinations a run cannot honour (with adaptation, the video
frame budget, the schedule's parts), and what the model fills in where the user left a
value to it (:func:`check_config`; :func:`reidkit.config.load_config` calls it).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from reidkit.errors import UsageError

if TYPE_CHECKING:
    from reidkit.config import Config, DataConfig

CHOICES = {
    "data.sampler": ("pk", "pk_cameras", "random"),
    "data.interpolation": ("bilinear", "bicubic"),
    "data.sample": ("evenly", "random", "all"),
    "model.temporal": ("avg", "max"),
    "eval.sample": ("all", "evenly"),
    "loss.id_loss": ("ce", "cosface", "circle"),
    "loss.triplet_mining": ("hard", "weighted"),
    "optim.name": ("adam", "amsgrad", "sgd"),
    "schedule.name": ("step", "multistep", "cosine"),
    "train.amp": ("off", "bf16", "fp16"),
    "eval.metric": ("auto", "euclidean", "sqeuclidean", "cosine"),
    "eval.protocol": ("auto", "market", "cuhk03", "none"),
    "adapt.variant": ("cluster-contrast", "zhong"),
}
PATH_KEYS = ("data.root", "data.dataset", "model.pretrained")  # values that may be paths
# key: (smallest allowed value, largest or None)
BOUNDS = {
    "data.height": (1, None),
    "data.width": (1, None),
    "data.batch_size": (1, None),
    "data.num_instances": (1, None),
    "data.workers": (-1, None),
    "data.flip": (0.0, 1.0),
    "data.pad": (0, None),
    "data.erasing": (0.0, 1.0),
    "data.color_jitter": (0.0, None),
    "data.autoaugment": (0.0, 1.0),
    "data.val_ids": (0, None),
    "data.seq_len": (1, None),
    "data.max_frames": (1, None),
    "loss.softmax": (0.0, None),
    "loss.label_smoothing": (0.0, 0.999),
    "loss.triplet": (0.0, None),
    "loss.margin": (0.0, None),
    "loss.center": (0.0, None),
    "loss.triplet_warmup": (0, None),
    "loss.center_lr": (1e-12, None),
    "optim.lr": (1e-12, None),
    "optim.weight_decay": (0.0, None),
    "optim.momentum": (0.0, 1.0),
    "optim.base_lr_mult": (0.0, None),
    "optim.grad_clip": (0.0, None),
    "schedule.warmup_epochs": (0, None),
    "schedule.warmup_factor": (0.0, 1.0),
    "schedule.warmup_iters": (0, None),
    "schedule.delay_epochs": (0, None),
    "schedule.step_size": (1, None),
    "schedule.gamma": (0.0, None),
    "schedule.min_lr": (0.0, None),
    "train.epochs": (1, None),
    "train.freeze_base_epochs": (0, None),
    "train.freeze_base_iters": (0, None),
    "train.iters_per_epoch": (0, None),
    "train.save_every": (0, None),
    "eval.every": (0, None),
    "adapt.eps": (1e-6, 0.999999),
    "adapt.min_samples": (1, None),
    "adapt.k1": (1, None),
    "adapt.k2": (1, None),
    "adapt.temperature": (1e-6, None),
    "adapt.momentum": (0.0, 1.0),
}


def value_of(config: Config, key: str) -> Any:
    """The value of a dotted key (``section.name``)."""
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


def check_config(config: Config) -> Config:
    """Check values a type cannot: ranges, known names, batch size vs instances.

    Called by :func:`reidkit.config.load_config` and before a run starts, so a bad value
    fails at once (exit 2) instead of after an epoch, and leaves no run directory behind.

    Raises:
        UsageError: naming the key, its value and what is allowed.
    """
    for key, allowed in CHOICES.items():
        value = value_of(config, key)
        if value not in allowed:
            raise UsageError(
                f"{key}: unknown value {value!r}", hint=f"one of: {', '.join(allowed)}"
            )
    for key, (low, high) in BOUNDS.items():
        value = value_of(config, key)
        if value is None:  # "as the model or the recipe decides", filled in below
            continue
        if value < low or (high is not None and value > high):
            wanted = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise UsageError(f"{key} must be {wanted}, got {value}")
    d = config.data
    if d.sampler != "random" and (d.batch_size < d.num_instances or d.batch_size % d.num_instances):
        raise UsageError(
            f"data.batch_size ({d.batch_size}) must be a multiple of data.num_instances "
            f"({d.num_instances}) with the {d.sampler} sampler"
        )
    _check_frame_budget(d)
    _check_schedule(config)
    _adapt_defaults(config)
    _resolve_model(config)
    loss = config.loss
    if loss.triplet_warmup is None:  # cross-entropy shapes a new embedding first, if any
        scratch = config.model.pretrained == "none"
        loss.triplet_warmup = config.schedule.warmup_epochs if scratch and loss.softmax else 0
    if loss.triplet_warmup and not loss.softmax and not loss.center:
        raise UsageError(
            f"loss.triplet_warmup={loss.triplet_warmup} with loss.softmax=0: the triplet term "
            "is the only loss, and would start at weight 0 (nothing to train)",
            hint="loss.triplet_warmup=0",
        )
    if len(d.mean) != 3 or len(d.std) != 3 or min(d.std) <= 0:
        raise UsageError("data.mean and data.std need three values each, std above 0")
    _check_adapt(config)
    for key in PATH_KEYS:  # a shell expands ~ on the command line, not in a config value
        section, name = key.split(".")
        value = value_of(config, key)
        if isinstance(value, str) and value.startswith("~"):
            setattr(getattr(config, section), name, os.path.expanduser(value))
    return config


def _adapt_defaults(config: Config) -> None:
    """Adaptation's metric features, where the user left them to the model: after the
    BNNeck, the features the cluster memory holds."""
    from reidkit.models import model_cfg

    m = config.model
    unset = m.neck_feat is None and "neck_feat" in model_cfg(m.name).options
    if config.adapt.enabled and unset and m.bnneck is not False:  # without: one feature
        m.neck_feat = "after"


def _check_adapt(config: Config) -> None:
    """Settings adaptation cannot honour: the memory compares features after the BNNeck,
    and pseudo-identities change every epoch (no center per identity can follow them)."""
    if not config.adapt.enabled:
        return
    if config.loss.center:
        raise UsageError(
            f"loss.center={config.loss.center} with adapt.enabled: pseudo-identities change "
            "every epoch, and the center loss keeps one center per identity",
            hint="loss.center=0",
        )
    if config.model.neck_feat == "before":
        raise UsageError(
            "model.neck_feat=before with adapt.enabled: the cluster memory holds the "
            "features after the BNNeck, which the metric losses must see too",
            hint="model.neck_feat=after",
        )
    if config.loss.id_loss != "ce":
        raise UsageError(
            f"loss.id_loss={config.loss.id_loss} with adapt.enabled: the cluster memory's "
            "logits are already cosines over a temperature, for the plain cross-entropy",
            hint="loss.id_loss=ce",
        )
    if config.data.val_ids:
        raise UsageError(
            f"data.val_ids={config.data.val_ids} with adapt.enabled: holding out identities "
            "uses the target's identities, which adaptation never uses",
            hint="data.val_ids=0; the target's query and gallery evaluate the run",
        )
    if config.data.sampler == "random":
        raise UsageError(
            f"data.sampler={config.data.sampler} with adapt.enabled: adaptation draws PK "
            "batches over its clusters",
            hint="data.sampler=pk_cameras (Cluster Contrast's) or data.sampler=pk",
        )


def _check_schedule(config: Config) -> None:
    """One warmup (over epochs or over iterations), one freeze, and a delay only where it
    means something (the cosine schedule)."""
    s, t = config.schedule, config.train
    if s.warmup_iters and s.warmup_epochs:
        raise UsageError(
            f"schedule.warmup_iters={s.warmup_iters} and schedule.warmup_epochs="
            f"{s.warmup_epochs}: choose one warmup",
            hint="schedule.warmup_epochs=0 for fast-reid's warmup over iterations",
        )
    if t.freeze_base_iters and t.freeze_base_epochs:
        raise UsageError(
            f"train.freeze_base_iters={t.freeze_base_iters} and train.freeze_base_epochs="
            f"{t.freeze_base_epochs}: choose one",
        )
    if s.delay_epochs and s.name != "cosine":
        raise UsageError(
            f"schedule.delay_epochs is for the cosine schedule, not {s.name}",
            hint="milestones and step_size already say when a step schedule decays",
        )
    if s.delay_epochs and s.delay_epochs < s.warmup_epochs:
        raise UsageError(
            f"schedule.delay_epochs={s.delay_epochs} ends inside the warmup "
            f"(schedule.warmup_epochs={s.warmup_epochs}): it would delay nothing",
        )
    if s.delay_epochs and s.delay_epochs >= t.epochs:
        raise UsageError(
            f"schedule.delay_epochs={s.delay_epochs} leaves no epoch of the {t.epochs} "
            "(train.epochs) to decay in",
        )


MAX_FRAMES = 512  # data.max_frames with data.sample=all, unless set


def _check_frame_budget(d: DataConfig) -> None:
    """``data.max_frames`` budgets the frames of a ``data.sample=all`` batch (a batch of
    every frame of its tracklets has no bound otherwise); with another sample it would
    be ignored, so it is refused."""
    if d.sample != "all":
        if d.max_frames is not None:
            raise UsageError(
                f"data.max_frames={d.max_frames} budgets the frames of a data.sample=all "
                f"batch, and data.sample is {d.sample} (a batch holds data.batch_size x "
                "data.seq_len frames)",
                hint="remove data.max_frames, or use data.sample=all",
            )
        return
    if d.max_frames is None:
        d.max_frames = MAX_FRAMES
    if d.max_frames < d.batch_size:
        raise UsageError(
            f"data.max_frames={d.max_frames} is below data.batch_size={d.batch_size}: "
            "every clip of a batch needs at least one frame",
            hint=f"data.max_frames={d.batch_size} or more, or a smaller batch",
        )


def _resolve_model(config: Config) -> None:
    """Fill what the model declares (its option defaults, its normalisation) into the
    options left unset; an option the model does not have is a usage error."""
    from reidkit.models import model_cfg, model_options

    m, d = config.model, config.data
    cfg = model_cfg(m.name)
    loss = config.loss
    if loss.id_loss != "ce" and loss.softmax and "classifier" not in cfg.options:
        raise UsageError(
            f"loss.id_loss={loss.id_loss} needs a cosine classifier, and model {m.name} "
            "has no model.classifier option",
            hint="use loss.id_loss=ce, or a ResNet or timm model",
        )
    if loss.id_loss != "ce" and m.classifier is None:
        m.classifier = "cosine"  # what a margin loss needs
    options = model_options(m.name, m.given_options())
    for key in m.given_options():
        setattr(m, key, options.get(key))
    cosine = m.classifier == "cosine"
    if loss.softmax and cosine != (loss.id_loss != "ce"):
        raise UsageError(
            f"loss.id_loss={loss.id_loss} needs "
            + ("a cosine classifier" if not cosine else "a linear classifier")
            + f", but model.classifier is {m.classifier}",
            hint="model.classifier=cosine goes with loss.id_loss=cosface or circle",
        )
    d.mean = list(cfg.mean) if d.mean is None else d.mean
    d.std = list(cfg.std) if d.std is None else d.std
