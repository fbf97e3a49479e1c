"""Fixtures shared by the tests; the plain helpers they use live in helpers.py."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

MEMORY_FOLDER = "/dev/shm"
# room for the suite's folder (at most 2.3 GiB at once, measured 2026-12-07 under -n auto,
# with each passed test's tmp_path deleted when it ends), and memory left beside it
SUITE_PEAK_GIB, SPARE_GIB = 8, 8


def _suite_parent() -> str | None:
    """Where the suite's temporary folder goes: the TMPDIR the user set; else the memory
    filesystem at /dev/shm when it has room for the suite's files and the machine the
    memory to hold them beside the tests' own; else the system's temporary folder (None).
    The suite writes and throws away several GB (checkpoints, datasets, features): on the
    2-core machine it is timed on, a 135 MB checkpoint took 0.3 to 1.1 s to write to disk
    and 0.08 s to memory; the same tree's suite took 575 s in memory, 622 s on disk."""
    if os.environ.get("TMPDIR"):
        return None
    try:
        with open("/proc/mounts") as f:
            memory = any(line.split()[1:3] == [MEMORY_FOLDER, "tmpfs"] for line in f)
        with open("/proc/meminfo") as f:
            available = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable"))
        free = shutil.disk_usage(MEMORY_FOLDER).free
    except (OSError, StopIteration, ValueError):
        return None
    room = memory and os.access(MEMORY_FOLDER, os.W_OK) and free >= SUITE_PEAK_GIB * 2**30
    enough = available * 2**10 >= (SUITE_PEAK_GIB + SPARE_GIB) * 2**30
    return MEMORY_FOLDER if room and enough else None


def _one_core_per_worker() -> None:
    """Under pytest-xdist (``-n auto``, the README's command), worker i runs on core i only
    (modulo the cores this process may use), set before torch or numpy load: each worker is
    a one-core machine, and everything it starts (reidkit commands, export and loader
    workers, torchrun's ranks) inherits that core. Thread counts then never depend on what
    the other worker is doing (reidkit.threads counts usable cores), so a test that compares
    two runs compares runs made with the same count; and much of the suite is
    single-threaded (ONNX exports, imports, subprocess start-up), so two one-core workers
    finish it sooner than one process on both cores (measured: 390 s against 630 s)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    if worker.startswith("gw") and worker[2:].isdigit() and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[int(worker[2:]) % len(cores)]})


_one_core_per_worker()

# The suite runs in a temporary folder of its own (_suite_parent says where), set before
# anything reads it:
# - TMPDIR: reidkit commands register there to share the cores (reidkit.threads), so the
#   commands of another test suite or a real job on the same machine are not counted and
#   do not change what a test sees (a "2 reidkit commands are running" line on stderr);
# - the weights caches (torch's, Hugging Face's, which huggingface_hub reads once) start
#   empty: what a developer has cached never changes a result, no test downloads into them.
_SESSION = tempfile.mkdtemp(prefix="reidkit-tests-", dir=_suite_parent())
os.environ["TMPDIR"] = tempfile.tempdir = _SESSION
os.environ["TORCH_HOME"] = os.path.join(_SESSION, "torch")
os.environ["HF_HOME"] = os.path.join(_SESSION, "huggingface")

import pytest  # noqa: E402
from helpers import (  # noqa: E402
    MARKET_SPEC,
    Tree,
    command_state_restored,
    write_image,
    write_market_style,
)
from hypothesis import HealthCheck, settings  # noqa: E402

from reidkit.cli.app import run  # noqa: E402

# Property tests: the "ci" profile (the default) replays the same examples on every run and
# keeps no example database, so a suite that passes once passes every time. The "explore"
# profile draws many new examples: run it by hand, e.g.
#     HYPOTHESIS_PROFILE=explore python -m pytest tests/metrics
# and turn what it finds into a fixed test case. It also exports every registered model to
# ONNX (tests/deploy/test_export.py; CI exports one of each kind).
settings.register_profile(
    "ci",
    max_examples=100,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "explore",
    max_examples=3000,
    derandomize=False,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def market_tree(tmp_path: Path) -> Tree:
    """Market-1501 under its release folder, with stray and badly named files."""
    base = tmp_path / "data" / "market1501" / "Market-1501-v15.09.15"
    write_market_style(base, MARKET_SPEC)
    (base / "bounding_box_train" / "Thumbs.db").write_bytes(b"\0\1")
    (base / "query" / "readme.txt").write_text("not an image")
    write_image(base / "bounding_box_test" / "snapshot.jpg")  # breaks the naming rule
    write_image(base / "bounding_box_test" / "0003_c7s1_000001_01.jpg")  # camera 7 of 6
    return Tree(tmp_path / "data", base, MARKET_SPEC)


@pytest.fixture(scope="session")
def synth_tiny(tmp_path_factory) -> Path:
    """A data root holding synthreid's tiny preset (seed 0), made once for the session;
    tests read it and never change it (copy it first to break it)."""
    from reidkit.data.synth import generate

    root = tmp_path_factory.mktemp("synth-tiny")
    generate(root, "tiny", seed=0, workers=2)
    return root


@pytest.fixture
def cli(capsys):
    """Run a reidkit command line in-process: returns (exit code, stdout, stderr)."""

    def invoke(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = run([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


@pytest.fixture(autouse=True)
def clean_reidkit_env(monkeypatch):
    """Tests never see REIDKIT_* variables from the environment they run in, and the
    thread settings an in-process command makes (reidkit.threads) end with the test."""
    for key in list(os.environ):
        if key.startswith("REIDKIT_"):
            monkeypatch.delenv(key)
    with command_state_restored():
        yield


def pytest_sessionfinish(session, exitstatus):
    """The suite's temporary folder goes when it passed (kept to look into when not)."""
    if exitstatus == 0:
        shutil.rmtree(_SESSION, ignore_errors=True)


def pytest_terminal_summary(terminalreporter, exitstatus):
    """Where a failed suite's files were kept, and what they hold (in memory, maybe)."""
    if exitstatus != 0 and os.path.isdir(_SESSION):
        size = sum(f.stat().st_size for f in Path(_SESSION).rglob("*") if f.is_file())
        where = " (in memory)" if _SESSION.startswith(MEMORY_FOLDER + "/") else ""
        terminalreporter.write_line(
            f"the suite's files are kept in {_SESSION}{where}, {size / 2**20:.0f} MiB: "
            "delete the folder when done"
        )
