"""Loading weights into a model: what a file holds, in the model's names, and all of it.

Files read: reidkit checkpoints, torchvision state dicts, torchreid checkpoints (model-zoo
files, ``save_checkpoint`` dicts, Engine checkpoints with numpy scalars), fast-reid's
``{"model": ...}`` and DataParallel ``module.`` prefixes. torchreid's OSNet names are
translated (:mod:`reidkit.models.torchreid_keys`).

A load that leaves any trunk tensor unloaded is an error unless it is allowed: features of a
half-initialised trunk look like features and are noise. The model's head (its classifier,
and a BNNeck when the weights are a starting point for training) may stay as initialised.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable
from typing import Any

from reidkit.errors import DataError

log = logging.getLogger(__name__)

STATE_KEYS = ("state_dict", "model")  # reidkit and torchreid; fast-reid


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The tensors of a weights file, ``module.`` prefixes removed.

    Raises:
        MissingInputError: no such file.
        DataError: not a file torch can load safely (weights_only), or no state dict in it.
    """
    import torch

    from reidkit.engine.checkpoint import load_torch_file

    obj = load_torch_file(path, "weights file", hint="initial weights come only from a local file")
    if isinstance(obj, dict):
        for key in STATE_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if (
        not isinstance(obj, dict)
        or not obj
        or not all(isinstance(v, torch.Tensor) for v in obj.values())
    ):
        raise DataError(f"{path}: holds no state dict (a mapping of names to tensors)")
    state = {k.removeprefix("module."): v for k, v in obj.items()}
    from reidkit.models.torchreid_keys import from_torchreid_osnet, is_torchreid_osnet

    if is_torchreid_osnet(state):
        state = from_torchreid_osnet(state)
    return state


def load_state(
    model,
    state: dict[str, Any],
    source: str,
    *,
    may_miss: Iterable[str] = ("classifier",),
    allow_partial: bool = False,
) -> dict[str, list[str]]:
    """Load ``state`` into ``model``: every tensor that fits, the whole trunk or an error.

    Args:
        source: what the tensors came from (a file name), for messages.
        may_miss: module names that may stay as initialised (the head).
        allow_partial: load what fits and only warn about the trunk tensors left out.

    Returns:
        {"used": keys loaded, "skipped": keys of the file not loaded (unknown to the model
        or of another shape), "missing": keys of the model left as they were}.

    Raises:
        DataError: nothing fits, or trunk tensors are left unloaded without
            ``allow_partial``; the message counts them per module.
    """
    own = model.state_dict()
    used = [k for k, v in state.items() if k in own and own[k].shape == v.shape]
    if not used:
        raise DataError(
            f"{source}: none of its {len(state)} tensors fit this model",
            hint="are they the weights of another architecture?",
        )
    loaded = set(used)
    report = {
        "used": used,
        "skipped": [k for k in state if k not in loaded],
        "missing": [k for k in own if k not in loaded],
    }
    head = tuple(f"{name}." for name in may_miss)
    trunk_missing = [k for k in report["missing"] if not k.startswith(head)]
    if trunk_missing:
        message = (
            f"{source}: leaves {len(trunk_missing)} of the model's {len(own)} tensors "
            f"unloaded ({count_by_module(trunk_missing)})"
        )
        if not allow_partial:
            raise DataError(message, hint=_partial_hint(trunk_missing, state))
        log.warning("%s; loaded anyway (--allow-partial)", message)
    model.load_state_dict({k: state[k] for k in used}, strict=False)  # a refusal changes nothing
    return report


def load_weights(
    model,
    path: str | os.PathLike[str],
    *,
    may_miss: Iterable[str] = ("classifier",),
    allow_partial: bool = False,
) -> dict[str, list[str]]:
    """Load the weights file ``path`` into ``model``; see :func:`load_state`."""
    return load_state(
        model, read_state_dict(path), str(path), may_miss=may_miss, allow_partial=allow_partial
    )


def count_by_module(keys: Iterable[str]) -> str:
    """'conv2: 120, fc: 4': how many keys each top-level module has, largest first."""
    counts = Counter(key.split(".")[0] for key in keys)
    return ", ".join(f"{module}: {n}" for module, n in counts.most_common())


def _partial_hint(missing: list[str], state: dict[str, Any]) -> str:
    if all(k.startswith("bnneck.") for k in missing) and "classifier.bias" in state:
        return (
            "they come from a model without a BNNeck: give --no-bnneck (model.bnneck=false), "
            "and --last-stride 2 for torchreid's resnet50"
        )
    return "are they the weights of another model or width? --allow-partial loads what fits"


def summary(report: dict[str, list[str]]) -> dict[str, int]:
    """Counts of a load report, for logs and --json."""
    return {key: len(value) for key, value in report.items()}
