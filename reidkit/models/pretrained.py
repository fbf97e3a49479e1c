"""Starting weights for training: ``model.pretrained: imagenet | none | FILE``.

ImageNet weights come through the cache of the library that publishes them, so a machine
with internet downloads once and an offline machine uses what is cached:

- torchvision (ResNets): TORCH_HOME/hub/checkpoints/<file>, fetched from download.pytorch.org
  when absent, exactly as ``torchvision.models.resnet50(weights=...)`` would;
- IBN-Net (its ResNets): the same folder, fetched from IBN-Net's GitHub release when
  absent, as its own ``resnet50_ibn_a(pretrained=True)`` would (torch.hub's cache);
- torchreid (OSNet): TORCH_HOME/checkpoints/osnet_<width>_imagenet.pth, where torchreid
  keeps them; torchreid fetches them from Google Drive with gdown, which reidkit does not
  do, so the file is placed there by hand (or given as FILE);
- timm: the Hugging Face cache (HF_HOME), through timm's own loader.

A missing file is a usage error naming it and where it comes from, never a random start.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from reidkit.errors import UsageError
from reidkit.models.spec import MODELS, OFFLINE_HINT, ModelCfg

log = logging.getLogger(__name__)


def torch_home() -> Path:
    """torch's cache folder (TORCH_HOME, else XDG_CACHE_HOME/torch, else ~/.cache/torch)."""
    import torch

    return Path(torch.hub.get_dir()).parent


def cached_file(cfg: ModelCfg) -> Path | None:
    """Where a model's ImageNet weights are (or would be) cached; None if they are not files
    of torch's cache (timm's) or the model has none."""
    p = cfg.pretrained
    if p is None or p.source == "timm":
        return None
    folder = "checkpoints" if p.source == "torchreid" else "hub/checkpoints"
    return torch_home() / folder / p.filename


def is_cached(cfg: ModelCfg) -> bool | None:
    """Whether a model's ImageNet weights are on this machine (None: it has none)."""
    p = cfg.pretrained
    if p is None:
        return None
    if p.source == "timm":
        from reidkit.models.timm_trunk import is_timm_cached

        return is_timm_cached(p.tag)
    return cached_file(cfg).is_file()


def load_pretrained(
    model, name: str, pretrained: str, *, allow_partial: bool = False
) -> dict[str, Any] | None:
    """Initialise ``model`` (model ``name``, freshly built) from ``pretrained``.

    Returns:
        What was loaded: {"source", "file", "sha256", "used", "skipped", "missing"} (the
        last three are counts), or None for "none".

    Raises:
        UsageError: "imagenet" for a model without ImageNet weights, or weights neither
            cached nor downloadable (naming the file and its URL).
        DataError: a file that leaves trunk tensors unloaded (unless ``allow_partial``).
    """
    from reidkit.fileio import file_sha256
    from reidkit.models.weights import load_weights, summary

    if pretrained == "none":
        return None
    entry = MODELS.get(name)
    cfg = entry.cfg
    weights: Any
    if pretrained == "imagenet":
        if cfg.pretrained is None:
            raise UsageError(f"model {name} has no ImageNet weights", hint=OFFLINE_HINT)
        if cfg.pretrained.source == "timm":
            from reidkit.models.timm_trunk import timm_imagenet_state

            weights, path = timm_imagenet_state(model)
        else:
            weights = path = _fetch(name, cfg)
        source = cfg.pretrained.source
    else:
        weights = path = Path(os.path.expanduser(pretrained))
        source = "file"
    new = (*cfg.head, *model.option_layers) if pretrained == "imagenet" else cfg.head
    report = load_weights(
        model, weights, source=str(path), may_miss=new, allow_partial=allow_partial
    )
    record = {"source": source, "file": str(path), "sha256": file_sha256(path), **summary(report)}
    log.info(
        "initial weights: %s (%s), %d tensors loaded, %d of the file skipped, "
        "%d of the model left as initialised",
        path,
        source,
        record["used"],
        record["skipped"],
        record["missing"],
    )
    return record


def _fetch(name: str, cfg: ModelCfg) -> Path:
    """The cached file of a model's ImageNet weights, downloaded when absent and not
    torchreid's."""
    p = cfg.pretrained
    path = cached_file(cfg)
    if path.is_file():
        return path
    if p.source == "torchreid":
        raise UsageError(
            f"no ImageNet weights for {name}: torchreid's file {path} is not there "
            f"(torchreid downloads it from {p.url})",
            hint=f"put that file there; {OFFLINE_HINT}",
        )
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s to %s", p.url, path)
    try:
        # torch writes a temporary file beside it and renames it when complete
        torch.hub.download_url_to_file(p.url, str(path), progress=False)
    except Exception as exc:  # urllib raises URLError, HTTPError, OSError, timeouts
        raise UsageError(
            f"no ImageNet weights for {name}: {path} is not cached and {p.url} could not be "
            f"fetched ({_reason(exc)})",
            hint=OFFLINE_HINT,
        ) from None
    return path


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None) or exc
    return f"{type(exc).__name__}: {reason}".splitlines()[0]
