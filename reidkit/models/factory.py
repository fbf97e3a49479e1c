"""The model registry: names, construction, information and loading weights.

Registering a name imports nothing heavy, so ``reidkit --help`` and shell completion stay
fast; torch is imported when a model is built.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from reidkit.errors import DataError
from reidkit.registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: the class that builds it and the arguments that select it."""

    builder: str  # "module:Class"
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    distance: str = "euclidean"  # what its embeddings are meant to be compared with


MODELS: Registry[ModelEntry] = Registry("model")
for _depth in (18, 34, 50, 101, 152):
    MODELS.add(
        f"resnet{_depth}",
        ModelEntry(
            "reidkit.models.resnet:ReIDResNet",
            {"depth": _depth},
            f"ResNet-{_depth} with a BNNeck head, last stride 1",
            distance="cosine",  # BoT ranks the features after the BNNeck by cosine
        ),
    )
for _width, _suffix in ((1.0, "x1_0"), (0.75, "x0_75"), (0.5, "x0_5"), (0.25, "x0_25")):
    MODELS.add(
        f"osnet_{_suffix}",
        # torchreid evaluates OSNet with euclidean distances of unnormalised features
        ModelEntry("reidkit.models.osnet:OSNet", {"width": _width}, f"OSNet, width x{_width}"),
    )


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, optionally filtered by a glob pattern ("osnet*")."""
    return MODELS.names(pattern)


def model_distance(name: str) -> str:
    """The distance model ``name``'s embeddings are meant to be compared with."""
    return MODELS.get(name).distance


def model_class(name: str):
    """The class that builds model ``name`` (imported on demand)."""
    module, cls = MODELS.get(name).builder.split(":")
    return getattr(importlib.import_module(module), cls)


def create_model(name: str, num_classes: int, **kwargs: Any):
    """Build model ``name`` with ``num_classes`` outputs (random initialisation).

    Raises:
        UnknownNameError: ``name`` is not registered (with a suggestion).
    """
    return model_class(name)(num_classes=num_classes, **{**MODELS.get(name).kwargs, **kwargs})


def model_info(name: str, height: int = 256, width: int = 128) -> dict[str, Any]:
    """Parameters (without the classifier), feature dimension and GFLOPs of one image.

    GFLOPs count both the multiply and the add of each multiply-accumulate (torch's flop
    counter); papers that quote "FLOPs" for re-ID models usually count multiply-adds, half
    of this.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = create_model(name, num_classes=1).eval()
    params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("classifier"))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, height, width))
    return {
        "name": name,
        "params": params,
        "feature_dim": model.feature_dim,
        "gflops": round(counter.get_total_flops() / 1e9, 3),
        "description": MODELS.get(name).description,
    }


def read_state_dict(path: str | os.PathLike[str]) -> dict:
    """The tensors of a torchvision-style state dict or of a reidkit checkpoint.

    Raises:
        MissingInputError: no such file.
        DataError: not a file torch can load safely (weights_only), or no state dict in it.
    """
    import torch

    from reidkit.engine.checkpoint import load_torch_file

    obj = load_torch_file(path, "weights file", hint="initial weights come only from a local file")
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DataError(f"{path}: holds no state dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_weights(model, path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Load matching tensors from ``path`` into ``model`` (non-strict).

    Returns:
        {"used": keys loaded, "skipped": keys of the file not loaded (unknown to the model
        or of another shape), "missing": keys of the model left as they were}.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    used = [k for k, v in state.items() if k in own and own[k].shape == v.shape]
    model.load_state_dict({k: state[k] for k in used}, strict=False)
    if not used:
        raise DataError(
            f"{path}: none of its {len(state)} tensors fit this model",
            hint="is it the weights of another architecture?",
        )
    loaded = set(used)
    if len(used) < len(own) / 2:
        log.warning(
            "%s: only %d of the model's %d tensors were loaded from it", path, len(used), len(own)
        )
    return {
        "used": used,
        "skipped": [k for k in state if k not in loaded],
        "missing": [k for k in own if k not in loaded],
    }
