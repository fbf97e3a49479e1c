"""Evaluation during training: a validation split held out from the training identities,
several target datasets, several training sources."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from helpers import FAST_TRAIN

from reidkit.data.holdout import hold_out
from reidkit.data.sample import Sample, make_dataset
from reidkit.models.checkpoint import load_checkpoint


def test_hold_out_moves_whole_identities_into_a_query_and_gallery():
    # identity k (0..5) has 4 images; identity 5 is seen by camera 0 only
    samples = [
        Sample(f"/d/{pid}_{i}.jpg", pid, 0 if pid == 5 else i % 2)
        for pid in range(6)
        for i in range(4)
    ]
    ds = make_dataset("toy", Path("/d"), {"train": samples})
    for seed in range(20):
        train, query, gallery = hold_out(ds, 3, seed)
        held = {s.path.split("/")[-1].split("_")[0] for s in query + gallery}
        kept = {s.path.split("/")[-1].split("_")[0] for s in train.train}
        assert len(held) == 3 and not held & kept and len(kept) == 3
        assert sorted(s.pid for s in train.train) == sorted([0, 1, 2] * 4)  # relabelled
        assert train.num_train_pids == 3
        assert len(query) + len(gallery) == 12 and not {s.path for s in query} & {
            s.path for s in gallery
        }
        queried = {s.pid for s in query}
        assert len(query) == len(queried)  # one query per identity
        assert ("5" in held) == (len(query) == 2)  # the one-camera identity is no query
        for q in query:  # each query has a match from another camera
            assert any(g.pid == q.pid and g.camid != q.camid for g in gallery)
    assert hold_out(ds, 3, 0) == hold_out(ds, 3, 0)
    assert {s.path for s in hold_out(ds, 3, 0)[1]} != {s.path for s in hold_out(ds, 3, 1)[1]}


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory):
    """synthreid tiny (seed 0) under its registry name, and seed 1 as the folder 'other'."""
    from reidkit.data.synth import generate

    root = tmp_path_factory.mktemp("targets")
    generate(root / "a", "tiny", seed=0, workers=2)
    generate(root / "b", "tiny", seed=1, workers=2)
    shutil.move(root / "b" / "synthreid", root / "other")
    return root / "a", root / "other"


def _train(cli, tmp_path, root, *extra):
    run = tmp_path / "run"
    code, out, err = cli(
        "train", "--dataset", "synthreid", "--root", root, "--model", "osnet_x0_25",
        "--run", run, "--epochs", "2", *FAST_TRAIN, "eval.every=1", "--json", *extra,
    )  # fmt: skip
    return code, out, err, run


def _rows(run):
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_each_target_gets_its_columns_and_the_validation_split_chooses_best(
    two_sets, tmp_path, cli
):
    root, other = two_sets
    code, out, err, run = _train(
        cli, tmp_path, root, "data.val_ids=4", f"eval.targets=[synthreid,{other}]"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["selected_on"] == "val"
    rows = _rows(run)
    for column in ("val/mAP", "val/rank1", "synthreid/mAP", "synthreid/rank1", "other/mAP"):
        assert all(row[column] for row in rows), column
    assert all(row["mAP"] == row["val/mAP"] for row in rows)
    assert rows[0]["synthreid/mAP"] != rows[0]["other/mAP"]  # two datasets, two figures
    best_epoch = max(rows, key=lambda r: float(r["val/mAP"]))["epoch"]
    assert load_checkpoint(run / "weights" / "best.pt")["epoch"] == int(best_epoch)
    assert result["best_mAP"] == max(float(r["val/mAP"]) for r in rows)
    # 4 of the 16 identities held out: the classifier has 12 outputs
    assert load_checkpoint(run / "weights" / "last.pt")["model"]["num_classes"] == 12
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    assert [e.value for e in events.Scalars("other/mAP")] == pytest.approx(
        [float(r["other/mAP"]) for r in rows], abs=1e-6
    )


def test_several_sources_train_one_classifier_and_are_each_evaluated(two_sets, tmp_path, cli):
    root, other = two_sets
    code, out, err, run = _train(cli, tmp_path, root, f"data.sources=[synthreid,{other}]")
    assert code == 0, err
    assert json.loads(out)["selected_on"] == "synthreid"
    assert load_checkpoint(run / "weights" / "last.pt")["model"]["num_classes"] == 32
    rows = _rows(run)
    assert rows[-1]["synthreid/mAP"] and rows[-1]["other/mAP"]
    assert rows[-1]["mAP"] == rows[-1]["synthreid/mAP"]


def test_two_targets_of_one_name_are_refused(two_sets, tmp_path, cli):
    """Each target's columns are named after it: the same folder twice, a symlink to it
    under another name, and a folder called as the validation split are all refused."""
    root, _ = two_sets
    (tmp_path / "link").symlink_to(root / "synthreid")
    shutil.copytree(root / "synthreid", tmp_path / "val")
    for extra, message in [
        ([f"eval.targets=[synthreid,{root}/synthreid]"], f"synthreid and {root}/synthreid"),
        ([f"eval.targets=[synthreid,{tmp_path}/link]"], f"synthreid and {tmp_path}/link"),
        (
            ["data.val_ids=4", f"eval.targets=[{tmp_path}/val]"],
            f"the validation split and {tmp_path}/val",
        ),
    ]:
        code, out, err, run = _train(cli, tmp_path, root, *extra)
        assert (code, out) == (2, ""), err
        assert f"error: eval.targets: {message}" in err
        assert "hint: metrics are named after the dataset" in err
        assert not run.exists()


def test_an_unknown_target_or_source_names_its_config_key(two_sets, tmp_path, cli):
    root, _ = two_sets
    for extra, message in [
        (["eval.targets=[synthreid,nope]"], "error: eval.targets: unknown dataset 'nope'"),
        (["data.sources=[synthreid,synthreidd]"],
         "error: data.sources: unknown dataset 'synthreidd'; did you mean 'synthreid'?"),
    ]:  # fmt: skip
        code, out, err, run = _train(cli, tmp_path, root, *extra)
        assert (code, out) == (2, "") and err.strip().splitlines()[-2] == message
        assert not run.exists()


def test_a_batch_too_big_after_the_validation_split_says_what_was_held_out(two_sets, tmp_path, cli):
    root, _ = two_sets
    code, _, err, run = _train(cli, tmp_path, root, "data.val_ids=9", "data.batch_size=64")
    assert code == 2 and err.strip().splitlines()[-2:] == [
        "error: data.batch_size=64 with data.num_instances=4 needs 16 training identities per "
        "batch, but synthreid has 7 (16 less the 9 that data.val_ids holds out)",
        "hint: use --batch-size 28 (or less), or data.num_instances=16, or hold out fewer "
        "identities",
    ]
    assert not run.exists()
