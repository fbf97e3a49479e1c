"""A user's own data in a Market-style folder, given by its path.

The folder holds ``bounding_box_train`` (or ``train``), ``query`` and ``bounding_box_test``
(or ``gallery`` / ``test``), with files named ``PID_cCAMERA....``; any of the subsets may be
absent. Cameras are numbered from 1, or from 0 when some file uses ``c0``.
"""

from __future__ import annotations

from pathlib import Path

from reidkit.data.market_style import IMAGE_SUFFIXES, NAME_RE, NamingRule, parse_market_layout
from reidkit.data.sample import Dataset

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
    """Parse a Market-style folder given by path."""
    rule = NamingRule(suffixes=IMAGE_SUFFIXES, camera_base=_camera_base(folder))
    return parse_market_layout(
        folder.resolve().name,
        folder,
        rule,
        folders=FOLDERS,
        require_all=False,
        hint="a dataset folder holds bounding_box_train/, query/ and bounding_box_test/ "
        "with files named PID_cCAMERA_....jpg; for other layouts write a CSV manifest",
    )
