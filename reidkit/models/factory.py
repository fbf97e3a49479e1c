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


def run_model_kwargs(config) -> dict[str, Any]:
    """What builds a run's model (a :class:`reidkit.config.Config`): its options, and the
    input size of a model built for one size."""
    m = config.model
    kwargs = model_options(m.name, m.given_options())
    if model_cfg(m.name).sized:
        kwargs["image_size"] = [config.data.height, config.data.width]
    return kwargs
