"""A user's own data in a Market-style folder, given by its path.

The folder holds ``bounding_box_train`` (or ``train``), ``query`` and ``bounding_box_test``
(or ``gallery`` / ``test``), with files named ``PID_cCAMERA....``; any of the subsets may be
absent. Cameras are numbered from 1, or from 0 when some file uses ``c0``.

A video folder has the same subset folders holding one folder per tracklet instead of
images, each named by the same rule (``0001_c2_t07/``) and holding its frames, in the order
of the frame numbers in their names.
"""

from __future__ import annotations

from pathlib import Path

from reidkit.data.layouts.market import (
    IMAGE_SUFFIXES,
    NAME_RE,
    NamingRule,
    find_subfolders,
    parse_market_layout,
    warn_unparsed,
)
from reidkit.data.sample import Dataset, make_dataset
from reidkit.data.tracklets import holds_tracklets, scan_tracklet_folders

FOLDERS = {
    "train": ("bounding_box_train", "train"),
    "query": ("query",),
    "gallery": ("bounding_box_test", "gallery", "test"),
}


def _camera_base(folder: Path) -> int:
    for sub in (n for names in FOLDERS.values() for n in names):
        for path in (folder / sub).glob("*_c0*") if (folder / sub).is_dir() else ():
            m = NAME_RE.match(path.name)
            if m and int(m.group(2)) == 0:
                return 0
    return 1


def parse_folder(folder: Path) -> Dataset:
    """Parse a Market-style folder given by path (of images, or of tracklet folders)."""
    rule = NamingRule(suffixes=IMAGE_SUFFIXES, camera_base=_camera_base(folder))
    found = find_subfolders(folder, FOLDERS)
    if any(holds_tracklets(path) for path in found.values()):
        return _parse_tracklets(folder, found, rule)
    return parse_market_layout(
        folder.resolve().name,
        folder,
        rule,
        folders=FOLDERS,
        require_all=False,
        hint="a dataset folder holds bounding_box_train/, query/ and bounding_box_test/ "
        "with files named PID_cCAMERA_....jpg; for other layouts write a CSV manifest",
    )


def _parse_tracklets(folder: Path, found: dict[str, Path], rule: NamingRule) -> Dataset:
    subsets, unparsed = {}, []
    for subset, path in found.items():
        subsets[subset], bad = scan_tracklet_folders(path, rule)
        unparsed += bad
    warn_unparsed(unparsed, "PID_cCAMERA... (tracklet folders holding frames)")
    return make_dataset(
        folder.resolve().name, folder, subsets, unparsed=unparsed, zero_is_distractor=True,
        camera_base=rule.camera_base,
    )  # fmt: skip
