"""benchmarks/gpu_check.py, the script for the first GPU lease, end to end on the CPU
(--dry-run): every stage that can run without CUDA, so that the lease is not spent on a
script that breaks on its first line."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import REPO, reidkit_env


def test_the_gpu_check_runs_end_to_end_on_the_cpu(tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--dry-run",
         "--out", str(tmp_path / "check.json"), "--work", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=600, env=reidkit_env(), cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "check.json").read_text())
    rows = {r["stage"]: r for r in report["stages"]}
    assert report["failures"] == [] and all(r["status"] == "ok" for r in rows.values())
    assert rows["environment"]["figures"]["device"] == "cpu"
    assert rows["resume"]["figures"]["epochs"] == 2
    assert rows["extraction"]["figures"]["resnet18 fp32 vs cpu"] == 0.0
    assert rows["evaluate + re-rank"]["figures"]["gap"] == 0.0
    assert rows["process group"]["figures"] == {"backend": "gloo", "sum": 4.0}
    assert "fp16" in rows["train fp16 + scaler + clip"]["figures"]["skipped"]
