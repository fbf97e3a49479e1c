"""MARS (Zheng et al., "MARS: A Video Benchmark for Large-Scale Person Re-identification",
ECCV 2016): 1,261 identities, 6 cameras, 8,298 train + 1,980 query + 9,330 gallery
tracklets.

Layout under ``<root>/mars/``: ``bbox_train/PPPP/`` and ``bbox_test/PPPP/`` hold the frames,
named ``PPPPCcTttttFfff.jpg`` (pid, camera, tracklet, frame; pid ``00-1`` is junk, ``0000``
distractors); ``info/`` holds the authors' lists: ``train_name.txt`` and ``test_name.txt``
(every frame name, in order) and three MATLAB files: ``tracks_train_info.mat`` /
``tracks_test_info.mat`` (``track_train_info`` / ``track_test_info``: one row per tracklet,
(start, end, pid, camera), start and end 1-based and inclusive rows of the name list) and
``query_IDX.mat`` (``query_IDX``: the 1-based rows of the test tracks that are queries; the
other test tracks are the gallery). Tracklets of pid -1 are junk, kept apart; pid 0
tracklets are distractors, valid gallery negatives.
"""

from __future__ import annotations

import os
from pathlib import Path

from reidkit.data.sample import Dataset, DatasetSpec, Tracklet, make_dataset
from reidkit.errors import DataError, MissingInputError

NAME = "mars"
CAMERAS = 6
INFO = {
    "train_names": "info/train_name.txt",
    "test_names": "info/test_name.txt",
    "train_tracks": "info/tracks_train_info.mat",
    "test_tracks": "info/tracks_test_info.mat",
    "query": "info/query_IDX.mat",
}
OBTAIN = (
    "MARS is shared by its authors through their project page (no stable public link): put "
    "bbox_train/, bbox_test/ and info/ (github.com/liangzheng06/MARS-evaluation) into "
    "{root}/mars/"
)


def _pid_text(pid: int) -> str:
    return "00-1" if pid == -1 else f"{pid:04d}"


def _mat(folder: Path, relpath: str, key: str):
    from scipy.io import loadmat

    path = folder / relpath
    try:
        value = loadmat(path)[key]
    except KeyError:
        raise DataError(f"{path}: no variable {key!r} in it") from None
    except Exception as exc:  # scipy raises several types for files that are not .mat
        raise DataError(f"{path}: not a MATLAB file ({exc})") from None
    return value


def _names(path: Path) -> list[str]:
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


def _on_disk(image_dir: Path) -> set[str]:
    """Every frame name under ``image_dir``'s pid folders (one listing per folder)."""
    found: set[str] = set()
    with os.scandir(image_dir) as pids:
        for entry in pids:
            if entry.is_dir():
                found.update(os.listdir(entry.path))
    return found


def _tracklets(
    folder: Path, image_dir: str, names: list[str], tracks, where: str
) -> list[Tracklet]:
    """One Tracklet per row of a tracks table, its frames checked against the row's pid
    and camera and against the files on disk."""
    if tracks.ndim != 2 or tracks.shape[1] != 4:
        raise DataError(f"{where}: expected rows of (start, end, pid, camera), got {tracks.shape}")
    on_disk = _on_disk(folder / image_dir)
    out = []
    for row, (start, end, pid, cam) in enumerate(tracks.astype(int).tolist(), 1):
        if not 1 <= start <= end <= len(names):
            raise DataError(
                f"{where} row {row}: frames {start}..{end} are outside the "
                f"{len(names)} names of its list"
            )
        if not 1 <= cam <= CAMERAS or pid < -1:
            raise DataError(f"{where} row {row}: pid {pid}, camera {cam} is not a MARS track")
        frames = names[start - 1 : end]
        prefix = f"{_pid_text(pid)}C{cam}"
        stray = next((n for n in frames if not n.startswith(prefix)), None)
        if stray is not None:
            raise DataError(f"{where} row {row}: frame {stray} is not of pid {pid} in camera {cam}")
        missing = next((n for n in frames if n not in on_disk), None)
        if missing is not None:
            raise DataError(
                f"{where} row {row}: frame {missing} is not in {folder / image_dir}",
                hint="is the archive fully extracted?",
            )
        paths = tuple(os.path.join(folder, image_dir, n[:4], n) for n in frames)
        out.append(Tracklet(paths, pid, cam - 1))
    return out


def parse(folder: Path) -> Dataset:
    """Parse MARS from ``<root>/mars``.

    Raises:
        MissingInputError: a folder or info file is missing (the message names it).
        DataError: an info file is malformed or names a frame that is not on disk.
    """
    for needed in ("bbox_train", "bbox_test", *INFO.values()):
        if not (folder / needed).exists():
            raise MissingInputError(
                f"mars: {folder / needed} is missing", hint=OBTAIN.format(root=folder.parent)
            )
    train_names = _names(folder / INFO["train_names"])
    test_names = _names(folder / INFO["test_names"])
    train_tracks = _mat(folder, INFO["train_tracks"], "track_train_info")
    test_tracks = _mat(folder, INFO["test_tracks"], "track_test_info")
    query_rows = _mat(folder, INFO["query"], "query_IDX").reshape(-1).astype(int)
    if query_rows.size and not (query_rows.min() >= 1 and query_rows.max() <= len(test_tracks)):
        raise DataError(
            f"{folder / INFO['query']}: query rows must be 1 to {len(test_tracks)} "
            f"(the test tracks), found {query_rows.min()}..{query_rows.max()}"
        )
    train = _tracklets(folder, "bbox_train", train_names, train_tracks, INFO["train_tracks"])
    test = _tracklets(folder, "bbox_test", test_names, test_tracks, INFO["test_tracks"])
    is_query = set((query_rows - 1).tolist())
    return make_dataset(
        NAME,
        folder,
        {
            "train": train,
            "query": [t for i, t in enumerate(test) if i in is_query],
            "gallery": [t for i, t in enumerate(test) if i not in is_query],
        },
        zero_is_distractor=True,
        camera_base=1,
    )


SPEC = DatasetSpec(
    name=NAME,
    folder="mars",
    description="MARS (video): 625 + 636 ids, 6 cameras, 8298 / 1980 / 9330 tracklets",
    obtain=OBTAIN,
    parse=parse,
)
