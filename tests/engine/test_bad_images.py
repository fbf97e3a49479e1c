"""Training with unreadable images: checked before anything is written, named, skipped on
request (--skip-bad), and an evaluation that fails never costs the trained epoch."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from helpers import FAST_TRAIN

from reidkit.errors import DataError
from reidkit.models.checkpoint import load_checkpoint


@pytest.fixture
def tiny(synth_tiny):
    return synth_tiny


@pytest.fixture
def broken(tiny, tmp_path):
    """A copy of the tiny dataset with one gallery image truncated."""
    root = tmp_path / "data"
    shutil.copytree(tiny, root)
    bad = sorted((root / "synthreid" / "bounding_box_test").glob("0*.jpg"))[3]  # not junk
    bad.write_bytes(bad.read_bytes()[:200])
    return root, bad


def read_metrics(run):
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def train_args(root, run, *extra):
    return ["train", "--dataset", "synthreid", "--root", root, "--model", "osnet_x0_25",
            "--run", run, "--epochs", "1", *FAST_TRAIN, "eval.every=1", *extra]  # fmt: skip


def test_an_unreadable_image_stops_the_run_before_anything_is_written(broken, tmp_path, cli):
    root, bad = broken
    run = tmp_path / "run"
    code, out, err = cli(*train_args(root, run))
    assert (code, out) == (1, "")
    lines = err.splitlines()
    assert lines[0].startswith(
        f"error: 1 image(s) of synthreid cannot be read; the first: cannot read image {bad}: "
    )
    assert lines[1] == "hint: --skip-bad leaves them out (and lists them in train.log)"
    assert not run.exists()


def test_skip_bad_leaves_the_image_out_and_lists_it(broken, tmp_path, cli):
    root, bad = broken
    run = tmp_path / "run"
    code, _, err = cli(*train_args(root, run, "--skip-bad", "--json"))
    assert code == 0, err
    assert f"left out: cannot read image {bad}" in (run / "train.log").read_text()
    rows = read_metrics(run)
    assert len(rows) == 1 and 0 < float(rows[0]["mAP"]) <= 1


def test_a_failed_evaluation_keeps_the_epoch_and_resume_evaluates_it(
    tiny, tmp_path, cli, monkeypatch
):
    """An image that breaks after the start (another process rewrites it, a disk fails):
    the evaluation fails, but the epoch's weights are saved, and resume evaluates them
    before it goes on instead of failing or training the epoch again."""
    from reidkit.engine import trainer

    run = tmp_path / "run"
    real = trainer.Trainer.evaluate

    def broken_once(self):
        raise DataError("cannot read image gallery/0001.jpg: OSError: Truncated File Read")

    monkeypatch.setattr(trainer.Trainer, "evaluate", broken_once)
    code, _, err = cli(*train_args(tiny, run, "--epochs", "2"))
    assert code == 1 and "error: cannot read image gallery/0001.jpg" in err
    saved = load_checkpoint(run / "weights" / "last.pt")
    assert saved["epoch"] == 1 and saved["pending"]["epoch"] == 1  # trained, not evaluated
    assert json.loads((run / "weights" / "last.json").read_text())["pending"] is True
    monkeypatch.setattr(trainer.Trainer, "evaluate", real)
    code, out, err = cli("resume", run, "--json")
    assert code == 0, err
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == ["1", "2"] and all(r["mAP"] for r in rows)
    assert float(rows[0]["loss"]) == pytest.approx(saved["pending"]["loss"])
    assert load_checkpoint(run / "weights" / "last.pt")["step"] == 2 * saved["step"]
    assert (run / "weights" / "best.pt").is_file()
    code, out, _ = cli("resume", run, "--json")
    assert code == 0 and json.loads(out)["finished"] is True
