"""What the video dataset parsers share: a tracklet folder's frames in time order, a subset
folder of tracklet folders, and the person splits of iLIDS-VID and PRID2011 (drawn once
from a seed and stored in the dataset's folder, so that every later parse, and every
machine the folder is copied to, sees the same splits).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

from reidkit.data.layouts.market import IMAGE_SUFFIXES, NamingRule
from reidkit.data.sample import Tracklet
from reidkit.errors import DataError, ReidkitError
from reidkit.fileio import write_text_atomic

log = logging.getLogger(__name__)

SPLITS_FORMAT = "reidkit.splits/1"
_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key that orders the numbers in a name by value: F9 before F10."""
    return tuple(int(part) if part.isdigit() else part for part in _DIGITS.split(name))


def frames_in(folder: str | os.PathLike[str], suffixes=IMAGE_SUFFIXES) -> tuple[str, ...]:
    """The image files directly in ``folder`` as absolute paths, in time order (the frame
    numbers in their names, compared as numbers)."""
    with os.scandir(folder) as entries:
        names = [
            e.name
            for e in entries
            if e.is_file() and os.path.splitext(e.name)[1].lower() in suffixes
        ]
    return tuple(os.path.join(folder, n) for n in sorted(names, key=natural_key))


def subfolders(folder: str | os.PathLike[str]) -> list[str]:
    """Names of the folders directly in ``folder``, in natural order (hidden ones left out)."""
    with os.scandir(folder) as entries:
        names = [e.name for e in entries if e.is_dir() and not e.name.startswith(".")]
    return sorted(names, key=natural_key)


def scan_tracklet_folders(folder: Path, rule: NamingRule) -> tuple[list[Tracklet], list[str]]:
    """Tracklets of a subset folder whose sub-folders are tracklets named by ``rule``
    (``PID_cCAMERA...``), each holding its frames; and the folders that break the rule or
    hold no image."""
    tracklets: list[Tracklet] = []
    unparsed: list[str] = []
    for name in subfolders(folder):
        path = os.path.join(folder, name)
        parsed = rule.parse(name)
        frames = frames_in(path, rule.suffixes) if parsed else ()
        if parsed is None or not frames:
            unparsed.append(path)
        else:
            tracklets.append(Tracklet(frames, parsed[0], parsed[1]))
    return tracklets, unparsed


def holds_tracklets(folder: Path) -> bool:
    """A subset folder of tracklet folders (no image directly in it, some sub-folder)."""
    with os.scandir(folder) as entries:
        kinds = {
            "dir" if e.is_dir() else os.path.splitext(e.name)[1].lower()
            for e in entries
            if not e.name.startswith(".")
        }
    return "dir" in kinds and not kinds & IMAGE_SUFFIXES


def random_splits(persons: Sequence[str], count: int, seed: int) -> list[dict[str, list[str]]]:
    """``count`` random halvings of ``persons`` (the test half is the smaller one when the
    count is odd), each from its own stream of ``seed``."""
    import numpy as np

    ordered = sorted(persons, key=natural_key)
    test_size = len(ordered) // 2
    splits = []
    for i in range(count):
        order = np.random.default_rng([seed, i]).permutation(len(ordered))
        test = sorted((ordered[j] for j in order[:test_size]), key=natural_key)
        train = sorted((ordered[j] for j in order[test_size:]), key=natural_key)
        splits.append({"train": train, "test": test})
    return splits


def read_splits(path: Path, persons: Sequence[str]) -> list[dict[str, list[str]]]:
    """The splits stored in ``path``: a list of ``{"train": [...], "test": [...]}`` person
    folder names (torchreid's split files have this form), or reidkit's own file with that
    list under ``"splits"``.

    Raises:
        DataError: not such a file, or it names a person folder that is not there.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the splits file {path}: {exc}") from None
    splits = data.get("splits") if isinstance(data, dict) else data
    known = set(persons)
    if not isinstance(splits, list) or not splits:
        raise DataError(f"{path}: expected a list of splits with train and test person folders")
    for i, split in enumerate(splits):
        if not isinstance(split, dict) or not {"train", "test"} <= set(split):
            raise DataError(f"{path}: split {i} has no train and test lists")
        missing = [p for p in (*split["train"], *split["test"]) if p not in known]
        if missing:
            raise DataError(
                f"{path}: split {i} names {missing[0]}, which is not a person folder with "
                "sequences in both cameras"
            )
    return splits


def stored_splits(
    path: Path, persons: Sequence[str], count: int, seed: int, *, note: str
) -> list[dict[str, list[str]]]:
    """The splits in ``path``; on the first parse they are drawn (``random_splits``) and
    written there, relative to the dataset folder (person folder names only). A folder
    that cannot be written to gets the same splits drawn again on every parse."""
    if path.is_file():
        return read_splits(path, persons)
    splits = random_splits(persons, count, seed)
    document = {"format": SPLITS_FORMAT, "seed": seed, "how": note, "splits": splits}
    try:
        write_text_atomic(path, json.dumps(document, indent=1) + "\n")
    except (OSError, ReidkitError) as exc:  # a read-only copy: the seed draws them alike
        log.info("splits not stored (%s); drawn from seed %d", exc, seed)
    return splits


def person_number(folder_name: str) -> int:
    """The pid of a person folder: the number in its name (person_0012 -> 12)."""
    digits = _DIGITS.findall(folder_name)
    if not digits:
        raise DataError(f"person folder {folder_name!r} has no number in its name")
    return int(digits[-1])


def two_camera_subsets(
    cameras: Sequence[Path], split: dict[str, list[str]], suffixes=IMAGE_SUFFIXES
) -> dict[str, list[Tracklet]]:
    """The subsets of a two-camera video set (iLIDS-VID, PRID2011) for one split: train
    holds both cameras' sequences of the train persons, query the first camera's and
    gallery the second camera's sequences of the test persons. pids are the numbers in
    the person folders' names."""

    def sequences(persons: list[str], cams: Sequence[int]) -> list[Tracklet]:
        return [
            Tracklet(frames_in(cameras[c] / p, suffixes), person_number(p), c)
            for p in persons
            for c in cams
        ]

    return {
        "train": sequences(split["train"], (0, 1)),
        "query": sequences(split["test"], (0,)),
        "gallery": sequences(split["test"], (1,)),
    }
