"""timm models as re-ID trunks: ``timm/<name>`` under reidkit's head.

Any model timm can build is a trunk (``num_classes=0``: timm's own pooling, or the class
token of a ViT), followed by reidkit's head: a BNNeck and a classifier, as the ResNets
have. Models whose input size is fixed at build time (ViT, Swin, ...) are built at the
re-ID size, 256x128 by default; timm resizes their position embeddings when it loads
ImageNet weights made at 224x224. ImageNet weights come from timm's Hugging Face cache.

Three models are declared here (and tested); any other ``timm/<name>`` is declared from
timm's own configuration when it is first asked for.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from reidkit.errors import UnknownNameError, UsageError
from reidkit.models.spec import (
    MODELS,
    OFFLINE_HINT,
    TIMM_PREFIX,
    ModelCfg,
    ModelEntry,
    Pretrained,
    register_model,
)

TIMM_OPTIONS = {"bnneck": True, "classifier": "linear"}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm looks for on the hub


def _cfg(
    description: str, feature_dim: int, hub: str, mean=None, std=None, channels_last=False
) -> ModelCfg:
    """A timm trunk's declaration; channels_last on the CPU only for a family measured
    faster with it (ResNet-D: 1.35x folded; ConvNeXt and ViT showed no consistent
    difference)."""
    extra = {"mean": tuple(mean), "std": tuple(std)} if mean else {}
    return ModelCfg(
        description,
        feature_dim=feature_dim,
        options=TIMM_OPTIONS,
        distance="cosine",
        head=("bnneck", "classifier"),
        pretrained=Pretrained("timm", f"https://huggingface.co/{hub}", tag=hub),
        sized=True,
        cpu_channels_last=channels_last,
        **extra,
    )


def build(name: str, num_classes: int, image_size=(256, 128), **options):
    """Build ``timm/<name>``'s network (random initialisation) for ``image_size`` inputs."""
    from reidkit.models.timm_net import TimmReID

    return TimmReID(name, num_classes, image_size=tuple(image_size), **options)


@register_model(
    "timm/resnet50d",
    _cfg(
        "timm ResNet-50-D trunk, BNNeck head", 2048, "timm/resnet50d.ra2_in1k", channels_last=True
    ),
)
def timm_resnet50d(num_classes: int, **options):
    return build("resnet50d", num_classes, **options)


@register_model(
    "timm/convnext_tiny",
    _cfg("timm ConvNeXt-T trunk, BNNeck head", 768, "timm/convnext_tiny.in12k_ft_in1k"),
)
def timm_convnext_tiny(num_classes: int, **options):
    return build("convnext_tiny", num_classes, **options)


@register_model(
    "timm/vit_small_patch16_224",
    _cfg(
        "timm ViT-S/16 trunk at 256x128, BNNeck head",
        384,
        "timm/vit_small_patch16_224.augreg_in21k_ft_in1k",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    ),
)
def timm_vit_small_patch16_224(num_classes: int, **options):
    return build("vit_small_patch16_224", num_classes, **options)


def timm_entry(name: str) -> ModelEntry:
    """The entry of ``timm/<name>`` for a timm model not declared above.

    Raises:
        UnknownNameError: timm has no such model.
    """
    import timm
    import torch

    arch = name.removeprefix(TIMM_PREFIX)
    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch.split('_')[0]}*")[:3]
        raise UnknownNameError(
            f"unknown model '{name}': timm has no model '{arch}'",
            hint=f"timm models like it: {', '.join(close)}" if close else "timm.list_models()",
        )
    pretrained = timm.models.get_pretrained_cfg(arch)
    with torch.device("meta"):
        feature_dim = build(arch, 1).feature_dim
    hub = getattr(pretrained, "hf_hub_id", None) if pretrained else None
    cfg = _cfg(
        f"timm {arch} trunk, BNNeck head",
        feature_dim,
        hub or "",
        mean=getattr(pretrained, "mean", None),
        std=getattr(pretrained, "std", None),
    )
    if not hub:
        cfg = dataclasses.replace(cfg, pretrained=None)

    def builder(num_classes: int, **options):
        return build(arch, num_classes, **options)

    return ModelEntry(name, cfg, builder)


MODELS.resolvers[TIMM_PREFIX] = timm_entry  # "timm/<any timm model>"


def cached_timm_file(hub: str) -> str | None:
    """The cached weights file of hub repository ``hub`` (``repo[@revision]``), or None."""
    from huggingface_hub import try_to_load_from_cache

    repo, _, revision = hub.partition("@")
    files = (try_to_load_from_cache(repo, f, revision=revision or None) for f in WEIGHT_FILES)
    return next((f for f in files if isinstance(f, str)), None)


def is_timm_cached(hub: str) -> bool:
    """Whether the Hugging Face cache holds the weights of hub repository ``hub``."""
    return cached_timm_file(hub) is not None


def timm_imagenet_state(model) -> tuple[dict[str, Any], Path]:
    """The ImageNet weights of a :class:`TimmReID` trunk, in the model's names, as timm
    loads them (position embeddings resized to the model's input size), and their file.

    Raises:
        UsageError: neither cached nor downloadable.
    """
    import timm

    hub = model.trunk.pretrained_cfg.get("hf_hub_id")
    cached = cached_timm_file(hub)
    # a cached file is loaded as a file: no network round trip, no retries when offline
    overlay = {"pretrained_cfg_overlay": {"file": cached}} if cached else {}
    try:
        source = timm.create_model(model.arch, pretrained=True, **model.timm_kwargs, **overlay)
    except Exception as exc:  # huggingface_hub and timm raise many kinds when offline
        from huggingface_hub.constants import HF_HUB_CACHE

        raise UsageError(
            f"no ImageNet weights for timm/{model.arch}: {hub} is not in the Hugging Face "
            f"cache ({HF_HUB_CACHE}) and could not be downloaded "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
            hint=OFFLINE_HINT,
        ) from None
    if cached is None:  # downloaded just now
        cached = cached_timm_file(hub) or hub
    return {f"trunk.{k}": v for k, v in source.state_dict().items()}, Path(cached)
