"""Combine several datasets into one manifest, for training on all of them.

Each source's train pids and camids are offset so that sources never share an identity or
a camera; query and gallery rows keep their own pids and camids, tagged with the source, so
each dataset is still evaluated on its own. ``combineall`` also folds a source's query and
gallery identities into train (as torchreid's ``combineall`` does), after which evaluating
on that source measures nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from reidkit.data.sample import Dataset, Sample
from reidkit.errors import UsageError

log = logging.getLogger(__name__)

Row = tuple[str, int, int, str, str]


def _cameras(ds: Dataset) -> int:
    cams = [s.camid for subset in (ds.train, ds.query, ds.gallery) for s in subset]
    return max(cams, default=-1) + 1


def _folded(ds: Dataset) -> list[Sample]:
    """Query and gallery samples that can become training identities (no junk, no
    distractors)."""
    keep = [s for s in ds.query + ds.gallery if not (ds.zero_is_distractor and s.pid == 0)]
    labels = {pid: ds.num_train_pids + i for i, pid in enumerate(sorted({s.pid for s in keep}))}
    return [s._replace(pid=labels[s.pid]) for s in keep]


def combined_rows(datasets: list[Dataset], *, combineall: bool = False) -> Iterator[Row]:
    """Manifest rows of ``datasets`` combined, train pids and camids offset per source."""
    names = [ds.name for ds in datasets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UsageError(f"dataset {duplicates[0]!r} is given more than once")
    pid_offset = cam_offset = 0
    for ds in datasets:
        train = ds.train + (_folded(ds) if combineall else [])
        for s in train:
            yield s.path, s.pid + pid_offset, s.camid + cam_offset, "train", ds.name
        for subset in ("query", "gallery"):
            for s in ds.subset(subset) + ds.junk.get(subset, []):
                yield s.path, s.pid, s.camid, subset, ds.name
        pid_offset += len({s.pid for s in train})
        cam_offset += _cameras(ds)
    if combineall:
        log.warning(
            "--combineall put the query and gallery identities of %s into train: "
            "evaluating on %s is now meaningless",
            ", ".join(names),
            "them" if len(names) > 1 else "it",
        )


def combined_dataset(datasets: list[Dataset]) -> Dataset:
    """``datasets`` as one dataset in memory (train on all of them: ``data.sources``),
    named ``a+b+...``; sample paths are absolute, so its root is the first one's."""
    from reidkit.data.sample import SUBSETS, make_dataset

    names = [ds.name for ds in datasets]
    subsets: dict[str, list[Sample]] = {s: [] for s in SUBSETS}
    for path, pid, camid, subset, source in combined_rows(datasets):
        subsets[subset].append(Sample(path, pid, camid, names.index(source)))
    return make_dataset("+".join(names), datasets[0].root, subsets, sources=names)


def combine_datasets(datasets: list[Dataset], out: Path, *, combineall: bool = False) -> dict:
    """Write the combined manifest to ``out``; returns what was written, per source."""
    from reidkit.data.manifest import write_manifest

    rows = list(combined_rows(datasets, combineall=combineall))
    write_manifest(out, rows)
    per_source = {ds.name: {"train": 0, "query": 0, "gallery": 0} for ds in datasets}
    for _, pid, _, subset, source in rows:
        if pid != -1:
            per_source[source][subset] += 1
    return {
        "manifest": str(out),
        "rows": len(rows),
        "combineall": combineall,
        "train_ids": len({(r[4], r[1]) for r in rows if r[3] == "train"}),
        "sources": per_source,
    }
