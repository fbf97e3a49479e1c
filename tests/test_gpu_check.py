"""benchmarks/gpu_check.py, the script for the first GPU lease, end to end on the CPU
(--dry-run): every stage that can run without CUDA, so that the lease is not spent on a
script that breaks on its first line."""

from __future__ import annotations

import json
import runpy
import sys

import pytest
from helpers import REPO


def test_the_gpu_check_runs_end_to_end_on_the_cpu(tmp_path, monkeypatch, capsys):
    """Run as ``python benchmarks/gpu_check.py`` runs it (its ``__main__``, its argv), in
    this process, which has torch and reidkit imported already (a new interpreter pays
    about 4.6 s for them); its torchrun stage still starts processes of its own."""
    script = REPO / "benchmarks" / "gpu_check.py"
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script adds benchmarks/ to it
    argv = ["--dry-run", "--out", tmp_path / "check.json", "--work", tmp_path / "work"]
    monkeypatch.setattr(sys, "argv", [str(a) for a in (script, *argv)])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(script), run_name="__main__")
    assert done.value.code == 0, capsys.readouterr()
    report = json.loads((tmp_path / "check.json").read_text())
    rows = {r["stage"]: r for r in report["stages"]}
    assert report["failures"] == [] and all(r["status"] == "ok" for r in rows.values())
    assert rows["environment"]["figures"]["device"] == "cpu"
    assert rows["resume"]["figures"]["epochs"] == 2
    adapted = rows["adaptation"]["figures"]
    assert len(adapted["clusters"]) == 2 and min(adapted["clusters"]) >= 2  # a batch's 2
    assert 0 < adapted["ari"] <= 1
    # on the CPU the device's file is the CPU's: the row's plumbing, not a comparison
    assert rows["extraction"]["figures"]["resnet18 fp32 vs cpu"] == 0.0
    # the other memory format than the default's (channels_last on the CPU for both)
    assert rows["extraction"]["figures"]["osnet_x0_25 off contiguous img/s"] > 0
    assert rows["evaluate + re-rank"]["figures"]["gap"] == 0.0
    assert rows["process group"]["figures"] == {"backend": "gloo", "sum": 4.0}
    assert "fp16" in rows["train fp16 + scaler + clip"]["figures"]["skipped"]
