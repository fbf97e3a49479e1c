"""Helpers shared by the tests: tiny dataset trees built with the real file-naming rules,
training settings that run in seconds, and ways to run reidkit as a separate process.

Test modules import these from here (``from helpers import ...``), never from a conftest:
pytest loads every conftest.py outside a package under the one name "conftest", so a name
imported from "conftest" would depend on which folder was collected last.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

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


# Training settings that finish an epoch on tiny images in seconds on a CPU.
FAST_TRAIN = [
    "model.pretrained=none",  # no ImageNet file in a test's cache; tests that want one place it
    "data.height=64",
    "data.width=32",
    "data.batch_size=16",
    "data.num_instances=4",
    "optim.lr=0.003",
    "schedule.name=multistep",
    "schedule.milestones=[3]",
    "schedule.warmup_epochs=1",
    "eval.every=0",
    "data.workers=0",
    "train.device=cpu",
]


def log_item_processes(monkeypatch, cls, log: Path, tag=None) -> None:
    """Make ``cls.__getitem__`` append a line "pid [tag(item)]" to ``log`` for each item it
    gives, in whichever process asks: DataLoader workers are forked and inherit the patch."""
    get = cls.__getitem__

    def logged(self, item):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}{'' if tag is None else f' {tag(item)}'}\n")
        return get(self, item)

    monkeypatch.setattr(cls, "__getitem__", logged)


@contextlib.contextmanager
def command_state_restored():
    """What an in-process command changes for the process (reidkit.threads: the thread
    variables, torch's thread count, its registration as a running command) is undone
    when the block ends: each test's commands (the autouse fixture clean_reidkit_env), and
    a session fixture's, which runs before that fixture saves the state."""
    from reidkit import threads

    saved = {key: os.environ.get(key) for key in threads.THREAD_VARIABLES}
    torch_threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if torch_threads is not None:
            sys.modules["torch"].set_num_threads(torch_threads)
        if threads._state["fd"] is not None:  # this process is no running command any more
            os.close(threads._state["fd"])
            (threads.running_folder() / str(os.getpid())).unlink(missing_ok=True)
        threads._state.update(threads=0, auto=False, fd=None, set="")


def counted(keys) -> list[str]:
    """The keys a load report counts, sorted: all but BatchNorm's batch counters."""
    return sorted(k for k in keys if not k.endswith(".num_batches_tracked"))


def query_features(cli, checkpoint: Path, data_root: Path, out: Path):
    """``reidkit extract CHECKPOINT`` on synthreid's query under DATA_ROOT into OUT (it
    must succeed): the features it wrote."""
    import h5py

    code, _, err = cli(
        "extract", checkpoint, "--dataset", "synthreid", "--root", data_root, "--out", out,
        "--subsets", "query", "--json",
    )  # fmt: skip
    assert code == 0, err
    with h5py.File(out / "synthreid-query.h5") as f:
        return f["features"][:]
