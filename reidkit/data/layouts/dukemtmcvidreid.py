"""DukeMTMC-VideoReID (Wu et al., "Exploit the Unknown Gradually: One-Shot Video-Based
Person Re-Identification by Stepwise Learning", CVPR 2018): 702 train + 702 test identities
(and 408 gallery-only distractor identities), 8 cameras, 2,196 train / 702 query / 2,636
gallery tracklets.

Layout under ``<root>/dukemtmc-vidreid/``: ``DukeMTMC-VideoReID/{train,query,gallery}/PPPP/
TTTT/`` (pid folder, tracklet folder), frames named ``PPPP_Cc_Fffff_X....jpg`` (or, in the
first release, ``PPPPCcFffffX....jpg``): pid, camera (1-8), frame. Frames are ordered by
their frame number; a frame whose name breaks the rule is reported, not guessed at.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from reidkit.data.layouts.market import warn_unparsed
from reidkit.data.sample import Dataset, DatasetSpec, Tracklet, make_dataset
from reidkit.data.tracklets import frames_in, subfolders
from reidkit.errors import DataError, MissingInputError

NAME = "dukemtmcvidreid"
RELEASE = "DukeMTMC-VideoReID"
FOLDERS = ("train", "query", "gallery")
CAMERAS = 8
FRAME_RE = re.compile(r"^(\d+)_?C(\d)_?F(\d+)")
OBTAIN = (
    "withdrawn by its authors with DukeMTMC (no public link): reidkit datasets download "
    f"dukemtmcvidreid --archive {RELEASE}.zip --root {{root}}"
)


def _tracklet(folder: str, pid: int, unparsed: list[str]) -> Tracklet | None:
    """The tracklet in ``folder``; None (and its path in ``unparsed``) when it has no
    frame. Raises DataError for a frame of another pid or camera than the first."""
    kept, camera = [], None
    for path in frames_in(folder, frozenset({".jpg"})):
        m = FRAME_RE.match(os.path.basename(path))
        if m is None or int(m.group(1)) != pid or not 1 <= int(m.group(2)) <= CAMERAS:
            unparsed.append(path)
            continue
        cam = int(m.group(2)) - 1
        if camera is not None and cam != camera:
            raise DataError(f"{path}: camera {cam + 1} in a tracklet of camera {camera + 1}")
        camera = cam
        kept.append(path)
    if not kept:
        unparsed.append(folder)
        return None
    return Tracklet(tuple(kept), pid, camera)


def parse_layout(name: str, base: Path, folder: Path) -> Dataset:
    """Parse ``base/{train,query,gallery}/PID/TRACKLET/*.jpg`` (also synthreid-video's
    layout)."""
    missing = [f for f in FOLDERS if not (base / f).is_dir()]
    if missing:
        raise MissingInputError(
            f"{name}: expected folder(s) {', '.join(missing)} in {base}",
            hint=f"extract {RELEASE}.zip so that {folder / RELEASE} exists",
        )
    subsets: dict[str, list[Tracklet]] = {}
    unparsed: list[str] = []
    for subset in FOLDERS:
        subsets[subset] = []
        for pid_name in subfolders(base / subset):
            pid_dir = os.path.join(base, subset, pid_name)
            if not pid_name.isdigit():
                unparsed.append(pid_dir)
                continue
            for tracklet_name in subfolders(pid_dir):
                t = _tracklet(os.path.join(pid_dir, tracklet_name), int(pid_name), unparsed)
                if t is not None:
                    subsets[subset].append(t)
    warn_unparsed(unparsed, "PID/TRACKLET/PID_Cc_Fffff....jpg")
    return make_dataset(name, base, subsets, unparsed=unparsed, camera_base=1)


def parse(folder: Path) -> Dataset:
    """Parse DukeMTMC-VideoReID from ``<root>/dukemtmc-vidreid``."""
    base = folder / RELEASE if (folder / RELEASE).is_dir() else folder
    return parse_layout(NAME, base, folder)


SPEC = DatasetSpec(
    name=NAME,
    folder="dukemtmc-vidreid",
    description="DukeMTMC-VideoReID (video): 702 + 702 ids (+408 distractors), 8 cameras",
    obtain=OBTAIN,
    parse=parse,
)
