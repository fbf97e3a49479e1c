"""``reidkit models import``: a weights file from elsewhere (fast-reid's, torchreid's, a
state dict) written as a reidkit checkpoint, whose model card says everything the later
stages need: the model and its options, the identities of its classifier, the input
size, the resize, the pixel mean and std, the distance and the file it came from. A cron
pipeline, ``extract``, ``export`` and ``extract --onnx`` then use it as any checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from reidkit.errors import UsageError

log = logging.getLogger(__name__)


def import_weights(
    weights: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    model_name: str | None = None,
    config: str | os.PathLike[str] | None = None,
    model_options: dict[str, Any] | None = None,
    height: int | None = None,
    width: int | None = None,
    allow_partial: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """Build the model ``weights`` hold (as ``extract --weights`` builds it:
    :func:`reidkit.features.source.load_model_source`) and write it to ``out`` as a
    checkpoint; returns what was written.

    Raises:
        UsageError: ``out`` exists (without ``force``) or is ``weights``; or as the load.
        DataError: as the load does; OSError-based errors naming ``out``.
    """
    from reidkit.config import MODEL_OPTIONS, Config
    from reidkit.features.source import load_model_source
    from reidkit.fileio import file_sha256
    from reidkit.models.checkpoint import DEFAULT_DATA, model_spec, save_checkpoint
    from reidkit.models.factory import run_model_kwargs
    from reidkit.models.weights import classifier_rows

    out = Path(out)
    if out.exists() and not force:
        raise UsageError(f"{out} exists", hint="--force replaces it")
    if out.exists() and out.resolve() == Path(weights).resolve():
        raise UsageError(f"--out {out} is the weights file itself: give another path")
    source = load_model_source(
        None, model_name, weights=weights, height=height, width=width,
        model_options=model_options, allow_partial=allow_partial, config=config,
    )  # fmt: skip
    model, name = source.model, source.attrs["model"]
    built = json.loads(source.attrs["model_options"])  # the options it was built with
    options = {k: v for k, v in built.items() if k in MODEL_OPTIONS}
    run = Config()
    run.model.name, run.model.pretrained = name, str(weights)
    run.data.dataset = run.data.root = ""  # trained elsewhere, on data it does not say
    for key, value in options.items():
        setattr(run.model, key, value)
    for key in DEFAULT_DATA:  # the images' part of the card
        setattr(run.data, key, source.data.get(key, getattr(run.data, key)))
    if options.get("classifier") == "cosine":  # the margin loss the file was trained with
        run.loss.id_loss = (source.fastreid or {}).get("id_loss", "circle")
    rows = classifier_rows(model.state_dict(), model) or 1  # as the file's, when it has one
    spec = model_spec(name, model, rows, **run_model_kwargs(run))
    origin = {"file": str(Path(weights).resolve()), "sha256": file_sha256(weights)}
    save_checkpoint(out, model, spec, config=run.to_dict(), imported_from=origin)
    log.info("wrote %s: %s, %d identities, from %s", out, name, rows, weights)
    return {
        "file": str(out),
        "model": name,
        "model_options": options,
        "num_classes": rows,
        "feature_dim": int(model.feature_dim),
        "data": {k: source.data[k] for k in DEFAULT_DATA if k in source.data},
        "distance": source.attrs["distance"],
        "weights": source.weights_report,
        "imported_from": origin,
    }
