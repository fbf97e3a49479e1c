"""Loading weights into a model: one loader for training, extraction, export and the library.

Files read: reidkit checkpoints; plain state dicts in the model's own names; torchvision's
ResNet files (the model's names, plus ImageNet's ``fc``); timm state dicts for ``timm/*``
models (timm's names are the trunk's); torchreid's files (model-zoo state dicts,
``save_checkpoint`` dicts, Engine checkpoints with numpy scalars, OSNet names translated by
:mod:`reidkit.models.torchreid_keys`); fast-reid's ``{"model": ...}`` (its names translated
by :mod:`reidkit.models.fastreid`, which also says what model the file holds); DataParallel
``module.`` prefixes. Every foreign naming is translated here, once, so the same file gets
the same verdict in every stage.

A load that leaves any trunk tensor unloaded is an error unless it is allowed: features of a
half-initialised trunk look like features and are noise. The model's head (its classifier,
and a BNNeck when the weights are a starting point for training) may stay as initialised.
BatchNorm's ``num_batches_tracked`` counters are neither learned nor estimated: files
published before BatchNorm had them (torchvision's ImageNet ResNets) lack them, torch fills
them in on load, and they are left out of every count, as torch leaves them out.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from reidkit.errors import DataError, UsageError

log = logging.getLogger(__name__)

STATE_KEYS = ("state_dict", "model")  # reidkit and torchreid; fast-reid
COUNTERS = ("num_batches_tracked",)  # buffers that carry no learned or estimated value


def is_counter(key: str) -> bool:
    """Whether ``key`` names a buffer that counts rather than holds a weight."""
    return key.rsplit(".", 1)[-1] in COUNTERS


def read_weights(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The tensors of a weights file (containers unwrapped, ``module.`` prefixes removed,
    torchreid's OSNet names translated: the names that do not depend on the model), and the
    file's other entries (a reidkit checkpoint's format and config, an epoch...).

    Raises:
        MissingInputError: no such file.
        DataError: not a file torch can load safely (weights_only), or no state dict in it.
    """
    import torch

    from reidkit.fileio import load_torch_file

    obj = load_torch_file(path, "weights file", hint="initial weights come only from a local file")
    extra: dict[str, Any] = {}
    container = None  # the key the state dict was found under
    if isinstance(obj, dict):
        for key in STATE_KEYS:
            if isinstance(obj.get(key), dict):
                extra = {k: v for k, v in obj.items() if k != key}
                obj, container = obj[key], key
                break
    if (
        not isinstance(obj, dict)
        or not obj
        or not all(isinstance(v, torch.Tensor) for v in obj.values())
    ):
        raise DataError(f"{path}: holds no state dict (a mapping of names to tensors)")
    state = {k.removeprefix("module."): v for k, v in obj.items()}
    from reidkit.models import fastreid
    from reidkit.models.torchreid_keys import from_torchreid_osnet, is_torchreid_osnet

    if is_torchreid_osnet(state):
        state = from_torchreid_osnet(state)
    elif fastreid.is_fastreid(state, container):  # what it holds, its tensors in our names
        extra["fastreid"] = fastreid.describe(state, str(path))
        state = fastreid.translate(state, extra["fastreid"]["layout"])
    return state, extra


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The tensors of a weights file; see :func:`read_weights`."""
    return read_weights(path)[0]


def in_model_names(state: Mapping[str, Any], model) -> dict[str, Any]:
    """``state`` in ``model``'s names: a timm state dict (timm's own names, as timm and the
    Hugging Face hub save it) gets the ``trunk.`` prefix of a ``timm/*`` model; a model
    with a ``translate_state`` (MGN: a ResNet's names into its branches) translates it."""
    translate = getattr(model, "translate_state", None)
    if translate is not None:
        return dict(translate(dict(state)))
    if hasattr(model, "trunk") and not any(k.startswith("trunk.") for k in state):
        return {f"trunk.{k}": v for k, v in state.items()}
    return dict(state)


def load_weights(
    model,
    weights: str | os.PathLike[str] | Mapping[str, Any],
    *,
    source: str | None = None,
    extra: Mapping[str, Any] | None = None,
    may_miss: Iterable[str] | None = None,
    allow_partial: bool = False,
) -> dict[str, list[str]]:
    """Load a weights file (or a state dict read already) into ``model``: every tensor that
    fits, the whole trunk or an error.

    Args:
        weights: a file (any form the module's text lists) or a state dict.
        source: what the tensors came from, for messages (default: the file's name).
        extra: the file's other entries, when ``weights`` is a state dict read already
            (:func:`read_weights`), for the hints of a refusal.
        may_miss: module or tensor names that may stay as initialised (the head);
            by default the model's classifier (``classifier_names``: one weight per head
            for MGN).
        allow_partial: load what fits and only warn about the trunk tensors left out.

    Returns:
        {"used": keys loaded, "skipped": keys of the file not loaded (unknown to the model
        or of another shape), "missing": keys of the model left as they were}, counters
        left out.

    Raises:
        DataError: nothing fits, or trunk tensors are left unloaded without
            ``allow_partial``; the message counts them per module.
    """
    if isinstance(weights, Mapping):
        state, source, extra = dict(weights), source or "the weights", extra or {}
    else:
        (state, extra), source = read_weights(weights), source or str(weights)
    state = in_model_names(state, model)
    own = model.state_dict()
    fits = {k for k, v in state.items() if k in own and own[k].shape == v.shape}
    report = {
        "used": [k for k in state if k in fits and not is_counter(k)],
        "skipped": [k for k in state if k not in fits and not is_counter(k)],
        "missing": [k for k in own if k not in fits and not is_counter(k)],
    }
    if not report["used"]:
        raise DataError(
            f"{source}: none of its {sum(not is_counter(k) for k in state)} tensors fit this model",
            hint="are they the weights of another architecture?",
        )
    names = tuple(model.classifier_names if may_miss is None else may_miss)
    head = tuple(f"{name}." for name in names)
    if "fastreid" in extra:  # its model is known: a tensor it cannot take is a wrong model
        _refuse_unused(report["skipped"], model, source, extra["fastreid"])
    trunk_missing = [k for k in report["missing"] if not k.startswith(head) and k not in names]
    if trunk_missing:
        counted = sum(not is_counter(k) for k in own)
        message = (
            f"{source}: leaves {len(trunk_missing)} of the model's {counted} tensors "
            f"unloaded ({count_by_module(trunk_missing)})"
        )
        if not allow_partial:
            raise DataError(message, hint=_partial_hint(trunk_missing, state, extra))
        log.warning("%s; loaded anyway (--allow-partial)", message)
    # counters the file lacks keep the model's own, as torch's BatchNorm does on load
    model.load_state_dict({k: state[k] for k in fits}, strict=False)  # a refusal changes nothing
    return report


def classifier_rows(state: Mapping[str, Any], model) -> int | None:
    """The identities of a file's classifier, when the file has the classifier ``model``
    has (of the same width), so that a model built with as many loads it; else None."""
    own, state = model.state_dict(), in_model_names(state, model)
    rows = set()
    for name in model.classifier_names:
        key = name if name in own else f"{name}.weight"
        mine, theirs = own.get(key), state.get(key)
        if (
            mine is None
            or theirs is None
            or theirs.dim() != 2
            or theirs.shape[1:] != mine.shape[1:]
        ):
            return None
        rows.add(int(theirs.shape[0]))
    return rows.pop() if len(rows) == 1 else None


def _refuse_unused(skipped: list[str], model, source: str, described: Mapping[str, Any]) -> None:
    """A fast-reid file's tensors other than its classifier's must all be used."""
    names = tuple(model.classifier_names)
    unused = [k for k in skipped if not any(k == n or k.startswith(f"{n}.") for n in names)]
    if unused:
        options = " ".join(f"model.{k}={v}" for k, v in described["options"].items())
        raise UsageError(
            f"{source}: this model would leave {len(unused)} of the file's tensors unused "
            f"({count_by_module(unused)}); the file holds {described['model']} {options}",
            hint=f"leave --model out (the file says its model), or give {described['model']} "
            "with those options",
        )


def count_by_module(keys: Iterable[str]) -> str:
    """'conv2: 120, fc: 4': how many keys each top-level module has, largest first."""
    counts = Counter(key.split(".")[0] for key in keys)
    return ", ".join(f"{module}: {n}" for module, n in counts.most_common())


def _partial_hint(missing: list[str], state: Mapping[str, Any], extra: Mapping[str, Any]) -> str:
    from reidkit.models.checkpoint import FORMAT

    if all(k.startswith("bnneck.") for k in missing):
        if extra.get("format") == FORMAT:
            return (
                "the checkpoint's model has no BNNeck: give --no-bnneck (model.bnneck=false), "
                "or give the checkpoint itself as CHECKPOINT, which builds its model as trained"
            )
        if "classifier.bias" in state:  # torchreid trains without a BNNeck, biased classifier
            return (
                "they come from a model without a BNNeck: give --no-bnneck "
                "(model.bnneck=false), and --last-stride 2 for torchreid's resnet50"
            )
        return (
            "the file has no BNNeck (ImageNet weights, or a model trained without one): "
            "--no-bnneck (model.bnneck=false) takes the trunk's pooled features as they are"
        )
    return "are they the weights of another model or width? --allow-partial loads what fits"


def summary(report: dict[str, list[str]]) -> dict[str, int]:
    """Counts of a load report, for logs and --json."""
    return {key: len(value) for key, value in report.items()}
