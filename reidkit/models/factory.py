"""Building models by name, and what ``models list`` shows of them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reidkit.models.spec import MODELS, TIMM_PREFIX, ModelCfg


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, optionally filtered by a glob pattern ("osnet*")."""
    return MODELS.names(pattern)


def match_models(pattern: str | None = None) -> list[str]:
    """What ``models list PATTERN`` lists: the registered names matching the glob pattern, or
    the one model a plain name names (``timm/<name>`` included).

    Raises:
        UnknownNameError: nothing matches; the hint names models like it.
    """
    import difflib

    from reidkit.errors import UnknownNameError

    names = MODELS.names(pattern)
    if names or not pattern:
        return names
    if not any(c in pattern for c in "*?["):
        try:
            return [MODELS.get(pattern).name]
        except UnknownNameError:
            if pattern.startswith(TIMM_PREFIX):
                raise  # timm's own "models like it" is the better hint

    known = MODELS.names()
    plain = pattern.strip("*?").lower()
    close = [n for n in known if plain and plain in n] or difflib.get_close_matches(
        plain, known, n=3, cutoff=0.5
    )
    hint = f"models like it: {', '.join(close)}" if close else "reidkit models list shows all"
    raise UnknownNameError(
        f"no model matches {pattern!r}", hint=f"{hint} (a pattern like 'osnet*' lists a family)"
    )


def model_cfg(name: str) -> ModelCfg:
    """What model ``name`` declares (input size, normalisation, options, distance, ...)."""
    return MODELS.get(name).cfg


def model_options(name: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Model ``name``'s options: its defaults updated with ``options`` (None: not set).

    Raises:
        UsageError: an option the model does not have.
    """
    return model_cfg(name).check_options(name, options or {})


def model_distance(name: str, options: Mapping[str, Any] | None = None) -> str:
    """The distance model ``name``'s embeddings are meant to be compared with."""
    return model_cfg(name).distance_for(model_options(name, options))


def create_model(
    name: str, num_classes: int, *, image_size: tuple[int, int] | None = None, **options: Any
):
    """Build model ``name`` with ``num_classes`` outputs (random initialisation).

    Args:
        image_size: (height, width) for models built for one input size (its default:
            the model's declared input size); ignored by the others.
        options: the model's options (``bnneck``, ``last_stride``, ...); None means "the
            model's default".

    Raises:
        UnknownNameError: ``name`` is not registered (with a suggestion).
        UsageError: an option the model does not have.
    """
    entry = MODELS.get(name)
    kwargs = entry.cfg.check_options(name, options)
    if entry.cfg.sized:
        kwargs["image_size"] = tuple(image_size or entry.cfg.input_size)
    return entry.builder(num_classes, **kwargs)


def model_info(name: str, height: int = 256, width: int = 128) -> dict[str, Any]:
    """Parameters (without the classifier), feature dimension, GFLOPs of one image, the
    model's declaration and whether its ImageNet weights are cached.

    GFLOPs count both the multiply and the add of each multiply-accumulate (torch's flop
    counter); papers that quote "FLOPs" for re-ID models usually count multiply-adds, half
    of this.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from reidkit.models.pretrained import is_cached

    cfg = model_cfg(name)
    model = create_model(name, num_classes=1, image_size=(height, width)).eval()
    params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("classifier"))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, height, width))
    return {
        "name": name,
        "params": params,
        "gflops": round(counter.get_total_flops() / 1e9, 3),
        "description": cfg.description,
        **cfg.to_dict(),
        "feature_dim": model.feature_dim,
        "imagenet_cached": is_cached(cfg),
    }
