from __future__ import annotations

import csv
import json

import h5py
import numpy as np
import pytest

from reidkit.features.writer import write_features
from reidkit.metrics.distance import pairwise_distance
from reidkit.metrics.rank import evaluate_distances
from reidkit.metrics.rerank import rerank_distances


@pytest.fixture
def feats(tmp_path):
    """Query and gallery files: 12 identities, 3 cameras, distractors and junk."""
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(13, 16)).astype(np.float32)
    qp, qc = rng.integers(1, 13, 30), rng.integers(0, 3, 30)
    gp, gc = rng.integers(1, 13, 120), rng.integers(0, 3, 120)
    gp[:10], gp[10:15] = 0, -1
    qf = centres[qp] + 0.7 * rng.normal(size=(30, 16)).astype(np.float32)
    gf = centres[gp] + 0.7 * rng.normal(size=(120, 16)).astype(np.float32)
    q = write_features(tmp_path / "q.h5", qf, qp, qc, paths=[f"query/{i}.jpg" for i in range(30)])
    g = write_features(tmp_path / "g.h5", gf, gp, gc)
    return q, g, (qf, qp, qc, gf, gp, gc)


def test_json_matches_the_library_on_the_same_features(feats, cli):
    q, g, (qf, qp, qc, gf, gp, gc) = feats
    code, out, err = cli("evaluate", q, g, "--json", "--ranks", "1,3,5")
    assert code == 0, err
    result = json.loads(out)
    expected = evaluate_distances(pairwise_distance(qf, gf), qp, qc, gp, gc, ranks=(1, 3, 5))
    assert result["mAP"] == pytest.approx(expected.mAP, abs=1e-9)
    assert result["mINP"] == pytest.approx(expected.mINP, abs=1e-9)
    assert result["cmc"] == {str(r): pytest.approx(v, abs=1e-9) for r, v in expected.cmc.items()}
    assert (result["num_query"], result["num_gallery"]) == (30, 120)
    assert result["num_valid_query"] + result["skipped_queries"] == 30
    assert result["metric"] == "euclidean" and result["protocol"] == "market"
    assert result["normalize"] is False and result["rerank"] is None
    assert set(result["seconds"]) == {"load", "distance", "rank", "total"}
    assert 0 <= result["mINP"] <= result["mAP"] <= 1


def test_rerank_json_and_numbers(feats, cli):
    q, g, (qf, qp, qc, gf, gp, gc) = feats
    code, out, _ = cli(
        "evaluate",
        q,
        g,
        "--rerank",
        "--k1",
        "8",
        "--k2",
        "3",
        "--lambda",
        "0.4",
        "--metric",
        "cosine",
        "--json",
    )
    result = json.loads(out)
    assert code == 0 and result["rerank"] == {
        "k1": 8,
        "k2": 3,
        "lambda": 0.4,
        "pool": "valid",
        "input": "cosine distances, squared by the algorithm",
    }
    # the default pool leaves junk out of the re-ranking, as torchreid (which drops junk
    # when it loads a dataset); tests/metrics checks both pools against the reference
    valid = gp != -1
    final = rerank_distances(qf, gf[valid], metric="cosine", k1=8, k2=3, lambda_value=0.4)
    expected = evaluate_distances(final, qp, qc, gp[valid], gc[valid]).mAP
    assert result["mAP"] == pytest.approx(expected, abs=1e-9)
    assert "rerank" in result["seconds"]
    code, out, _ = cli(
        "evaluate", q, g, "--rerank", "--k1", "8", "--k2", "3", "--lambda", "0.4", "--metric",
        "cosine", "--rerank-pool", "all", "--json",
    )  # fmt: skip
    result = json.loads(out)
    assert code == 0 and result["rerank"]["pool"] == "all"
    final = rerank_distances(qf, gf, metric="cosine", k1=8, k2=3, lambda_value=0.4)
    assert result["mAP"] == pytest.approx(evaluate_distances(final, qp, qc, gp, gc).mAP, abs=1e-9)
    assert result["mAP"] != pytest.approx(expected, abs=1e-6)  # the pool made a difference


def test_human_table_on_stdout(feats, cli):
    q, g, _ = feats
    code, out, err = cli("evaluate", q, g, "--normalize")
    assert code == 0 and "mAP" not in err  # the result is on stdout, progress on stderr
    assert "mAP" in out and "Rank-20" in out and "30 of 30 queries evaluated" in out
    # files of another tool say neither the model's distance nor the dataset: the defaults
    assert "euclidean distance of normalised features (default), protocol market (default)" in out


def test_per_query_csv(feats, cli, tmp_path):
    q, g, (qf, qp, qc, gf, gp, gc) = feats
    code, _, _ = cli("evaluate", q, g, "--per-query", tmp_path / "pq.csv", "-q")
    expected = evaluate_distances(pairwise_distance(qf, gf), qp, qc, gp, gc)
    with open(tmp_path / "pq.csv") as f:
        rows = list(csv.DictReader(f))
    assert code == 0 and len(rows) == 30
    assert rows[4]["path"] == "query/4.jpg" and int(rows[4]["pid"]) == qp[4]
    for row, ap, first in zip(rows, expected.ap, expected.first_match, strict=False):
        if first < 0:
            assert row["ap"] == "" and row["first_match"] == ""
        else:
            assert (
                float(row["ap"]) == pytest.approx(ap, abs=1e-6) and int(row["first_match"]) == first
            )


def test_single_camera_data_needs_protocol_none(tmp_path, cli):
    rng = np.random.default_rng(0)
    f = rng.normal(size=(10, 4)).astype(np.float32)
    pids = np.arange(10) % 5
    q = write_features(tmp_path / "q.h5", f[:5], pids[:5], np.zeros(5))
    g = write_features(tmp_path / "g.h5", f[5:], pids[5:], np.zeros(5))
    code, out, err = cli("evaluate", q, g)
    assert code == 1 and out == ""
    assert err.splitlines()[-2].startswith("error: every query was skipped")
    assert err.splitlines()[-1] == "hint: for single-camera data use --protocol none"
    code, out, _ = cli("evaluate", q, g, "--protocol", "none", "--json")
    assert code == 0 and json.loads(out)["num_valid_query"] == 5


@pytest.mark.parametrize(
    "args,message",
    [
        (["--metric", "cosin"], "error: unknown metric 'cosin'; did you mean 'cosine'?"),
        (["--protocol", "duke"], "error: unknown protocol 'duke'"),
        (["--ranks", "1,x"], "error: --ranks must be comma-separated integers, not '1,x'"),
        (["--ranks", "0,5"], "error: ranks must be positive integers"),
        (["--rerank", "--lambda", "1.5"], "error: --lambda must be between 0 and 1, got 1.5"),
        (["--rerank", "--k1", "3", "--k2", "9"], "error: --k2 (9) cannot exceed --k1 + 1 (4)"),
        (["--device", "tpu"], "error: unknown device 'tpu'"),
    ],
)
def test_bad_options_exit_2(feats, cli, args, message):
    q, g, _ = feats
    code, out, err = cli("evaluate", q, g, *args)
    assert code == 2 and out == "" and err.splitlines()[0].startswith(message)


def test_dimension_mismatch_names_both_files(feats, tmp_path, cli):
    q, _, _ = feats
    other = write_features(tmp_path / "g8.h5", np.zeros((4, 8), np.float32), np.ones(4), np.ones(4))
    code, _, err = cli("evaluate", q, other)
    assert code == 2
    assert err.splitlines()[0] == (
        f"error: {q} has 16-dimensional features but {other} has 8: "
        "they must come from the same model"
    )


def test_bad_feature_files(feats, tmp_path, cli):
    q, _g, _ = feats
    code, _, err = cli("evaluate", q, tmp_path / "missing.h5")
    assert code == 2 and err.startswith(f"error: feature file not found: {tmp_path / 'missing.h5'}")
    with h5py.File(tmp_path / "nan.h5", "w") as f:
        data = np.ones((6, 16), np.float32)
        data[4, 2] = np.nan
        f["features"], f["pids"], f["camids"] = data, np.ones(6), np.zeros(6)
    code, _, err = cli("evaluate", q, tmp_path / "nan.h5")
    assert code == 1 and "1 feature row(s) contain NaN or inf, the first at index 4" in err
    assert "Traceback" not in err


def test_cuda_asked_for_without_a_gpu(feats, cli, monkeypatch):
    import reidkit.device as device

    exists = device.os.path.exists  # no GPU device files; torch's own files still there
    monkeypatch.setattr(
        device.os.path, "exists", lambda p: p not in device.GPU_MARKERS and exists(p)
    )
    q, g, _ = feats
    code, _, err = cli("evaluate", q, g, "--device", "cuda")
    assert code == 2 and "no CUDA device is available" in err, err


MADE_BY = {
    "model": "osnet_x0_25",
    "checkpoint_sha256": "ab" * 32,
    "image_size": [256, 128],
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "flip": False,
    "normalized": False,
}


def write_pair(tmp_path, query_attrs, gallery_attrs):
    rng = np.random.default_rng(3)
    qp, gp = np.arange(1, 9), np.tile(np.arange(1, 9), 3)
    q = write_features(
        tmp_path / "q.h5", rng.normal(size=(8, 6)), qp, np.zeros(8), attrs=query_attrs
    )
    g = write_features(
        tmp_path / "g.h5", rng.normal(size=(24, 6)), gp, np.ones(24), attrs=gallery_attrs
    )
    return q, g


@pytest.mark.parametrize(
    ("key", "other", "said"),
    [
        ("model", "resnet50", "model osnet_x0_25 against resnet50"),
        ("checkpoint_sha256", "cd" * 32, f"checkpoint sha256 {'ab' * 6} against sha256 {'cd' * 6}"),
        ("image_size", [384, 128], "image size 256x128 against 384x128"),
        ("mean", [0.5, 0.5, 0.5], "pixel mean [0.485, 0.456, 0.406] against [0.5, 0.5, 0.5]"),
        ("flip", True, "flip averaging False against True"),
        ("normalized", True, "feature normalisation False against True"),
    ],
)  # fmt: skip
def test_files_that_do_not_belong_together_are_refused(tmp_path, cli, key, other, said):
    q, g = write_pair(tmp_path, MADE_BY, {**MADE_BY, key: other})
    code, out, err = cli("evaluate", q, g, "--json")
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"error: {q} and {g} do not belong together: {said}",
        "hint: extract both with the same model and options, or pass --allow-mismatch",
    ]
    code, out, err = cli("evaluate", q, g, "--json", "--allow-mismatch")
    assert code == 0 and json.loads(out)["num_query"] == 8
    # visrank reads its files the same way
    code, _, err = cli("visrank", q, g, "--out", tmp_path / "vis", "--no-images", "--no-plots")
    assert code == 2 and err.startswith(f"error: {q} and {g} do not belong together")


def test_files_of_the_same_making_and_foreign_files_are_evaluated(tmp_path, cli):
    q, g = write_pair(tmp_path, MADE_BY, MADE_BY)
    assert cli("evaluate", q, g, "--json")[0] == 0
    q, g = write_pair(tmp_path, MADE_BY, {})  # a gallery of another tool says nothing
    assert cli("evaluate", q, g, "--json")[0] == 0


def test_metric_and_protocol_come_from_the_files(tmp_path, cli):
    stated = {**MADE_BY, "model": "resnet50", "distance": "cosine",
              "dataset": "cuhk03-classic-labeled@2"}  # fmt: skip
    q, g = write_pair(tmp_path, stated, stated)
    code, out, err = cli("evaluate", q, g, "--json")
    assert code == 0, err
    found = json.loads(out)
    assert (found["metric"], found["protocol"]) == ("cosine", "cuhk03")
    assert found["chosen_by"] == {
        "metric": "as recommended for resnet50",
        "protocol": "as for cuhk03-classic-labeled@2",
    }
    code, out, _ = cli("evaluate", q, g, "--json", "--metric", "cosine", "--protocol", "cuhk03")
    given = json.loads(out)
    assert given["chosen_by"] == {"metric": "option", "protocol": "option"}
    assert (given["mAP"], given["cmc"]) == (found["mAP"], found["cmc"])
    code, out, _ = cli("evaluate", q, g, "--json", "--metric", "euclidean", "--protocol", "none")
    assert (json.loads(out)["metric"], json.loads(out)["protocol"]) == ("euclidean", "none")
    code, out, _ = cli("evaluate", q, g)
    assert "cosine distance (as recommended for resnet50), protocol cuhk03 (as for " in out


def test_a_checkpoint_mismatch_names_the_weights_files(tmp_path, cli):
    """The README's case: a query exported from best.pt and run by ONNX Runtime, a gallery
    extracted from last.pt."""
    query = {**MADE_BY, "onnx": "resnet18.onnx"}
    gallery = {**MADE_BY, "checkpoint_sha256": "cd" * 32, "checkpoint": "runs/r/weights/last.pt"}
    q, g = write_pair(tmp_path, query, gallery)
    code, _, err = cli("evaluate", q, g)
    assert code == 2 and err.splitlines()[0] == (
        f"error: {q} and {g} do not belong together: checkpoint sha256 {'ab' * 6} (from "
        f"resnet18.onnx, an ONNX export) against sha256 {'cd' * 6} (from runs/r/weights/last.pt)"
    )
