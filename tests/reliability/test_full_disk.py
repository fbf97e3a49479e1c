"""A full disk: ENOSPC while reidkit writes an output, injected in-process at one writer.

A small filesystem cannot be mounted without root, so each test patches one write seam for
the length of one in-process command. The patched writer creates the file it is asked for,
as a real disk does, and sends the bytes to /dev/full, where the kernel answers the write
with ENOSPC: the real error from a real write, raised inside reidkit's own atomic-write code
and carried through its real error handling to the CLI's exit code. Two seams raise
OSError(ENOSPC) themselves instead: h5py (its file-object driver on /dev/full crashes the
interpreter); the checkpoint's bytes are written onto /dev/full.

Each test starts from a complete output of a successful run, then runs the command again
with the fault (with --force, or with other options into the same output) and expects exit
1, one ``error:`` line that says the disk is full as ``reidkit.fileio.describe_os_error``
words it ("no space left on device while writing PATH"), no traceback, and the earlier
output unchanged byte for byte.
"""

from __future__ import annotations

import builtins
import errno
import os
import shutil
from pathlib import Path

import pytest
from faults import tree, tree_problems

DEV_FULL = "/dev/full"


def _open_on_full_disk(real_open=builtins.open):
    """An ``open`` whose files for writing are created but whose bytes go to /dev/full."""

    def open_on_full_disk(file, mode="r", *args, **kwargs):
        if mode[:1] not in ("w", "a", "x"):
            return real_open(file, mode, *args, **kwargs)
        real_open(file, "wb").close()
        if "b" in mode:
            return real_open(DEV_FULL, "wb", buffering=0)
        return real_open(DEV_FULL, "w", *args, **kwargs)

    return open_on_full_disk


def fill_disk_for_open(monkeypatch, module) -> None:
    """Files that ``module`` opens for writing with the builtin ``open`` hit a full disk."""
    monkeypatch.setattr(module, "open", _open_on_full_disk(), raising=False)


def fill_disk_for_hdf5(monkeypatch) -> None:
    """Creating an HDF5 file through ``h5py.File`` fails as on a full disk: the file is
    created, then h5py raises the OSError(ENOSPC) it makes of HDF5's write error (h5py's
    own file-object driver on /dev/full crashes the interpreter, so the error is raised
    here). Reading is untouched."""
    import h5py

    real_file = h5py.File

    def file_on_full_disk(name, mode="r", *args, **kwargs):
        if mode == "r":
            return real_file(name, mode, *args, **kwargs)
        Path(name).touch()
        raise OSError(
            errno.ENOSPC,
            "Unable to synchronously create file (file write failed: errno = 28, "
            "error message = 'No space left on device')",
        )

    monkeypatch.setattr(h5py, "File", file_on_full_disk)


def fill_disk_for_pictures(monkeypatch) -> None:
    """Pictures saved to a path by PIL hit a full disk."""
    from PIL import Image

    real_save = Image.Image.save

    def save_on_full_disk(self, fp, format=None, **params):
        if not isinstance(fp, (str, os.PathLike)):
            return real_save(self, fp, format, **params)
        Path(fp).touch()
        with open(DEV_FULL, "wb", buffering=0) as f:
            return real_save(self, f, format, **params)

    monkeypatch.setattr(Image.Image, "save", save_on_full_disk)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """In-process commands use one thread, as the subprocesses of these tests do (several
    OpenMP threads on a busy 2-core machine are many times slower than one)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def full_disk_problems(code: int, err: str, output: Path | None = None) -> list[str]:
    """Exit 1 and one line saying the disk is full, naming a path inside ``output`` (the
    command's output folder) when given: "while writing a file" tells the user nothing."""
    problems = []
    if code != 1:
        problems.append(f"exit {code}, not 1")
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    if len(errors) != 1:
        problems.append(f"{len(errors)} 'error:' lines, not one")
    elif not errors[0].startswith("error: no space left on device"):
        problems.append(
            "the error does not say the disk is full as reidkit.fileio.describe_os_error "
            f"words it ('no space left on device while writing PATH'): {errors[0]!r}"
        )
    elif output is not None and f"while writing {output}" not in errors[0]:
        problems.append(f"the error does not name the file it was writing in {output}")
    if "Traceback" in err:
        problems.append("a traceback on stderr")
    return problems


def leftover_problems(folder: Path) -> list[str]:
    """Hidden partial files or folders a failed run left in ``folder``: on a full disk they
    keep it full."""
    left = sorted(
        p.name for p in folder.iterdir() if p.name.startswith(".") and "partial" in p.name
    )
    return [f"left behind in {folder}: {left}"] if left else []


def unchanged_problems(
    what: str, before: dict[str, str], folder: Path, *, whole: bool = False
) -> list[str]:
    """Each earlier file of ``folder`` unchanged; ``whole``: and nothing added (a folder
    that is one output, as visrank's --out)."""
    if not folder.exists():
        return [f"{what}: the earlier output is gone"]
    now = tree(folder)
    if not whole:
        now = {name: digest for name, digest in now.items() if name in before}
    return tree_problems(f"{what} (the earlier output)", now, before)


def verdict(problems: list[str], err: str) -> None:
    assert not problems, "\n- ".join(["", *problems]) + f"\nstderr:\n{err}"


# --------------------------------------------------------------------------- extract


@pytest.mark.parametrize("how", ["--force", "--flip"])
@pytest.mark.parametrize("seam", ["chunk file", "hdf5 file"])
def test_extract_on_a_full_disk_keeps_the_earlier_features(
    extract_case, tmp_path, monkeypatch, cli, seam, how
):
    """The feature writer's chunk files (np.savez into reidkit.features.writer's open), or
    the final HDF5 file (h5py). --force redoes the same work; --flip changes the options,
    so the same files are rewritten without --force."""
    from reidkit.features import writer

    out = tmp_path / "feats"
    out.mkdir()
    for path in extract_case.paths.values():
        shutil.copy2(path, out / path.name)  # the output of a successful run
    before = tree(out)
    with monkeypatch.context() as patch:
        if seam == "chunk file":
            fill_disk_for_open(patch, writer)
        else:
            fill_disk_for_hdf5(patch)
        code, _, err = cli(
            "extract", extract_case.checkpoint, "--dataset", "synthreid", "--root",
            extract_case.data_root, "--out", out, "--device", "cpu", how,
        )  # fmt: skip
    problems = full_disk_problems(code, err, out)
    problems += unchanged_problems("--out", before, out)
    verdict(problems, err)


# --------------------------------------------------------------------------- evaluate


def test_evaluate_per_query_on_a_full_disk_keeps_the_earlier_csv(
    extract_case, tmp_path, monkeypatch, cli
):
    """The --per-query CSV (reidkit.fileio.atomic_open)."""
    from reidkit import fileio

    csv_path = tmp_path / "per-query.csv"
    query, gallery = extract_case.paths["query"], extract_case.paths["gallery"]
    code, _, err = cli("evaluate", query, gallery, "--device", "cpu", "--per-query", csv_path)
    assert code == 0, err
    before = csv_path.read_bytes()
    with monkeypatch.context() as patch:
        fill_disk_for_open(patch, fileio)
        code, _, err = cli(
            "evaluate", query, gallery, "--device", "cpu", "--per-query", csv_path, "--rerank"
        )
    problems = full_disk_problems(code, err)
    if not csv_path.exists():
        problems.append("the earlier --per-query CSV is gone")
    elif csv_path.read_bytes() != before:
        problems.append("the earlier --per-query CSV changed")
    verdict(problems, err)


# --------------------------------------------------------------------------- visrank


@pytest.mark.parametrize("seam", ["ranked.csv", "pictures"])
def test_visrank_on_a_full_disk_keeps_the_earlier_output(
    visrank_case, tmp_path, monkeypatch, cli, seam
):
    """ranked.csv (reidkit.fileio.atomic_open), or the ranked-list pictures (PIL). The
    second run asks for other options (--topk 5) into the same --out."""
    from reidkit import fileio

    out = tmp_path / "vis"
    shutil.copytree(visrank_case.base_work / "vis", out)  # the output of a successful run
    before = tree(out)
    with monkeypatch.context() as patch:
        if seam == "ranked.csv":
            fill_disk_for_open(patch, fileio)
        else:
            fill_disk_for_pictures(patch)
        code, _, err = cli(
            "visrank", visrank_case.query, visrank_case.gallery, "--out", out, "--topk", "5",
            "--workers", "1", "--device", "cpu",
        )  # fmt: skip
    problems = full_disk_problems(code, err, tmp_path)
    problems += unchanged_problems("--out", before, out, whole=True)
    problems += leftover_problems(tmp_path)
    verdict(problems, err)


# --------------------------------------------------------------------------- train


@pytest.fixture
def restore_torch_determinism():
    """An in-process --deterministic run switches torch's deterministic algorithms on for
    the whole process: switch them back for the tests that follow."""
    import torch

    was = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(was)


def test_train_checkpoint_on_a_full_disk_keeps_the_earlier_checkpoint(
    train_case, tmp_path, monkeypatch, cli, restore_torch_determinism
):
    """Saving weights/last.pt after one more epoch of a finished 2-epoch run (``resume
    --max-epoch 3``) onto a full disk: the checkpoint's bytes go to /dev/full, so the
    kernel's own ENOSPC reaches reidkit. (torch.save serialises into memory first; its
    C++ writer on a full disk raised an unhelpful RuntimeError, found by this test.)"""
    import builtins

    from reidkit.models import checkpoint as checkpoint_module

    run_dir = tmp_path / "run"
    shutil.copytree(train_case.base_work / "run", run_dir)  # a successful 2-epoch run
    before = tree(run_dir / "weights")

    def open_on_full_disk(name, mode="r", *args, **kwargs):
        if "w" not in mode:
            return builtins.open(name, mode, *args, **kwargs)
        Path(name).touch()
        return builtins.open(DEV_FULL, mode, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint_module, "open", open_on_full_disk, raising=False)
        code, _, err = cli("resume", run_dir, "--max-epoch", "3")
    problems = full_disk_problems(code, err)
    problems += unchanged_problems("weights/", before, run_dir / "weights")
    verdict(problems, err)
