"""examples/cron_pipeline.sh end to end, as cron runs it: no terminal, a bare environment.

The first run renders the tiny synthetic dataset, trains, extracts and evaluates; the second
must do no work: every stage that can skip says it is up to date, no output is written
again and the run takes a fraction of the first one's time.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import h5py
import pytest
from helpers import REPO

SCRIPT = REPO / "examples" / "cron_pipeline.sh"
STAGES = ["data", "train", "extract", "evaluate"]
STAGE_LINE = re.compile(r"^\[([^]]+)\] stage (\w+): (.*)$", re.MULTILINE)
SKIPPING_STAGES = ["data", "train", "extract"]  # evaluate recomputes (well under a second)
UP_TO_DATE = re.compile(r"up to date|nothing to do")
SCRIPT_FILES = ("cron.log", "results.json")  # written by the script itself, every run


def cron_env(workdir: Path, home: Path, **extra: str) -> dict[str, str]:
    """What cron gives a job: a short PATH, HOME and little else; no REIDKIT_* variables,
    no TERM or COLUMNS. The interpreter's bin folder comes first so `reidkit` resolves."""
    bindir = Path(sys.executable).parent
    env = {
        "PATH": os.pathsep.join([str(bindir), "/usr/bin", "/bin"]),
        "HOME": str(home),
        "SHELL": "/bin/sh",
        "WORKDIR": str(workdir),
    }
    for key in ("LD_LIBRARY_PATH", "TMPDIR"):  # needed by some interpreters, kept if set
        if key in os.environ:
            env[key] = os.environ[key]
    env.update(extra)
    return env


@dataclass
class ScriptRun:
    proc: subprocess.CompletedProcess
    seconds: float
    log: str  # what this run appended to the log file


def run_script(env: dict[str, str], timeout: float = 300) -> ScriptRun:
    log = Path(env["WORKDIR"]) / "cron.log"
    before = log.read_text() if log.is_file() else ""
    start = time.perf_counter()
    proc = subprocess.run(
        ["bash", str(SCRIPT)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    seconds = time.perf_counter() - start
    after = log.read_text() if log.is_file() else ""
    assert after.startswith(before), "the log file is appended to, never rewritten"
    return ScriptRun(proc, seconds, after[len(before) :])


def outputs(workdir: Path) -> dict[str, tuple[int, int]]:
    """(mtime_ns, size) of every file the stages write: data, run directory, features.
    Lock files (which hold the last holder's pid) and the script's log and results are
    left out."""
    return {
        str(p.relative_to(workdir)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in sorted(workdir.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock") and p.name not in SCRIPT_FILES
    }


def stage_sections(log: str) -> dict[str, str]:
    """Each stage's part of one run's log: from its stage line to the next line the script
    wrote."""
    marks = list(re.finditer(r"^\[[^]]+\] .*$", log, re.MULTILINE))
    sections = {}
    for mark, nxt in zip(marks, [*marks[1:], None], strict=True):
        found = STAGE_LINE.match(mark.group(0))
        if found:
            sections[found.group(2)] = log[mark.start() : nxt.start() if nxt else len(log)]
    return sections


@dataclass
class Pipeline:
    workdir: Path
    env: dict[str, str]
    first: ScriptRun
    second: ScriptRun
    outputs_first: dict[str, tuple[int, int]]
    outputs_second: dict[str, tuple[int, int]]
    results_first: dict
    results_second: dict


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Pipeline:
    base = tmp_path_factory.mktemp("cron")
    (base / "home").mkdir()
    workdir = base / "w"
    env = cron_env(workdir, base / "home")
    assert (Path(sys.executable).parent / "reidkit").is_file(), "reidkit is not installed"
    first = run_script(env)
    assert first.proc.returncode == 0, first.proc.stderr + first.log
    outputs_first = outputs(workdir)
    results_first = json.loads((workdir / "results.json").read_text())
    second = run_script(env)
    assert second.proc.returncode == 0, second.proc.stderr + second.log
    return Pipeline(
        workdir, env, first, second, outputs_first, outputs(workdir), results_first,
        json.loads((workdir / "results.json").read_text()),
    )  # fmt: skip


def test_script_is_valid_bash():
    assert os.access(SCRIPT, os.X_OK)
    assert SCRIPT.read_text().startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in SCRIPT.read_text()
    check = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_first_run_writes_the_results_json(pipeline):
    first = pipeline.first
    assert first.proc.stdout == "" and first.proc.stderr == ""  # cron mails nothing
    results = pipeline.results_first
    assert 0 <= results["mAP"] <= 1 and 0 <= results["mINP"] <= 1
    assert set(results["cmc"]) == {"1", "5", "10", "20"}
    cmc = [results["cmc"][k] for k in ("1", "5", "10", "20")]
    assert all(0 <= a <= b <= 1 for a, b in itertools.pairwise(cmc))
    feats = pipeline.workdir / "feats"
    for subset in ("query", "gallery"):
        with h5py.File(feats / f"synthreid-{subset}.h5") as f:
            assert results[f"num_{subset}"] == len(f["pids"]) > 0
    assert results["query"] == str(feats / "synthreid-query.h5")
    run = pipeline.workdir / "runs" / "cron"
    assert (run / "weights" / "best.pt").is_file() and (run / "weights" / "last.pt").is_file()
    leftovers = [p.name for p in pipeline.workdir.glob("results.json?*")]
    assert leftovers == []  # the temporary file was renamed


def test_log_has_one_timestamped_entry_per_stage(pipeline):
    for run in (pipeline.first, pipeline.second):
        entries = STAGE_LINE.findall(run.log)
        assert [name for _, name, _ in entries] == STAGES, run.log
        for stamp, _, command in entries:
            datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z")
            assert command.startswith("reidkit ")
        assert re.search(r"^\[[^]]+\] pipeline done in \d+ s", run.log, re.MULTILINE)
    log = (pipeline.workdir / "cron.log").read_text()
    assert [name for _, name, _ in STAGE_LINE.findall(log)][:8] == STAGES * 2
    train = stage_sections(pipeline.first.log)["train"]
    assert "reidkit train " in train and "epoch 2/2" in train  # the stage's stderr is logged
    queries = pipeline.results_first["num_query"]
    assert f"evaluate: {queries}/{queries}" in stage_sections(pipeline.first.log)["evaluate"]
    assert "resume" in STAGE_LINE.findall(pipeline.second.log)[1][2]


def test_second_run_writes_nothing_again(pipeline):
    second = pipeline.second
    assert second.proc.stdout == "" and second.proc.stderr == ""
    written = pipeline.outputs_first
    assert any(p.endswith("weights/best.pt") for p in written)
    assert any(p.endswith("synthreid-query.h5") for p in written)
    assert sum(p.startswith("data/synthreid/") for p in written) > 100
    changed = sorted(p for p in written if pipeline.outputs_second.get(p) != written[p])
    assert changed == [], changed
    assert sorted(pipeline.outputs_second) == sorted(written)  # and nothing new
    first, second = ({k: v for k, v in r.items() if k != "seconds"} for r in (
        pipeline.results_first, pipeline.results_second))  # fmt: skip
    assert second == first  # evaluate ran again, on the same features


def test_second_run_every_stage_says_it_is_up_to_date(pipeline):
    sections = stage_sections(pipeline.second.log)
    assert list(sections) == STAGES
    silent = [name for name in SKIPPING_STAGES if not UP_TO_DATE.search(sections[name])]
    assert silent == [], "\n".join(sections[name] for name in silent)
    assert len(re.findall(r"is up to date", sections["extract"])) == 2  # query and gallery


def no_op_loads_torch(workdir: Path, argv: list[str]) -> tuple[int, bool]:
    """Run reidkit ARGV in a fresh interpreter: (exit code, whether torch got imported)."""
    code = (
        "import sys; from reidkit.cli.app import run; c = run(sys.argv[1:]); "
        "print('torch' in sys.modules); sys.exit(c)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=workdir,
        env={**os.environ, "REIDKIT_QUIET": "1"}, timeout=120,
    )  # fmt: skip
    return proc.returncode, proc.stdout.strip().splitlines()[-1] == "True"  # after the result


def test_up_to_date_stages_skip_torch_and_the_model(pipeline):
    """Reruns are quick because a stage with nothing to do decides so from small files
    (the run's last.json, the feature files' provenance) without importing torch. (Speed
    itself is measured by benchmarks, not tests: docs/benchmarks.md.)"""
    w = pipeline.workdir
    run, feats, data = w / "runs" / "cron", w / "feats", w / "data"
    weights = run / "weights" / "best.pt"
    assert no_op_loads_torch(w, ["resume", str(run), "--max-epoch", "2"]) == (0, False)
    extract = ["extract", str(weights), "--dataset", "synthreid", "--root", str(data),
               "--out", str(feats)]  # fmt: skip
    assert no_op_loads_torch(w, extract) == (0, False)
    # with work to do, the same commands do load it (the check above can fail)
    assert no_op_loads_torch(w, [*extract[:-1], str(w / "feats-new")]) == (0, True)


def test_a_held_lock_exits_75_without_touching_anything(pipeline):
    log = pipeline.workdir / "cron.log"
    before = log.read_text()
    with open(pipeline.workdir / ".cron.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = subprocess.run(
            ["bash", str(SCRIPT)], stdin=subprocess.DEVNULL, capture_output=True, text=True,
            env=pipeline.env, timeout=60,
        )  # fmt: skip
    assert proc.returncode == 75, proc.stderr
    assert "another run is active" in proc.stderr
    assert log.read_text() == before


def test_a_failing_stage_stops_the_script_with_its_exit_code(pipeline, tmp_path):
    env = cron_env(
        tmp_path / "w", tmp_path, DATA=str(pipeline.workdir / "data"), MODEL="no_such_model"
    )
    run = run_script(env)
    assert run.proc.returncode == 2, run.proc.stderr  # reidkit train's usage error
    assert "stage train failed (exit 2)" in run.proc.stderr
    assert [name for _, name, _ in STAGE_LINE.findall(run.log)] == ["data", "train"]
    assert "error: unknown model 'no_such_model'" in run.log
    assert re.search(r"^\[[^]]+\] stage train failed \(exit 2\)$", run.log, re.MULTILINE)
    assert not (tmp_path / "w" / "results.json").exists()


def test_a_failing_evaluate_leaves_the_previous_results(pipeline, tmp_path):
    fake = tmp_path / "reidkit"  # reidkit, except that evaluate dies after half its JSON
    fake.write_text(
        '#!/bin/sh\nif [ "$1" = evaluate ]; then printf \'{"mAP": \'; exit 1; fi\n'
        'exec reidkit "$@"\n'
    )
    fake.chmod(0o755)
    results = pipeline.workdir / "results.json"
    before = results.read_bytes()
    run = run_script({**pipeline.env, "REIDKIT": str(fake)})
    assert run.proc.returncode == 1, run.proc.stderr
    assert "stage evaluate failed (exit 1)" in run.log
    assert results.read_bytes() == before
    assert [p.name for p in pipeline.workdir.glob("results.json?*")] == []
