"""Start or continue a run directory: ``train`` and ``resume`` (what ``reidkit train``
and ``reidkit resume`` call). The loop itself is :class:`reidkit.engine.trainer.Trainer`."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from reidkit.config import Config, dump_config
from reidkit.engine.rundir import (
    environment,
    log_to_file,
    read_progress_note,
    run_lock,
    started_from,
)
from reidkit.engine.trainer import Trainer
from reidkit.errors import ReidkitError, UsageError
from reidkit.fileio import write_text_atomic
from reidkit.progress import ProgressFn, no_progress

log = logging.getLogger(__name__)


def _fit(trainer: Trainer) -> dict[str, Any]:
    with log_to_file(trainer.run, enabled=trainer.rank == 0):
        result = trainer.fit()
    return {
        "run": str(trainer.run),
        "epochs": trainer.epoch,
        "steps": trainer.step,
        "best_mAP": trainer.best if trainer.best >= 0 else None,
        "selected_on": trainer.eval_sets[0].name if trainer.eval_sets else None,
        "last": result,
    }


def train(
    config: Config,
    run: str | os.PathLike[str],
    *,
    exist_ok: bool = False,
    progress: ProgressFn = no_progress,
) -> dict[str, Any]:
    """Start a new run in ``run`` (which must not exist unless ``exist_ok``)."""
    from reidkit.config import check_config

    check_config(config)
    run = Path(run)
    main_process = os.environ.get("RANK", "0") == "0"
    # other ranks may find the folder rank 0 has just begun; they follow its decision
    if main_process and run.exists() and any(run.iterdir()) and not exist_ok:
        raise UsageError(
            f"run directory {run} already exists",
            hint=f"'reidkit resume {run}' continues it; --exist-ok overwrites it",
        )
    with run_lock(run):
        created = not run.exists()
        if main_process:
            # written first, so a run stopped before its first checkpoint can be resumed
            (run / "weights").mkdir(parents=True, exist_ok=True)
            (run / "metrics.csv").unlink(missing_ok=True)
            write_text_atomic(run / "config.yaml", dump_config(config))
        try:
            trainer = Trainer(config, run, progress=progress)
            if main_process:
                write_text_atomic(
                    run / "config.yaml", dump_config(config, started_from(trainer.pretrained))
                )
        except ReidkitError:
            # an unknown model or dataset: the run never started, so it leaves nothing
            if main_process and created:
                shutil.rmtree(run, ignore_errors=True)
            raise
        if trainer.rank == 0:
            env = {**environment(trainer.device), "pretrained": trainer.pretrained}
            write_text_atomic(run / "env.json", json.dumps(env, indent=2))
        return _fit(trainer)


def is_finished(state: dict[str, Any], config: Config) -> bool:
    """True when a run whose last checkpoint is at ``state`` (the checkpoint, or its note
    beside it) has nothing left to do under ``config``: every epoch trained, none of it
    part-way, no evaluation pending."""
    return (
        state["epoch"] >= config.train.epochs
        and not state["batch_in_epoch"]
        and not state.get("pending")
    )


# what a resumed run may change of the settings its checkpoint was trained with: resume's own
# options, and where the data lies
RESUMABLE = (
    "train.epochs", "train.device", "data.workers", "data.batch_size", "data.skip_bad",
    "data.root",
)  # fmt: skip


def check_unedited(config: Config, checkpoint: dict[str, Any], run: Path) -> None:
    """Refuse a run whose config.yaml was edited after weights/last.pt was saved (another
    model, dataset, validation split...), before anything is loaded or written.

    Raises:
        UsageError: naming config.yaml and the first key that no longer agrees.
    """
    from reidkit.config import changed_keys
    from reidkit.errors import UsageError

    recorded = checkpoint.get("config")
    if not isinstance(recorded, dict):
        return
    changed = [k for k in changed_keys(config, recorded) if k not in RESUMABLE]
    if changed:
        key, (section, name) = changed[0], changed[0].split(".")
        then = recorded.get(section, {}).get(name)
        more = f" (and {len(changed) - 1} more: {', '.join(changed[1:4])})" if changed[1:] else ""
        raise UsageError(
            f"{run / 'config.yaml'}: {key} is {getattr(getattr(config, section), name)!r} but "
            f"weights/last.pt was trained with {then!r}{more}",
            hint="resume continues a run as it was trained: undo the edit, or start a new "
            f"run with reidkit train --config {run / 'config.yaml'} --run NEW_RUN",
        )


def resume(
    run: str | os.PathLike[str],
    overrides: dict[str, Any] | None = None,
    *,
    progress: ProgressFn = no_progress,
) -> dict[str, Any]:
    """Continue ``run`` from weights/last.pt with its saved config (plus the whitelisted
    ``overrides``: train.device, data.workers, data.batch_size, data.skip_bad,
    train.epochs)."""
    from reidkit.config import check_config, load_config, set_value
    from reidkit.errors import MissingInputError
    from reidkit.models.checkpoint import load_checkpoint

    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise MissingInputError(f"{run} is not a run directory (no config.yaml)")
    last = run / "weights" / "last.pt"

    def saved_config() -> Config:
        config = load_config(run / "config.yaml")
        for key, value in (overrides or {}).items():
            if value is not None:
                set_value(config, key, value)
        return check_config(config)

    if not last.is_file():
        # stopped before its first checkpoint: nothing to continue, so start it over
        config = saved_config()
        log.info("%s has no checkpoint yet: training it from the start", run)
        return {**train(config, run, exist_ok=True, progress=progress), "finished": False}
    with run_lock(run):
        config = saved_config()
        # a finished run is recognised from the note beside last.pt, without loading torch,
        # unless config.yaml changed after last.pt was saved (a hand edit, to be checked)
        edited = (run / "config.yaml").stat().st_mtime_ns > last.stat().st_mtime_ns
        checkpoint = (not edited and read_progress_note(last)) or load_checkpoint(last)
        if edited:
            check_unedited(config, checkpoint, run)
        if is_finished(checkpoint, config):
            return {
                "run": str(run),
                "epochs": checkpoint["epoch"],
                "steps": checkpoint["step"],
                "best_mAP": checkpoint["best"] if checkpoint["best"] >= 0 else None,
                "last": {},
                "finished": True,
            }
        if "state_dict" not in checkpoint:
            checkpoint = load_checkpoint(last)
        check_unedited(config, checkpoint, run)
        trainer = Trainer(config, run, progress=progress, pretrained=checkpoint.get("pretrained"))
        trainer.load(checkpoint)
        if trainer.rank == 0:
            write_text_atomic(
                run / "config.yaml", dump_config(config, started_from(trainer.pretrained))
            )
        return {**_fit(trainer), "finished": False}
