"""The CUHK03 release and preparing a folder from it: the images live inside
``cuhk03_release/cuhk-03.mat`` (MATLAB v7.3, HDF5), so the first parse extracts them as PNG
files, writes the splits of both protocols as JSON and marks the folder prepared
(:mod:`reidkit.data.layouts.cuhk03` describes the layout and reads the prepared folder)."""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from reidkit.data.sample import SUBSETS
from reidkit.errors import DataError, MissingInputError
from reidkit.fileio import file_lock, fsync_dir, replace_folder, write_text_atomic
from reidkit.progress import ProgressFn, no_progress

FORMAT_VERSION = 1
KINDS = ("labeled", "detected")
NUM_CLASSIC_SPLITS = 20
IMAGES_PER_ID = 10
IMAGES_PER_VIEW = 5  # rows 0-4 come from a pair's first camera, rows 5-9 from its second
RELEASE_MAT = "cuhk03_release/cuhk-03.mat"
MAT_KEYS = ("labeled", "detected", "testsets")
MARKER = "prepared.json"
STAGING = ".prepared.partial"
CONFIG_KEYS = ("filelist", "labels", "camId", "train_idx", "query_idx", "gallery_idx")
OBTAIN = (
    "CUHK03 has no public link: request it from its authors (CUHK), then run "
    "reidkit datasets download cuhk03 --archive cuhk03_release.zip --root {root}; for the new "
    "protocol put cuhk03_new_protocol_config_labeled.mat and "
    "cuhk03_new_protocol_config_detected.mat in {root}/cuhk03/"
)


def image_name(pair: int, pid: int, row: int) -> str:
    """The file name of one image, as the new protocol's file lists spell it.

    Args:
        pair: camera pair, 1-based.
        pid: identity within the pair, 1-based.
        row: image index within the identity, 0-based (0-4 first camera, 5-9 second).
    """
    view = 1 if row < IMAGES_PER_VIEW else 2
    return f"{pair}_{pid:03d}_{view}_{row + 1:02d}.png"


def camera_id(pair: int, view: int) -> int:
    """The 0-based camera (0..9) of a 1-based camera pair and view (1 or 2)."""
    return 2 * (pair - 1) + (view - 1)


def split_file_name(protocol: str, kind: str) -> str:
    return f"splits_{protocol}_{kind}.json"


def config_name(kind: str) -> str:
    return f"cuhk03_new_protocol_config_{kind}.mat"


def find_config(folder: Path, kind: str) -> Path | None:
    """The new protocol's config file of ``kind``, in the folder or in ``cuhk03_release/``."""
    for base in (folder, folder / "cuhk03_release"):
        path = base / config_name(kind)
        if path.is_file():
            return path
    return None


def missing_release(folder: Path) -> MissingInputError:
    return MissingInputError(
        f"cuhk03: expected {folder / RELEASE_MAT}", hint=OBTAIN.format(root=folder.parent)
    )


def read_marker(folder: Path) -> dict | None:
    """The content of ``prepared.json`` when it marks a preparation of this format, else None."""
    try:
        info = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # absent or unreadable: the folder counts as not prepared
    if isinstance(info, dict) and info.get("format") == FORMAT_VERSION:
        return info
    return None


def check_layout(folder: Path) -> None:
    """Check that ``folder`` holds ``cuhk03_release/cuhk-03.mat`` with the expected datasets.

    Raises:
        DataError: the file is missing, is not HDF5 (MATLAB v7.3), or lacks ``labeled``,
            ``detected`` or ``testsets``.
    """
    import h5py

    mat = Path(folder) / RELEASE_MAT
    if not mat.is_file():
        raise DataError(f"cuhk03: {mat} is missing; the archive should hold {RELEASE_MAT}")
    if not h5py.is_hdf5(mat):
        raise DataError(f"cuhk03: {mat} is not a MATLAB v7.3 (HDF5) file")
    try:
        with h5py.File(mat, "r") as f:
            missing = [key for key in MAT_KEYS if key not in f]
    except OSError as exc:
        raise DataError(f"cuhk03: cannot read {mat}: {exc}") from None
    if missing:
        raise DataError(f"cuhk03: {mat} lacks {', '.join(missing)}")


def prepare(folder: Path, progress: ProgressFn = no_progress) -> dict:
    """Extract the images of ``cuhk-03.mat`` and write the split files, once.

    Everything is written into ``folder/.prepared.partial`` first and moved into place when
    complete; ``prepared.json`` is written last, so an interrupted run leaves a folder that
    is prepared again from scratch next time, never a half-prepared one that looks complete.

    Args:
        folder: the dataset folder, ``<root>/cuhk03``.
        progress: called as ``progress(done, total, kind)`` over the images.

    Returns:
        The content of ``prepared.json``: format, prepared_at, classic_splits and per kind
        images, ids and missing_images. When the folder is already prepared, that file's
        content, without any work.

    Raises:
        MissingInputError: ``cuhk03_release/cuhk-03.mat`` does not exist.
        DataError: the .mat or a new-protocol config file has an unexpected structure.
    """
    folder = Path(folder)
    info = read_marker(folder)
    if info is not None:
        return info
    mat = folder / RELEASE_MAT
    if not mat.is_file():
        raise missing_release(folder)
    # wait rather than fail: several processes of one job (DDP ranks) may parse at once
    with file_lock(folder / "prepared", wait=True):
        info = read_marker(folder)  # prepared by another process while this one waited
        if info is not None:
            return info
        staging = folder / STAGING
        shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted run
        staging.mkdir()
        try:
            # the configs first: a bad one fails in a moment, not after the long extraction
            for kind in KINDS:
                config = find_config(folder, kind)
                if config is not None:
                    _write_json(
                        staging / split_file_name("new", kind), [read_new_protocol(config, kind)]
                    )
            counts = _extract(mat, staging, progress)
            _install(staging, folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        staging.rmdir()
        # the images were written without fsync (one per file would be slow): flush them
        # all before the marker can claim they are there
        os.sync()
        info = {
            "format": FORMAT_VERSION,
            "prepared_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "classic_splits": NUM_CLASSIC_SPLITS,
            "kinds": counts,
        }
        write_text_atomic(folder / MARKER, json.dumps(info, indent=2) + "\n")
    return info


def _install(staging: Path, folder: Path) -> None:
    """Move the finished contents of ``staging`` into ``folder``, dropping stale results."""
    (folder / MARKER).unlink(missing_ok=True)
    for kind in KINDS:
        stale = folder / split_file_name("new", kind)
        if not (staging / stale.name).exists():
            stale.unlink(missing_ok=True)  # its config file is gone
    for entry in sorted(staging.iterdir()):
        if entry.is_dir():
            replace_folder(entry, folder / entry.name)
        else:
            os.replace(entry, folder / entry.name)
    fsync_dir(folder)


def _write_json(path: Path, value: Any) -> None:
    # compact: a classic split file lists every image 20 times
    write_text_atomic(path, json.dumps(value, separators=(",", ":")) + "\n")


def _save_png(image: Any, path: Path) -> None:
    """Write an (H, W, 3) uint8 array as a PNG."""
    from PIL import Image

    Image.fromarray(image).save(path, format="PNG")


def _ref_array(f: Any, name: str, mat: Path) -> Any:
    """The object references of the top-level dataset ``name``, flattened."""
    import h5py
    import numpy as np

    ds = f.get(name)
    if not isinstance(ds, h5py.Dataset) or h5py.check_ref_dtype(ds.dtype) is None:
        raise DataError(f"cuhk03: {mat}: {name} is not an array of object references")
    return np.asarray(ds[()]).ravel()


def _deref(f: Any, ref: Any, where: str) -> Any:
    import h5py
    import numpy as np

    obj = f[ref] if ref else None
    if not isinstance(obj, h5py.Dataset):
        raise DataError(f"cuhk03: {where} does not refer to an array")
    return np.asarray(obj[()])


def _pair_cells(f: Any, kind: str, mat: Path) -> list[Any]:
    """Per camera pair, its (10, identities) array of image references."""
    import h5py

    cells = []
    for i, ref in enumerate(_ref_array(f, kind, mat)):
        where = f"{mat}: {kind} camera pair {i + 1}"
        cell = _deref(f, ref, where)
        if cell.ndim == 2 and cell.shape[0] != IMAGES_PER_ID and cell.shape[1] == IMAGES_PER_ID:
            cell = cell.T  # stored the other way round from what h5py shows of MATLAB cells
        if cell.ndim != 2 or cell.shape[0] != IMAGES_PER_ID or cell.dtype != h5py.ref_dtype:
            raise DataError(
                f"cuhk03: {where}: expected a 10 x identities array of references, "
                f"got shape {cell.shape}"
            )
        cells.append(cell)
    if not cells:
        raise DataError(f"cuhk03: {mat}: {kind} holds no camera pair")
    return cells


def _read_image(f: Any, ref: Any, where: str) -> Any:
    """The (H, W, 3) image a reference points at, or None for a missing image."""
    import numpy as np

    if not ref:
        return None
    arr = _deref(f, ref, where)
    # MATLAB stores an empty cell entry as a tiny placeholder (e.g. shape (2,) of zeros)
    if arr.ndim < 3 or arr.size < 3:
        return None
    if arr.ndim != 3 or arr.shape[0] != 3 or arr.dtype != np.uint8:
        raise DataError(
            f"cuhk03: {where}: expected a (3, width, height) uint8 image, "
            f"got shape {arr.shape} of {arr.dtype}"
        )
    # MATLAB writes column-major: h5py shows (channel, width, height) for (H, W, 3)
    return np.ascontiguousarray(arr.transpose(2, 1, 0))


def _read_test_sets(f: Any, mat: Path) -> list[set[tuple[int, int]]]:
    """The classic test sets as sets of 1-based (camera pair, identity within the pair)."""
    sets = []
    for i, ref in enumerate(_ref_array(f, "testsets", mat)):
        where = f"{mat}: testsets {i + 1}"
        arr = _deref(f, ref, where)
        if arr.ndim == 2 and arr.shape[0] != 2:
            arr = arr.T  # h5py shows MATLAB's 100 x 2 as 2 x 100
        if arr.ndim != 2 or arr.shape[0] != 2:
            raise DataError(f"cuhk03: {where}: expected (pair, identity) rows, got {arr.shape}")
        sets.append({(int(pair), int(pid)) for pair, pid in zip(arr[0], arr[1], strict=True)})
    if len(sets) != NUM_CLASSIC_SPLITS:
        raise DataError(
            f"cuhk03: {mat}: testsets holds {len(sets)} test sets, not {NUM_CLASSIC_SPLITS}"
        )
    return sets


def _extract(mat: Path, staging: Path, progress: ProgressFn) -> dict[str, dict[str, int]]:
    """Write both kinds' images and classic split files into ``staging``; counts per kind."""
    import h5py

    try:
        f = h5py.File(mat, "r")
    except OSError as exc:
        raise DataError(f"cuhk03: cannot read {mat} as MATLAB v7.3 (HDF5): {exc}") from None
    with f:
        missing_keys = [key for key in MAT_KEYS if key not in f]
        if missing_keys:
            raise DataError(f"cuhk03: {mat} lacks {', '.join(missing_keys)}")
        test_sets = _read_test_sets(f, mat)
        cells = {kind: _pair_cells(f, kind, mat) for kind in KINDS}
        total = sum(cell.size for kind in KINDS for cell in cells[kind])
        done = 0
        counts = {}
        for kind in KINDS:
            out = staging / f"images_{kind}"
            out.mkdir()
            records: list[tuple[str, int, int, int]] = []  # relpath, pair, pid, row
            missing = 0
            for pair, cell in enumerate(cells[kind], 1):
                for col in range(cell.shape[1]):
                    for row in range(IMAGES_PER_ID):
                        where = f"{mat}: {kind} pair {pair} identity {col + 1} image {row + 1}"
                        image = _read_image(f, cell[row, col], where)
                        if image is None:
                            missing += 1
                            continue
                        name = image_name(pair, col + 1, row)
                        _save_png(image, out / name)
                        records.append((f"{out.name}/{name}", pair, col + 1, row))
                    done += IMAGES_PER_ID
                    progress(done, total, kind)
            ids_per_pair = [cell.shape[1] for cell in cells[kind]]
            _write_json(
                staging / split_file_name("classic", kind),
                classic_splits(records, ids_per_pair, test_sets, where=f"{mat}: testsets"),
            )
            counts[kind] = {
                "images": len(records),
                "ids": len({(pair, pid) for _, pair, pid, _ in records}),
                "missing_images": missing,
            }
    return counts


def classic_splits(
    records: list[tuple[str, int, int, int]],
    ids_per_pair: list[int],
    test_sets: list[set[tuple[int, int]]],
    *,
    where: str = "testsets",
) -> list[dict[str, list]]:
    """The classic splits: per test set, its identities' images are query and gallery.

    Args:
        records: (relative path, pair, pid within the pair, row) per extracted image.
        ids_per_pair: identities per camera pair, to number identities across pairs.
        test_sets: per split, its 1-based (pair, pid within the pair) test identities.
        where: names the test sets in errors.

    Returns:
        Per split, {"train", "query", "gallery"} lists of [relative path, pid, camid], with
        pids 1-based over all pairs and camids 0..9.
    """
    offsets = [sum(ids_per_pair[:i]) for i in range(len(ids_per_pair))]
    for i, test in enumerate(test_sets):
        for pair, pid in sorted(test):
            if not (1 <= pair <= len(ids_per_pair) and 1 <= pid <= ids_per_pair[pair - 1]):
                raise DataError(
                    f"cuhk03: {where} {i + 1} names camera pair {pair} identity {pid}, "
                    "which the file does not hold"
                )
    keyed = [
        (
            (pair, pid),
            [relpath, offsets[pair - 1] + pid, camera_id(pair, 1 + row // IMAGES_PER_VIEW)],
        )
        for relpath, pair, pid, row in records
    ]
    splits = []
    for test in test_sets:
        test_entries = [entry for key, entry in keyed if key in test]
        splits.append(
            {
                "train": [entry for key, entry in keyed if key not in test],
                "query": test_entries,
                "gallery": test_entries,
            }
        )
    return splits


def _mat_string(value: Any) -> str:
    """A string from loadmat's nesting of cell arrays (arrays of one element)."""
    import numpy as np

    while isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"expected one string, got an array of shape {value.shape}")
        value = value.ravel()[0]
    return str(value).strip()


def read_new_protocol(config: Path, kind: str) -> dict[str, list]:
    """The new protocol's split from its config file.

    Returns:
        {"train", "query", "gallery"} lists of [``images_{kind}/{name}``, pid, camid], with the
        file's ``labels`` as pids and its ``camId`` made 0-based as camids.

    Raises:
        DataError: the file is unreadable or lacks a key, or its arrays do not agree.
    """
    import numpy as np
    import scipy.io

    try:
        mat = scipy.io.loadmat(config)
    except (OSError, ValueError, TypeError, NotImplementedError) as exc:
        raise DataError(f"cuhk03: cannot read {config}: {exc}") from None
    missing = [key for key in CONFIG_KEYS if key not in mat]
    if missing:
        raise DataError(f"cuhk03: {config} lacks {', '.join(missing)}")
    try:
        names = [_mat_string(v) for v in np.asarray(mat["filelist"], dtype=object).ravel()]
        labels = np.asarray(mat["labels"]).ravel().astype(np.int64)
        cams = np.asarray(mat["camId"]).ravel().astype(np.int64)
        indices = {
            subset: np.asarray(mat[f"{subset}_idx"]).ravel().astype(np.int64) for subset in SUBSETS
        }
    except (TypeError, ValueError) as exc:
        raise DataError(f"cuhk03: {config}: {exc}") from None
    n = len(names)
    if len(labels) != n or len(cams) != n:
        raise DataError(
            f"cuhk03: {config}: {n} file names but {len(labels)} labels and {len(cams)} camIds"
        )
    for name in names:
        if not name or os.path.basename(name) != name or name in (".", ".."):
            raise DataError(f"cuhk03: {config}: {name!r} is not a file name")
    cam_base = 1 if n and cams.min() >= 1 else 0  # MATLAB numbers cameras from 1
    split: dict[str, list] = {}
    for subset, idx in indices.items():
        if len(idx) and (idx.min() < 1 or idx.max() > n):
            raise DataError(
                f"cuhk03: {config}: {subset}_idx holds indices outside 1..{n} (MATLAB's 1-based)"
            )
        split[subset] = [
            [f"images_{kind}/{names[i - 1]}", int(labels[i - 1]), int(cams[i - 1] - cam_base)]
            for i in idx
        ]
    return split


def prepare_new_protocol(folder: Path, kind: str, config: Path) -> None:
    """Write the new protocol's split file of a folder prepared before its config came."""
    split_file = folder / split_file_name("new", kind)
    with file_lock(folder / "prepared", wait=True):
        if not split_file.is_file():
            _write_json(split_file, [read_new_protocol(config, kind)])
