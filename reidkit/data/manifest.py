"""CSV manifests: ``path,pid,camid,subset[,dataset]``, one image a row.

Paths are relative to the manifest's folder (absolute paths are accepted), so a manifest
moves with its data. A header row is optional; blank lines and lines starting with ``#``
are skipped. pid -1 marks junk. The optional ``dataset`` column names each row's source;
rows without it belong to a source named after the manifest.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

from reidkit.data.sample import SUBSETS, Dataset, Sample, make_dataset
from reidkit.errors import UsageError
from reidkit.fileio import atomic_open

COLUMNS = ("path", "pid", "camid", "subset", "dataset")


def _bad_row(path: Path, lineno: int, what: str) -> UsageError:
    return UsageError(
        f"{path}:{lineno}: {what}", hint="manifest rows are path,pid,camid,subset[,dataset]"
    )


def read_manifest(path: Path) -> Dataset:
    """Parse a CSV manifest.

    Raises:
        UsageError: not CSV text, no rows, or a malformed row (the message names the
            file and line).
    """
    base = path.resolve().parent
    default_source = path.stem
    sources: list[str] = []
    subsets: dict[str, list[Sample]] = {s: [] for s in SUBSETS}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            lines = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{path}: not a CSV text file ({exc})") from None
    for lineno, row in enumerate(lines, 1):
        row = [field.strip() for field in row]
        if not any(row) or row[0].startswith("#"):
            continue
        if lineno == 1 and row[0].lower() == "path":
            continue
        if len(row) not in (4, 5):
            raise _bad_row(path, lineno, f"expected 4 or 5 columns, found {len(row)}")
        rel, pid_text, cam_text, subset = row[:4]
        source = row[4] if len(row) == 5 and row[4] else default_source
        if not rel:
            raise _bad_row(path, lineno, "empty path")
        try:
            pid = int(pid_text)
        except ValueError:
            raise _bad_row(path, lineno, f"pid {pid_text!r} is not an integer") from None
        try:
            camid = int(cam_text)
        except ValueError:
            raise _bad_row(path, lineno, f"camid {cam_text!r} is not an integer") from None
        if pid < -1:
            raise _bad_row(path, lineno, f"pid {pid} is negative (only -1, junk, is allowed)")
        if camid < 0:
            raise _bad_row(path, lineno, f"camid {camid} is negative")
        if subset not in subsets:
            raise _bad_row(path, lineno, f"subset {subset!r} is not one of {', '.join(SUBSETS)}")
        if source not in sources:
            sources.append(source)
        subsets[subset].append(Sample(os.path.join(base, rel), pid, camid, sources.index(source)))
    if not any(subsets.values()):
        raise UsageError(f"{path}: the manifest has no rows")
    return make_dataset(path.stem, base, subsets, sources=sources)


def write_manifest(path: Path, rows: Iterable[tuple[str, int, int, str, str]]) -> int:
    """Write manifest rows (absolute path, pid, camid, subset, dataset) atomically.

    Paths are written relative to the manifest's folder. Returns the number of rows.
    """
    base = path.resolve().parent
    count = 0
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        for image, pid, camid, subset, source in rows:
            writer.writerow((os.path.relpath(image, base), pid, camid, subset, source))
            count += 1
    return count
