"""What each model declares about itself, and the registry that holds the declarations.

A model is a builder function registered with its :class:`ModelCfg` (as timm's
``pretrained_cfg``): input size, normalisation, feature dimension, the options it accepts,
the distance its embeddings are meant for, the layers that are new for pretrained weights,
and where its ImageNet weights come from. Every stage reads the declaration instead of
guessing, and an option a model does not declare is a usage error.

This module imports nothing heavy: builders import torch when they are called, so
``reidkit --help`` and shell completion stay fast.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reidkit.errors import UsageError
from reidkit.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# what to do without a model's ImageNet weights
OFFLINE_HINT = "--pretrained none trains from scratch; --pretrained FILE starts from a local file"
# the modules whose builders register themselves; imported on the first lookup
BUILTIN_MODULES = ("reidkit.models.zoo", "reidkit.models.timm_trunk")
TIMM_PREFIX = "timm/"


@dataclass(frozen=True)
class Pretrained:
    """Where a model's ImageNet weights come from.

    ``source`` names the library whose cache holds them: "torchvision" and "ibn-net"
    (TORCH_HOME/hub/checkpoints, torch.hub's, downloaded on first use), "torchreid"
    (TORCH_HOME/checkpoints/``filename``, torchreid's own place; torchreid fetches them
    from Google Drive, which reidkit does not, so the file is placed there by hand) or
    "timm" (the Hugging Face cache, ``tag`` being the hub repository).
    """

    source: str
    url: str
    filename: str = ""
    tag: str = ""  # torchvision: the weights enum entry; timm: the hub repository


@dataclass(frozen=True)
class ModelCfg:
    """What a model is and supports.

    Attributes:
        description: one line for ``models list``.
        feature_dim: size of the embedding.
        input_size: (height, width) the model is meant for.
        mean, std: input normalisation of its pretrained weights.
        options: the options it accepts, with their defaults ({"bnneck": True, ...}).
        distance: what its embeddings are compared with ("cosine" means L2-normalised).
        head: module names that are new for pretrained weights (the classifier, a BNNeck):
            weights may leave them unloaded; everything else is the trunk.
        pretrained: its ImageNet weights, None when there are none.
        sized: built for one input size (a ViT's position embeddings): its builder takes
            ``image_size=(height, width)``.
        cpu_channels_last: inference on the CPU runs in the channels_last memory format
            by default: faster for every convolutional family measured; ConvNeXt and ViT
            showed no consistent difference and stay contiguous (docs/benchmarks.md).
    """

    description: str
    feature_dim: int
    input_size: tuple[int, int] = (256, 128)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    options: Mapping[str, Any] = field(default_factory=dict)
    distance: str = "euclidean"
    head: tuple[str, ...] = ("classifier",)
    pretrained: Pretrained | None = None
    sized: bool = False
    cpu_channels_last: bool = True

    def check_options(self, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """The model's option defaults updated with ``options``.

        Raises:
            UsageError: an option the model does not have (None values are "not set").
        """
        given = {k: v for k, v in options.items() if v is not None}
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            has = ", ".join(sorted(self.options)) or "none"
            raise UsageError(
                f"model {name} has no option {', '.join(unknown)} (its options: {has})",
                hint=f"remove model.{unknown[0]} from the config or choose another model",
            )
        return {**self.options, **given}

    def distance_for(self, options: Mapping[str, Any]) -> str:
        """The distance for a model built with ``options``: without its BNNeck, a model's
        features are compared by euclidean distance, as torchreid compares them."""
        if "bnneck" in self.options and options.get("bnneck") is False:
            return "euclidean"
        return self.distance

    def to_dict(self) -> dict[str, Any]:
        """Plain values for ``models list --json``."""
        return {
            "feature_dim": self.feature_dim,
            "input_size": list(self.input_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "options": dict(self.options),
            "distance": self.distance,
            "normalized": self.distance == "cosine",
            "head": list(self.head),
            "pretrained": self.pretrained.source if self.pretrained else None,
        }


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its name, its declaration and the function that builds it."""

    name: str
    cfg: ModelCfg
    builder: Callable[..., Any]


class ModelRegistry(Registry[ModelEntry]):
    """The registry of models; a name under a prefix with a resolver (``timm/<name>``:
    any timm model, :mod:`reidkit.models.timm_trunk`) is made on demand."""

    def __init__(self) -> None:
        super().__init__("model")
        self._loaded = False
        self._loading = threading.RLock()
        self.resolvers: dict[str, Callable[[str], ModelEntry]] = {}  # prefix -> entry maker

    def _load(self) -> None:
        """Import the built-in models' modules, once. Loaded is said only when they are: a
        thread that asks while another one imports them waits for all of them (it used to
        see a registry without OSNet; the reentrant lock lets the importing thread look
        itself up)."""
        if self._loaded:
            return
        with self._loading:
            if not self._loaded:
                for module in BUILTIN_MODULES:
                    importlib.import_module(module)
                self._loaded = True

    def get(self, name: str) -> ModelEntry:
        self._load()
        if name not in self._entries:
            for prefix, resolve in self.resolvers.items():
                if name.startswith(prefix):
                    return resolve(name)
        return super().get(name)

    def names(self, pattern: str | None = None) -> list[str]:
        self._load()
        return super().names(pattern)

    def __contains__(self, name: object) -> bool:
        self._load()
        return super().__contains__(name)


MODELS = ModelRegistry()


def register_model(name: str, cfg: ModelCfg) -> Callable[[Callable], Callable]:
    """Register the decorated builder ``fn(num_classes, **options) -> nn.Module``."""

    def decorate(fn: Callable) -> Callable:
        MODELS.add(name, ModelEntry(name, cfg, fn))
        return fn

    return decorate
