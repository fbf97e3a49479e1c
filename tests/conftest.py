"""Shared fixtures: tiny dataset trees built with the real file-naming rules, and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from reidkit.cli.app import run

REPO = Path(__file__).resolve().parents[1]


def write_image(path: Path, color: tuple[int, int, int] = (120, 80, 40), size=(32, 64)) -> None:
    """A small real JPEG (width 32, height 64 by default)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, "JPEG")


def market_name(pid: int, cam: int, frame: int) -> str:
    """Market-1501 naming: PPPP_cCsS_FFFFFF_NN.jpg (junk is -1_cC...)."""
    pid_text = "-1" if pid == -1 else f"{pid:04d}"
    return f"{pid_text}_c{cam}s1_{frame:06d}_01.jpg"


def duke_name(pid: int, cam: int, frame: int) -> str:
    """DukeMTMC-reID naming: PPPP_cC_fFFFFFFF.jpg."""
    return f"{pid:04d}_c{cam}_f{frame:07d}.jpg"


# (pid, one-based camera) per subset; the expected counts in tests are derived from these.
MARKET_SPEC = {
    "bounding_box_train": [(7, 1), (7, 2), (7, 2), (2, 1), (2, 3), (10, 4), (10, 5), (10, 6)],
    "query": [(3, 1), (3, 2), (5, 4)],
    "bounding_box_test": [(3, 2), (3, 3), (3, 1), (5, 5), (5, 6), (0, 1), (0, 3), (-1, 2), (-1, 4)],
}


@dataclass
class Tree:
    """A dataset tree written by a fixture, and what it holds."""

    root: Path  # the data root (--root)
    base: Path  # the folder holding the subset folders
    spec: dict[str, list[tuple[int, int]]]


def write_market_style(base: Path, spec: dict, name=market_name) -> None:
    for folder, items in spec.items():
        for i, (pid, cam) in enumerate(items):
            write_image(base / folder / name(pid, cam, 100 * i + 1), color=(10 * i, 50, 90))


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


@pytest.fixture
def cli(capsys):
    """Run a reidkit command line in-process: returns (exit code, stdout, stderr)."""

    def invoke(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = run([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def reidkit_env(**extra: str) -> dict[str, str]:
    """This process's environment without REIDKIT_* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REIDKIT_")}
    env.update(extra)
    return env


def reidkit_argv(*argv) -> list[str]:
    """The command line of ``python -m reidkit ARGV``."""
    return [sys.executable, "-m", "reidkit", *map(str, argv)]


def torchrun_argv(processes: int, *argv) -> list[str]:
    """``python -m reidkit ARGV`` under torchrun with ``processes`` local processes."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(processes),
        "-m",
        "reidkit",
        *map(str, argv),
    ]


def run_reidkit(
    *argv, env: dict | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run ``python -m reidkit`` as a separate process, without a terminal."""
    return subprocess.run(
        reidkit_argv(*argv),
        capture_output=True,
        text=True,
        env=reidkit_env(**(env or {})),
        cwd=cwd,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(autouse=True)
def clean_reidkit_env(monkeypatch):
    """Tests never see REIDKIT_* variables from the environment they run in."""
    for key in list(os.environ):
        if key.startswith("REIDKIT_"):
            monkeypatch.delenv(key)
