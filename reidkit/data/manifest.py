"""CSV manifests: ``path,pid,camid,subset[,dataset]``, one image a row.

Paths are relative to the manifest's folder (absolute paths are accepted), so a manifest
moves with its data. A header row is optional; blank lines and lines starting with ``#``
are skipped. pid -1 marks junk. The optional ``dataset`` column names each row's source;
rows without it belong to a source named after the manifest.

A video manifest has a header row with a ``tracklet`` column (columns are then found by
their names, in any order): the rows of one (subset, dataset, tracklet) are the frames of
one tracklet, in row order, and must agree on its pid and camid.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

from reidkit.data.sample import SUBSETS, Dataset, Sample, Tracklet, make_dataset
from reidkit.errors import UsageError
from reidkit.fileio import atomic_open

COLUMNS = ("path", "pid", "camid", "subset", "dataset")
TRACKLET_COLUMNS = (*COLUMNS, "tracklet")
HINT = "manifest rows are path,pid,camid,subset[,dataset] (a header adds a tracklet column)"


def _bad_row(path: Path, lineno: int, what: str) -> UsageError:
    return UsageError(f"{path}:{lineno}: {what}", hint=HINT)


def _header(path: Path, row: list[str]) -> list[str] | None:
    """The column names of a header row (None: not a header). Without a tracklet column
    the columns must come in their usual order."""
    names = [name.lower() for name in row]
    if not names or (names[0] != "path" and "tracklet" not in names):
        return None
    unknown = [n for n in names if n not in TRACKLET_COLUMNS]
    missing = [n for n in COLUMNS[:4] if n not in names]
    if unknown or missing:
        what = f"unknown column {unknown[0]!r}" if unknown else f"no {missing[0]} column"
        raise _bad_row(path, 1, f"header: {what}")
    if "tracklet" not in names and names != list(COLUMNS[: len(names)]):
        raise _bad_row(path, 1, f"header: columns must be {','.join(COLUMNS)}")
    return names


def read_manifest(path: Path) -> Dataset:
    """Parse a CSV manifest (of images, or of tracklet frames with a tracklet column).

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
    header = _header(path, [field.strip() for field in lines[0]]) if lines else None
    columns = header if header and "tracklet" in header else None  # else by position
    tracklet_ids: dict[tuple[str, int], list[str]] = {}
    for lineno, row in enumerate(lines, 1):
        row = [field.strip() for field in row]
        if not any(row) or row[0].startswith("#") or (lineno == 1 and header):
            continue
        if columns and len(row) != len(columns):
            raise _bad_row(path, lineno, f"expected {len(columns)} columns, found {len(row)}")
        if not columns and len(row) not in (4, 5):
            raise _bad_row(path, lineno, f"expected 4 or 5 columns, found {len(row)}")
        cell = dict(zip(columns or COLUMNS[: len(row)], row, strict=True))
        rel, pid_text, cam_text, subset = (cell[n] for n in COLUMNS[:4])
        source = cell.get("dataset") or default_source
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
        sample = Sample(os.path.join(base, rel), pid, camid, sources.index(source))
        if "tracklet" in cell:
            if not cell["tracklet"]:
                raise _bad_row(path, lineno, "empty tracklet")
            key = (subset, source, cell["tracklet"])
            first = tracklet_ids.setdefault(key, [lineno, sample])
            if (first[1].pid, first[1].camid) != (pid, camid):
                raise _bad_row(
                    path,
                    lineno,
                    f"tracklet {cell['tracklet']!r} has pid {first[1].pid}, camid "
                    f"{first[1].camid} on line {first[0]}, here pid {pid}, camid {camid}",
                )
            first.append(sample.path)
            continue
        subsets[subset].append(sample)
    if tracklet_ids:
        for (subset, _, _), (_, first, *frames) in tracklet_ids.items():
            subsets[subset].append(Tracklet(tuple(frames), first.pid, first.camid, first.dsetid))
    if not any(subsets.values()):
        raise UsageError(f"{path}: the manifest has no rows")
    return make_dataset(path.stem, base, subsets, sources=sources)


def write_manifest(path: Path, rows: Iterable[tuple]) -> int:
    """Write manifest rows (absolute path, pid, camid, subset, dataset[, tracklet])
    atomically; rows with a tracklet id make a video manifest (every row needs one).

    Paths are written relative to the manifest's folder. Returns the number of rows.
    """
    base = path.resolve().parent
    rows = list(rows)
    video = bool(rows) and len(rows[0]) == 6
    count = 0
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(TRACKLET_COLUMNS if video else COLUMNS)
        for image, pid, camid, subset, *rest in rows:
            writer.writerow((os.path.relpath(image, base), pid, camid, subset, *rest))
            count += 1
    return count
