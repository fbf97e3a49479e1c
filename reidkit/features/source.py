"""The model an extraction or an export starts from: a reidkit checkpoint, or a registered
model with random weights (seeded) or with a weights file that must load whole, or a
fast-reid checkpoint alone (the model it holds is read from its names, with its
``config.yaml`` when there is one: :mod:`reidkit.models.fastreid`)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from reidkit.errors import UsageError

log = logging.getLogger(__name__)


@dataclass
class ModelSource:
    """A built model (eval mode) and what is known about it.

    Attributes:
        model: the network.
        attrs: provenance for output files: model, model_options (JSON), distance,
            checkpoint_sha256, and checkpoint + config or seed.
        data: height, width, mean, std it was trained with (or the model declares).
        weights_report: what ``--weights`` loaded, or None.
        checkpoint: the checkpoint dict, when the model came from one.
        fastreid: what a fast-reid file holds (:func:`reidkit.models.fastreid.describe`,
            with its config's settings), when the weights are one.
    """

    model: Any
    attrs: dict[str, Any]
    data: dict[str, Any]
    weights_report: dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None
    fastreid: dict[str, Any] | None = None


def load_model_source(
    checkpoint: str | os.PathLike[str] | None = None,
    model_name: str | None = None,
    *,
    weights: str | os.PathLike[str] | None = None,
    seed: int | None = None,
    height: int | None = None,
    width: int | None = None,
    model_options: dict[str, Any] | None = None,
    allow_partial: bool = False,
    config: str | os.PathLike[str] | None = None,
) -> ModelSource:
    """Build the model from a checkpoint, from ``model_name``, or from a fast-reid file
    given as ``weights`` alone (see the module's text). ``config`` is a fast-reid file's
    ``config.yaml`` (default: the one beside it, if any).

    Raises:
        UsageError: neither or both of checkpoint and model_name (or a fast-reid file),
            model options given with a checkpoint (which says how its model is built), or
            ``config`` without a fast-reid file.
    """
    import torch

    from reidkit.fileio import file_sha256
    from reidkit.models import create_model, load_weights, model_cfg, model_distance
    from reidkit.models import model_options as options_with_defaults  # a parameter's name
    from reidkit.models.checkpoint import FORMAT as CHECKPOINT_FORMAT
    from reidkit.models.checkpoint import data_config, load_checkpoint, model_from_checkpoint
    from reidkit.models.weights import classifier_rows, count_by_module, read_weights, summary

    if checkpoint is not None and model_name is not None:
        raise UsageError("give either a CHECKPOINT or --model NAME, not both")
    if checkpoint is None and model_name is None and weights is None:
        raise UsageError("give a CHECKPOINT, --model NAME, or --weights with a fast-reid file")
    given_options = {k: v for k, v in (model_options or {}).items() if v is not None}
    if checkpoint is not None and given_options:
        raise UsageError(
            f"--{next(iter(given_options)).replace('_', '-')} is for --model: a checkpoint "
            "says how its model is built"
        )
    if checkpoint is not None:
        for option, given in (
            ("--weights", weights is not None),
            ("--seed", seed is not None),
            ("--allow-partial", allow_partial),
            ("--config", config is not None),
        ):
            if given:
                raise UsageError(
                    f"{option} is for --model: a checkpoint has its own weights",
                    hint="leave it out, or use --model NAME instead of the checkpoint",
                )
    weights_report, ckpt, described = None, None, None
    if checkpoint is not None:
        ckpt = load_checkpoint(checkpoint)
        model = model_from_checkpoint(ckpt)
        attrs = {
            "model": ckpt["model"]["name"],
            "checkpoint": str(checkpoint),
            "checkpoint_sha256": file_sha256(checkpoint),
            "config": ckpt.get("config"),
        }
        built_with = ckpt["model"].get("kwargs", {})
        data = data_config(ckpt)
    else:
        state, extra = read_weights(weights) if weights is not None else (None, {})
        described = _fastreid_model(weights, extra, config, model_name)
        if described is not None:
            model_name = model_name or described["model"]
            if model_name == described["model"]:  # the file's options, under the given ones
                given_options = {**described["options"], **given_options}
        cfg = model_cfg(model_name)
        data = {"height": cfg.input_size[0], "width": cfg.input_size[1]}
        data |= {"mean": cfg.mean, "std": cfg.std}
        if described is not None:
            data = dict(described["data"])
        if state is not None and extra.get("format") == CHECKPOINT_FORMAT:
            # a reidkit checkpoint's weights came with the images they were trained on
            data = data_config(extra)
            log.info(
                "%s is a reidkit checkpoint: its data settings apply (%dx%d, mean %s, "
                "std %s)", weights, data["height"], data["width"], data["mean"], data["std"],
            )  # fmt: skip
        size = (height or data["height"], width or data["width"])
        data |= {"height": size[0], "width": size[1]}
        seed = 0 if seed is None else seed
        rows = None
        if state is not None:  # the file's classifier loads with the rest: its identities
            with torch.device("meta"):  # names and shapes only, no weights drawn
                probe = create_model(model_name, num_classes=1, image_size=size, **given_options)
            rows = classifier_rows(state, probe)
        torch.manual_seed(seed)
        model = create_model(model_name, num_classes=rows or 1, image_size=size, **given_options)
        model.eval()
        model.check_input(*size)  # before any image is read, or the exporter traces it
        built_with = options_with_defaults(model_name, given_options)
        if state is not None:
            # features are the whole model's: only the classifier may stay as initialised
            report = load_weights(
                model, state, source=str(weights), extra=extra, allow_partial=allow_partial
            )
            weights_report = {
                **summary(report),
                "missing_by_module": count_by_module(report["missing"]),
                "skipped_keys": report["skipped"],
                "missing_keys": report["missing"],
            }
            log.info(
                "loaded %d tensors from %s (%d of its tensors skipped, %d of the model's "
                "left as initialised: %s)",
                weights_report["used"],
                weights,
                weights_report["skipped"],
                weights_report["missing"],
                weights_report["missing_by_module"] or "none",
            )
        attrs = {
            "model": model_name,
            "seed": seed,
            "checkpoint_sha256": file_sha256(weights) if weights else "",
        }
    options_built = {k: v for k, v in built_with.items() if k != "image_size"}
    attrs["model_options"] = json.dumps(options_built, sort_keys=True)
    attrs["distance"] = model_distance(attrs["model"], options_built)
    return ModelSource(model.eval(), attrs, data, weights_report, ckpt, described)


def _fastreid_model(weights, extra: dict[str, Any], config, model_name: str | None):
    """What a fast-reid weights file holds, with its config's settings (``config``, or the
    ``config.yaml`` beside the file); None for other files.

    Raises:
        UsageError: no ``model_name`` for a file that is not fast-reid's, or a ``config``
            for one.
    """
    from reidkit.models.fastreid import config_beside, read_config

    described = extra.get("fastreid")
    if described is None:
        if config is not None:
            raise UsageError(
                f"--config {config} is a fast-reid config.yaml, for a fast-reid weights file; "
                f"{weights or 'no --weights'} is not one"
            )
        if model_name is None:
            raise UsageError(
                f"--weights {weights}: not a fast-reid file, so its model is not known",
                hint="give --model NAME (see 'reidkit models list')",
            )
        return None
    config = config or config_beside(weights)
    if config is not None:
        described = read_config(config, described)
        log.info("%s: settings from fast-reid's config %s", weights, config)
    return described
