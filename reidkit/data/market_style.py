"""Market-1501-style folders: file names ``PPPP_cC...`` in train / query / gallery folders.

Market-1501 names its crops ``PPPP_cCsS_FFFFFF_NN.jpg`` (pid, camera, sequence, frame,
box); DukeMTMC-reID ``PPPP_cC_fFFFFFFF.jpg``. Both start with the pid and the one-based
camera, which is all a parser needs. pid -1 marks junk, pid 0 distractors.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from reidkit.data.sample import Dataset, Sample, make_dataset
from reidkit.errors import MissingInputError

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^(-?\d+)_c(\d+)")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
MARKET_FOLDERS = {
    "train": ("bounding_box_train",),
    "query": ("query",),
    "gallery": ("bounding_box_test",),
}


@dataclass(frozen=True)
class NamingRule:
    """What a valid file name looks like in one dataset.

    Attributes:
        suffixes: file suffixes (lower case) that are images of this dataset; other files
            are ignored silently (Thumbs.db, readme files).
        num_cameras: cameras are 1..num_cameras in file names; None accepts any.
        max_pid: the largest valid pid; None accepts any.
        camera_base: the number of the first camera in file names (1 for Market, Duke).
    """

    suffixes: frozenset[str] = frozenset({".jpg"})
    num_cameras: int | None = None
    max_pid: int | None = None
    camera_base: int = 1

    def parse(self, filename: str) -> tuple[int, int] | None:
        """(pid, camid) with camid zero-based, or None when the name breaks the rule."""
        m = NAME_RE.match(filename)
        if not m:
            return None
        pid, cam = int(m.group(1)), int(m.group(2)) - self.camera_base
        if pid < -1 or (self.max_pid is not None and pid > self.max_pid):
            return None
        if cam < 0 or (self.num_cameras is not None and cam >= self.num_cameras):
            return None
        return pid, cam


def scan_folder(folder: Path, rule: NamingRule) -> tuple[list[Sample], list[str]]:
    """Samples of the image files directly in ``folder``, sorted by name, and the
    paths of image files whose names break ``rule``."""
    samples: list[Sample] = []
    unparsed: list[str] = []
    with os.scandir(folder) as entries:
        names = sorted(e.name for e in entries if e.is_file())
    for name in names:
        if os.path.splitext(name)[1].lower() not in rule.suffixes:
            continue
        path = os.path.join(folder, name)
        parsed = rule.parse(name)
        if parsed is None:
            unparsed.append(path)
        else:
            samples.append(Sample(path, parsed[0], parsed[1]))
    return samples, unparsed


def warn_unparsed(unparsed: list[str], rule_text: str) -> None:
    """Log one warning with a few examples of files that broke the naming rule."""
    if unparsed:
        examples = ", ".join(os.path.basename(p) for p in unparsed[:3])
        log.warning(
            "%d image file(s) do not follow the naming rule %s and were skipped, e.g. %s",
            len(unparsed),
            rule_text,
            examples,
        )


def find_subfolders(base: Path, candidates: dict[str, tuple[str, ...]]) -> dict[str, Path]:
    """The first existing candidate folder for each subset; subsets with none are left out."""
    found = {}
    for subset, names in candidates.items():
        for name in names:
            if (base / name).is_dir():
                found[subset] = base / name
                break
    return found


def parse_market_layout(
    name: str,
    base: Path,
    rule: NamingRule,
    *,
    folders: dict[str, tuple[str, ...]] = MARKET_FOLDERS,
    require_all: bool = True,
    zero_is_distractor: bool = True,
    hint: str | None = None,
) -> Dataset:
    """Parse a folder holding one sub-folder per subset, Market-style file names in each.

    Raises:
        MissingInputError: a required sub-folder is missing (the message names it).
    """
    found = find_subfolders(base, folders)
    missing = [folders[s][0] for s in folders if s not in found]
    if (require_all and missing) or not found:
        raise MissingInputError(
            f"{name}: expected folder(s) {', '.join(missing)} in {base}", hint=hint
        )
    subsets: dict[str, list[Sample]] = {}
    unparsed: list[str] = []
    for subset, folder in found.items():
        subsets[subset], bad = scan_folder(folder, rule)
        unparsed += bad
    warn_unparsed(unparsed, "PID_cCAMERA...")
    return make_dataset(
        name, base, subsets, unparsed=unparsed, zero_is_distractor=zero_is_distractor,
        camera_base=1,  # file names count cameras from c1
    )  # fmt: skip
