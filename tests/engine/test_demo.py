from __future__ import annotations

import json
from pathlib import Path


def test_demo_runs_every_stage_and_reruns_reuse_them(tmp_path, cli):
    code, out, err = cli("demo", "--out", tmp_path / "demo", "--epochs", "1", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert set(result) == {"trained", "untrained", "seconds", "run", "features"}
    for label in ("trained", "untrained"):
        assert set(result[label]) == {"mAP", "rank1"} and 0 <= result[label]["mAP"] <= 1
    assert [Path(f).name for f in result["features"]] == [
        "synthreid-query.h5",
        "synthreid-gallery.h5",
    ] * 2
    assert all(Path(f).is_file() for f in result["features"])
    outputs = [
        tmp_path / "demo" / "runs" / "demo" / "weights" / "last.pt",
        *map(Path, result["features"]),
    ]
    stamps = [p.stat().st_mtime_ns for p in outputs]
    code, out, _ = cli("demo", "--out", tmp_path / "demo", "--epochs", "1", "--json")
    assert code == 0 and json.loads(out)["trained"] == result["trained"]
    assert [p.stat().st_mtime_ns for p in outputs] == stamps  # nothing trained or written again
