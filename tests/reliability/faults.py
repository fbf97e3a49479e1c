"""Fault injection for reidkit: baselines, process control and the checks every fault shares.

Each command under test is a :class:`Case`: its command line inside a work folder, the
marker files that say how far a run got, and two checks. ``check_interrupted`` looks at the
final outputs right after a fault, before anything is rerun: each must be absent or whole
(never a partial file). ``check_rerun`` compares the outputs of the rerun with those of an
uninterrupted run of the same command (the baseline, recorded once per session with the
times at which its markers appeared, so that faults can be timed inside a real run).

Every subprocess runs ``python -m reidkit`` with one BLAS/OpenMP thread: reidkit's distances
and features are bit-identical between runs only for a fixed thread count.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from helpers import FAST_TRAIN, MARKET_SPEC, reidkit_argv, reidkit_env, write_market_style

TIMEOUT = 300  # seconds any single reidkit process may take, even on a loaded machine
POLL = 0.002  # seconds between looks at marker files
GRACE = 10.0  # seconds a killed run's worker processes get to go away by themselves
PARALLEL = 3  # fault scenarios run at once (each in its own folder)


def env() -> dict[str, str]:
    """The environment of every reidkit subprocess here."""
    return reidkit_env(
        OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", REIDKIT_RETRY_BACKOFF="0.01", NO_COLOR="1"
    )


@pytest.fixture(scope="session", autouse=True)
def sigint_reaches_children():
    """A shell without job control starts background jobs with SIGINT ignored, and children
    inherit that: give them the default disposition, or SIGINT tests would test nothing."""
    old = signal.getsignal(signal.SIGINT)
    if old == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    if old == signal.SIG_IGN:
        signal.signal(signal.SIGINT, old)


# --------------------------------------------------------------------------- processes


@dataclass
class Finished:
    """A reidkit process that ran to its end (or was stopped, see ``signal``)."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float  # launch to exit
    marks: dict[str, float] = field(default_factory=dict)  # marker -> seconds after launch
    signal: int | None = None  # the signal sent to it, if any
    delay: float | None = None  # seconds after the start marker the signal was due
    delivered: bool = False  # False: the run had ended before the signal was due
    late: bool = False  # the signal came after the result was printed (the work was done)
    leftovers: list[str] = field(default_factory=list)  # its processes alive after GRACE

    def describe(self) -> str:
        tail = "\n".join(self.stderr.strip().splitlines()[-6:])
        return f"exit {self.returncode}; stderr ends:\n{tail}"


def _proc_stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, state, start time) of a live process, from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[1]), fields[0], fields[19]


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, start time) of every process below ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None:
                children.setdefault(stat[0], []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            stat = _proc_stat(child)
            if stat is not None:
                found.append((child, stat[2]))
                todo.append(child)
    return found


def _alive(pid: int, started: str) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[2] == started and stat[1] not in ("Z", "X")


def reap_leftovers(procs: list[tuple[int, str]]) -> list[str]:
    """Wait up to GRACE seconds for ``procs`` to end; kill (by pid) and name those that don't."""
    deadline = time.monotonic() + GRACE
    while time.monotonic() < deadline and any(_alive(*p) for p in procs):
        time.sleep(0.05)
    left = []
    for pid, started in procs:
        if _alive(pid, started):
            try:
                left.append(Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip())
            except OSError:
                left.append(str(pid))
            os.kill(pid, signal.SIGKILL)
    return left


class Launched:
    """A reidkit process started with its output going to temporary files (never a pipe
    that could fill up while nobody reads it)."""

    def __init__(self, argv: list, cwd: Path | None = None, extra_env: dict | None = None):
        self.argv = [str(a) for a in argv]
        # closed by wait()
        self._out = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self._err = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self.start = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._out,
            stderr=self._err,
            stdin=subprocess.DEVNULL,
            env={**env(), **(extra_env or {})},
            cwd=cwd,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def has_result(self) -> bool:
        """Whether the command has printed its result (it does so once its work is done)."""
        return os.fstat(self._out.fileno()).st_size > 0

    def reached(self, marker: Marker) -> bool:
        if marker is None:
            return self.has_result()
        if isinstance(marker, OnStderr):
            return marker.text.encode() in os.pread(self._err.fileno(), 1 << 22, 0)
        return marker.exists()

    def wait(self, timeout: float = TIMEOUT) -> Finished:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        seconds = time.monotonic() - self.start
        outputs = []
        for f in (self._out, self._err):
            f.seek(0)
            outputs.append(f.read())
            f.close()
        return Finished(self.argv, self.proc.returncode, outputs[0], outputs[1], seconds)


def run_to_end(argv: list, extra_env: dict | None = None) -> Finished:
    return Launched(argv, extra_env=extra_env).wait()


RESULT = "result"  # the name of the pseudo-marker: the result appearing on stdout


@dataclass(frozen=True)
class OnStderr:
    """A marker that is a text appearing on stderr, not a file."""

    text: str


Marker = Path | OnStderr | None  # a file appearing, a text on stderr, or None: the result


def timed_run(argv: list, marks: dict[str, Marker], extra_env: dict | None = None) -> Finished:
    """Run to the end, noting when each marker was first reached (seconds after launch)."""
    launched = Launched(argv, extra_env=extra_env)
    seen: dict[str, float] = {}
    while launched.running() and time.monotonic() - launched.start < TIMEOUT:
        now = time.monotonic() - launched.start
        for name, marker in marks.items():
            if name not in seen and launched.reached(marker):
                seen[name] = now
        time.sleep(POLL)
    for name, marker in marks.items():  # reached in the last poll interval
        if name not in seen and launched.reached(marker):
            seen[name] = time.monotonic() - launched.start
    done = launched.wait()
    done.marks = seen
    return done


def signal_at(
    argv: list, start: Marker, delay: float, sig: int, extra_env: dict | None = None
) -> Finished:
    """Start ``argv``; once it reaches ``start``, wait ``delay`` seconds, then send ``sig`` to
    the main process (unless it has ended). Processes it started that outlive it by GRACE
    seconds are killed and named in ``leftovers``."""
    launched = Launched(argv, extra_env=extra_env)
    while launched.running() and not launched.reached(start):
        if time.monotonic() - launched.start > TIMEOUT:
            break
        time.sleep(POLL)
    due = time.monotonic() + delay
    while launched.running() and time.monotonic() < due:
        time.sleep(POLL)
    family: list[tuple[int, str]] = []
    delivered = late = False
    if launched.running():
        family = descendants(launched.pid)
        late = launched.has_result()
        launched.proc.send_signal(sig)
        delivered = True
    done = launched.wait()
    done.signal, done.delay, done.delivered, done.late = sig, delay, delivered, late
    done.leftovers = reap_leftovers(family)
    return done


def draw_delay(key: str, length: float) -> float:
    """A delay between 5% and 95% of ``length``, from a RNG seeded by ``key``."""
    return length * random.Random(key).uniform(0.05, 0.95)


# --------------------------------------------------------------------------- file checks


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of every file below ``folder`` by relative path (``skip``: names to leave out)."""
    return {
        p.relative_to(folder).as_posix(): sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def tree_problems(what: str, found: dict[str, str], expected: dict[str, str]) -> list[str]:
    """How ``found`` differs from ``expected`` (two results of :func:`tree`), briefly."""
    problems = []
    for label, names in (
        ("missing", sorted(expected.keys() - found.keys())),
        ("unexpected", sorted(found.keys() - expected.keys())),
        ("different", sorted(k for k in found.keys() & expected.keys() if found[k] != expected[k])),
    ):
        if names:
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            problems.append(f"{what}: {len(names)} {label} file(s) ({shown})")
    return problems


def guarded(check, *args, **kwargs) -> list[str]:
    """Run a check; an exception it raises is a problem found, not a crash of the test."""
    try:
        return check(*args, **kwargs)
    except Exception as exc:
        return [f"{check.__name__} raised {type(exc).__name__}: {exc}"]


# --------------------------------------------------------------------------- cases


class Case:
    """One command under test, run inside a work folder."""

    name = ""
    # marker name -> a path relative to the work folder, or a text on stderr
    markers: ClassVar[dict[str, str | OnStderr]] = {}
    windows: ClassVar[dict[str, tuple[str, str]]] = {
        # window -> (marker that opens it, marker that closes it): from taking the lock to
        # printing the result; what follows is the interpreter's shutdown
        "run": ("lock", RESULT),
        "after-result": (RESULT, RESULT),  # as soon as the result is out
    }
    env: ClassVar[dict[str, str]] = {}  # extra environment of its processes

    def argv(self, work: Path) -> list:
        raise NotImplementedError

    def rerun_argv(self, work: Path) -> list:
        return self.argv(work)

    def prepare(self, work: Path) -> None:
        work.mkdir(parents=True, exist_ok=True)

    def check_interrupted(self, work: Path) -> list[str]:
        """Problems with the final outputs right after a fault: each absent or whole."""
        raise NotImplementedError

    def check_rerun(self, work: Path, exact: bool = True) -> list[str]:
        """Problems with the outputs of a completed rerun, against the baseline's."""
        raise NotImplementedError

    def left_behind(self, work: Path) -> Any:
        """What an interrupted run left for its rerun to continue from (read right after the
        fault); None where the command keeps nothing of an unfinished run."""
        return None

    def check_resumed(self, left: Any, rerun_stdout: str) -> list[str]:
        """Problems with what a completed rerun says it took over of ``left``."""
        return []

    def marker(self, work: Path, name: str) -> Marker:
        if name == RESULT:
            return None
        spec = self.markers[name]
        return spec if isinstance(spec, OnStderr) else work / spec

    # the uninterrupted run
    def record_baseline(self, work: Path) -> None:
        self.prepare(work)
        marks = {name: self.marker(work, name) for name in [*self.markers, RESULT]}
        self.baseline = timed_run(self.argv(work), marks, self.env)
        if self.baseline.returncode != 0:
            pytest.fail(f"{self.name}: the uninterrupted run failed: {self.baseline.describe()}")
        missing = set(marks) - set(self.baseline.marks)
        if missing:
            pytest.fail(f"{self.name}: the uninterrupted run never showed {sorted(missing)}")
        self.base_work = work

    def window(self, name: str) -> tuple[str, float]:
        """(the marker opening it, seconds the window lasted in the uninterrupted run)."""
        opens, closes = self.windows[name]
        return opens, max(0.0, self.baseline.marks[closes] - self.baseline.marks[opens])


class SynthCase(Case):
    name = "synth"
    markers: ClassVar = {"lock": "data/.synthreid.lock"}

    def argv(self, work: Path) -> list:
        return reidkit_argv(
            "datasets", "synth", "--root", work / "data", "--preset", "tiny", "--workers", "2",
            "--json",
        )  # fmt: skip

    def record_baseline(self, work: Path) -> None:
        super().record_baseline(work)
        self.root = work / "data"
        self.tree = tree(self.root / "synthreid")

    def check_interrupted(self, work: Path) -> list[str]:
        final = work / "data" / "synthreid"
        if not final.exists():
            return []
        return tree_problems("synthreid (exists, so must be complete)", tree(final), self.tree)

    def check_rerun(self, work: Path, exact: bool = True) -> list[str]:
        data = work / "data"
        problems = tree_problems("synthreid", tree(data / "synthreid"), self.tree)
        for stale in (".synthreid.partial", ".synthreid.old"):
            if (data / stale).exists():
                problems.append(f"{stale} left behind after a complete rerun")
        return problems


class TrainCase(Case):
    """A 2-epoch deterministic training (one BLAS thread) at 32x16; the rerun is
    ``reidkit resume``."""

    name = "train"
    markers: ClassVar = {
        "lock": ".run.lock",
        "step": OnStderr("train epoch 1/"),  # the first step's progress line
        "checkpoint": "run/weights/last.pt",  # the first epoch's checkpoint
    }
    windows: ClassVar = {
        "run": ("lock", RESULT),
        "start-up": ("lock", "step"),  # data, model, config: before the first step
        "before-checkpoint": ("lock", "checkpoint"),
        "training": ("step", RESULT),
        "after-checkpoint": ("checkpoint", RESULT),
        "after-result": (RESULT, RESULT),
    }
    env: ClassVar = {"REIDKIT_PROGRESS_INTERVAL": "0"}  # a progress line after every step
    epochs = 2

    def __init__(self, data_root: Path) -> None:
        self.data_root = data_root

    def argv(self, work: Path) -> list:
        return reidkit_argv(
            "train", "--dataset", "synthreid", "--root", self.data_root, "--model",
            "osnet_x0_25", "--run", work / "run", "--epochs", str(self.epochs),
            "--deterministic", *FAST_TRAIN, "data.height=32", "data.width=16", "--json",
        )  # fmt: skip

    def rerun_argv(self, work: Path) -> list:
        return reidkit_argv("resume", work / "run", "--json")

    def record_baseline(self, work: Path) -> None:
        from reidkit.models.checkpoint import load_checkpoint

        super().record_baseline(work)
        self.checkpoint_path = work / "run" / "weights" / "last.pt"
        self.checkpoint = load_checkpoint(self.checkpoint_path)

    def check_interrupted(self, work: Path) -> list[str]:
        from reidkit.config import load_config
        from reidkit.errors import ReidkitError
        from reidkit.models.checkpoint import load_checkpoint

        run_dir = work / "run"
        problems = []
        for name in ("last.pt", "best.pt"):
            path = run_dir / "weights" / name
            if path.exists():
                try:
                    ckpt = load_checkpoint(path)
                except ReidkitError as exc:
                    problems.append(f"weights/{name} exists but does not load: {exc.message}")
                    continue
                if not 0 <= ckpt["epoch"] <= self.epochs:
                    problems.append(f"weights/{name}: epoch {ckpt['epoch']}")
        if (run_dir / "config.yaml").exists():
            try:
                load_config(run_dir / "config.yaml")
            except ReidkitError as exc:
                problems.append(f"config.yaml exists but does not load: {exc.message}")
        if (run_dir / "metrics.csv").exists():
            with open(run_dir / "metrics.csv", newline="") as f:
                epochs = [row["epoch"] for row in csv.DictReader(f)]
            if epochs != [str(i) for i in range(1, len(epochs) + 1)]:
                problems.append(f"metrics.csv holds epochs {epochs}")
        return problems

    def check_rerun(self, work: Path, exact: bool = True) -> list[str]:
        """``exact``: the final weights must equal the uninterrupted run's (reidkit promises
        this for a resume from an epoch boundary, which is where a SIGKILL leaves a run)."""
        import torch

        from reidkit.models.checkpoint import load_checkpoint

        ckpt = load_checkpoint(work / "run" / "weights" / "last.pt")
        base = self.checkpoint
        problems = []
        if (ckpt["epoch"], ckpt["step"]) != (base["epoch"], base["step"]):
            problems.append(
                f"last.pt at epoch {ckpt['epoch']} step {ckpt['step']}, "
                f"the uninterrupted run's at epoch {base['epoch']} step {base['step']}"
            )
        if exact:
            differ = [
                k
                for k, t in base["state_dict"].items()
                if not torch.equal(t, ckpt["state_dict"].get(k, torch.empty(0)))
            ]
            if differ:
                problems.append(
                    f"final weights differ from the uninterrupted run's in {len(differ)} of "
                    f"{len(base['state_dict'])} tensors (first: {differ[0]})"
                )
        return problems


def chunk_rows(chunk: Path) -> int:
    """The rows in one chunk file of a feature file's ``.partial/`` folder."""
    with np.load(chunk) as data:
        return len(data["pids"])


class ExtractCase(Case):
    """Features of the tiny dataset's query and gallery from the baseline training's
    checkpoint, at 64x32 (not the checkpoint's 32x16: the windows the faults are aimed in
    stay as long as before), on the CPU, in batches of 2 (a chunk is flushed every 32
    rows)."""

    name = "extract"
    markers: ClassVar = {
        # a run takes its files' locks in sorted order before writing: the gallery's first
        "lock": "feats/.synthreid-gallery.h5.lock",
        "chunk": "feats/synthreid-query.h5.partial/chunk-000000.npz",  # the first 32 rows
    }
    windows: ClassVar = {**Case.windows, "first-chunk": ("chunk", "chunk")}  # as it appears
    subsets = ("query", "gallery")

    def __init__(self, checkpoint: Path, data_root: Path) -> None:
        self.checkpoint, self.data_root = checkpoint, data_root

    def argv(self, work: Path, *extra) -> list:
        return reidkit_argv(
            "extract", self.checkpoint, "--dataset", "synthreid", "--root", self.data_root,
            "--out", work / "feats", "--height", "64", "--width", "32", "--batch-size", "2",
            "--device", "cpu", "--json", *extra,
        )  # fmt: skip

    def files(self, work: Path) -> dict[str, Path]:
        return {s: work / "feats" / f"synthreid-{s}.h5" for s in self.subsets}

    def record_baseline(self, work: Path) -> None:
        from reidkit.features.store import read_features

        super().record_baseline(work)
        self.paths = self.files(work)
        self.features = {s: read_features(p) for s, p in self.paths.items()}

    def _compare(self, subset: str, path: Path) -> list[str]:
        from reidkit.errors import ReidkitError
        from reidkit.features.store import read_features

        try:
            fs = read_features(path)
        except ReidkitError as exc:
            return [f"{path.name} exists but is not a valid feature file: {exc.message}"]
        base = self.features[subset]
        problems = []
        if fs.attrs.get("complete") is not True:
            problems.append(f"{path.name} is not marked complete")
        for name in ("features", "pids", "camids", "dsetids"):
            if not np.array_equal(getattr(fs, name), getattr(base, name)):
                problems.append(f"{path.name}: /{name} differs from the uninterrupted run's")
        if fs.paths != base.paths:
            problems.append(f"{path.name}: /paths differs from the uninterrupted run's")
        return problems

    def check_interrupted(self, work: Path) -> list[str]:
        problems = []
        for subset, path in self.files(work).items():
            if path.exists():
                problems += self._compare(subset, path)
        return problems

    def left_behind(self, work: Path) -> dict[str, int]:
        """The rows of each unfinished subset in its whole chunks (``<file>.partial/``)."""
        left = {}
        for subset, path in self.files(work).items():
            chunks = sorted(path.with_name(path.name + ".partial").glob("chunk-*.npz"))
            if not path.exists() and chunks:
                left[subset] = sum(chunk_rows(chunk) for chunk in chunks)
        return left

    def check_resumed(self, left: dict[str, int], rerun_stdout: str) -> list[str]:
        """The rerun continues after the chunks the killed run flushed: it resumes exactly
        their rows, extracting none of them again."""
        resumed = {f["subset"]: f["resumed"] for f in json.loads(rerun_stdout)["files"]}
        return [
            f"synthreid-{subset}.h5: the rerun resumed {resumed.get(subset)} rows, the killed "
            f"run had left {rows} in whole chunks"
            for subset, rows in left.items()
            if resumed.get(subset) != rows
        ]

    def check_rerun(self, work: Path, exact: bool = True) -> list[str]:
        problems = []
        for subset, path in self.files(work).items():
            if not path.exists():
                problems.append(f"{path.name} missing after the rerun")
                continue
            problems += self._compare(subset, path)
            if path.with_name(path.name + ".partial").exists():
                problems.append(f"{path.name}.partial left behind after a complete rerun")
        return problems


def visrank_summary(folder: Path) -> dict:
    """summary.json without what differs between two runs of the same work (time, --out)."""
    summary = json.loads((folder / "summary.json").read_text())
    summary.pop("seconds", None)
    summary.pop("out", None)
    return summary


class VisrankCase(Case):
    """visrank into an --out that already holds an earlier visrank output (other options):
    after a fault it must hold that earlier output or the complete new one."""

    name = "visrank"
    markers: ClassVar = {"lock": ".vis.lock"}

    def __init__(self, query: Path, gallery: Path, earlier: Path | None = None) -> None:
        self.query, self.gallery, self.earlier = query, gallery, earlier

    def argv(self, work: Path, *extra) -> list:
        return reidkit_argv(
            "visrank", self.query, self.gallery, "--out", work / "vis", "--workers", "2",
            "--json", *extra,
        )  # fmt: skip

    def prepare(self, work: Path) -> None:
        work.mkdir(parents=True, exist_ok=True)
        if self.earlier is not None:
            shutil.copytree(self.earlier, work / "vis")

    def record_baseline(self, work: Path) -> None:
        super().record_baseline(work)
        out = work / "vis"
        self.tree = tree(out, skip=("summary.json",))
        self.summary = visrank_summary(out)
        self.earlier_tree = tree(self.earlier) if self.earlier else None

    def _new_output_problems(self, out: Path) -> list[str]:
        problems = tree_problems("--out", tree(out, skip=("summary.json",)), self.tree)
        if not (out / "summary.json").is_file():
            problems.append("--out has no summary.json")
        elif visrank_summary(out) != self.summary:
            problems.append("summary.json differs from the uninterrupted run's")
        return problems

    def check_interrupted(self, work: Path) -> list[str]:
        out = work / "vis"
        if not out.exists() or (self.earlier_tree and tree(out) == self.earlier_tree):
            return []
        problems = self._new_output_problems(out)
        if problems:
            return ["--out holds neither the earlier output nor a complete new one", *problems]
        return []

    def check_rerun(self, work: Path, exact: bool = True) -> list[str]:
        problems = self._new_output_problems(work / "vis")
        for stale in (".vis.partial", ".vis.old"):
            if (work / stale).exists():
                problems.append(f"{stale} left behind after a complete rerun")
        return problems


class DownloadCase(Case):
    """``datasets download market1501 --url`` from the local, throttled HTTP server."""

    name = "download"
    markers: ClassVar = {"lock": "data/.market1501.lock"}

    def __init__(self, url: str, archive: bytes) -> None:
        self.url, self.archive_sha = url, hashlib.sha256(archive).hexdigest()
        self.archive_size = len(archive)

    def argv(self, work: Path) -> list:
        return reidkit_argv(
            "datasets", "download", "market1501", "--root", work / "data", "--url", self.url,
            "--sha256", self.archive_sha, "--json",
        )  # fmt: skip

    def record_baseline(self, work: Path) -> None:
        super().record_baseline(work)
        target = work / "data" / "market1501"
        self.tree = tree(target, skip=(".reidkit-install.json",))
        self.install_marker = json.loads((target / ".reidkit-install.json").read_text())

    def _installed_problems(self, target: Path) -> list[str]:
        problems = tree_problems(
            "market1501", tree(target, skip=(".reidkit-install.json",)), self.tree
        )
        try:
            marker = json.loads((target / ".reidkit-install.json").read_text())
        except (OSError, ValueError) as exc:
            return [*problems, f"no readable .reidkit-install.json ({exc})"]
        if marker.get("sha256") != self.archive_sha or marker.get("size") != self.archive_size:
            problems.append(
                f"the marker records sha256 {marker.get('sha256')} size {marker.get('size')}, "
                f"the archive has {self.archive_sha} size {self.archive_size}"
            )
        same = {k: v for k, v in marker.items() if k != "installed"}
        if same != {k: v for k, v in self.install_marker.items() if k != "installed"}:
            problems.append("the marker differs from the uninterrupted run's")
        return problems

    def check_interrupted(self, work: Path) -> list[str]:
        data = work / "data"
        problems = []
        if (data / "market1501").exists():
            problems += self._installed_problems(data / "market1501")
        archive = data / ".downloads" / "m.zip"  # published only once verified
        if archive.exists() and sha256(archive) != self.archive_sha:
            problems.append(".downloads/m.zip exists with a wrong sha256 (a partial archive)")
        return problems

    def check_rerun(self, work: Path, exact: bool = True) -> list[str]:
        data = work / "data"
        problems = self._installed_problems(data / "market1501")
        left = sorted(p.name for p in (data / ".downloads").glob("*"))
        if left:
            problems.append(f".downloads still holds {left} after a complete install")
        if (data / ".market1501.partial").exists():
            problems.append(".market1501.partial left behind after a complete install")
        return problems


# --------------------------------------------------------------------------- HTTP server


class ThrottledHandler(BaseHTTPRequestHandler):
    """Serves ``routes`` (path -> bytes) with Range support, ``rate`` bytes per second."""

    routes: ClassVar[dict[str, bytes]] = {}
    rate: ClassVar[float] = 4e6
    piece = 1 << 16

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        body = self.routes.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        ranged = self.headers.get("Range")
        if ranged:
            start = int(ranged.removeprefix("bytes=").split("-")[0])
        if start >= len(body):
            self.send_error(416)
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        try:
            for at in range(start, len(body), self.piece):
                self.wfile.write(body[at : at + self.piece])
                time.sleep(self.piece / self.rate)
        except (BrokenPipeError, ConnectionResetError):  # the client was killed
            pass


def market_zip(tmp: Path, filler: int = 3 << 20) -> bytes:
    """A Market-1501 release zip of the fixture images, plus ``filler`` incompressible bytes
    beside the subset folders (the parser ignores them) so that the download spans several
    of reidkit's 1 MiB write blocks and a killed transfer leaves a partial file to resume."""
    src = tmp / "src" / "Market-1501-v15.09.15"
    write_market_style(src, MARKET_SPEC)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for path in sorted(src.rglob("*")):
            z.write(path, path.relative_to(src.parent).as_posix())
        filler_bytes = np.random.default_rng(0).bytes(filler)
        z.writestr("Market-1501-v15.09.15/filler.bin", filler_bytes, zipfile.ZIP_STORED)
    return buf.getvalue()


@pytest.fixture(scope="session")
def http_server(tmp_path_factory):
    """(URL of a throttled Market-1501 archive on 127.0.0.1, the archive's bytes)."""
    archive = market_zip(tmp_path_factory.mktemp("archive"))
    handler = type("Handler", (ThrottledHandler,), {"routes": {"/m.zip": archive}})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/m.zip", archive
    httpd.shutdown()
    httpd.server_close()


# --------------------------------------------------------------------------- baselines


@pytest.fixture(scope="session")
def synth_case(tmp_path_factory) -> SynthCase:
    case = SynthCase()
    case.record_baseline(tmp_path_factory.mktemp("synth-baseline"))
    return case


@pytest.fixture(scope="session")
def train_case(synth_case, tmp_path_factory) -> TrainCase:
    case = TrainCase(synth_case.root)
    case.record_baseline(tmp_path_factory.mktemp("train-baseline"))
    return case


@pytest.fixture(scope="session")
def extract_case(train_case, synth_case, tmp_path_factory) -> ExtractCase:
    case = ExtractCase(train_case.checkpoint_path, synth_case.root)
    case.record_baseline(tmp_path_factory.mktemp("extract-baseline"))
    return case


@pytest.fixture(scope="session")
def visrank_case(extract_case, tmp_path_factory) -> VisrankCase:
    query, gallery = extract_case.paths["query"], extract_case.paths["gallery"]
    earlier = tmp_path_factory.mktemp("visrank-earlier") / "vis"
    made = run_to_end(
        VisrankCase(query, gallery).argv(
            earlier.parent, "--order", "best", "--topk", "5", "--num-queries", "8", "--no-plots"
        )
    )
    if made.returncode != 0:
        pytest.fail(f"visrank: the earlier output could not be made: {made.describe()}")
    case = VisrankCase(query, gallery, earlier)
    case.record_baseline(tmp_path_factory.mktemp("visrank-baseline"))
    return case


@pytest.fixture(scope="session")
def download_case(http_server, tmp_path_factory) -> DownloadCase:
    url, archive = http_server
    case = DownloadCase(url, archive)
    case.record_baseline(tmp_path_factory.mktemp("download-baseline"))
    return case
