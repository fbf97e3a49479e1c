"""Combine several datasets into one manifest, for training on all of them.

Each source's train pids and camids are offset so that sources never share an identity or
a camera; query and gallery rows keep their own pids and camids, tagged with the source, so
each dataset is still evaluated on its own. ``combineall`` also folds a source's query and
gallery identities into train (as torchreid's ``combineall`` does), after which evaluating
on that source measures nothing. Video datasets combine alike (their manifest has a
tracklet column); image and video datasets do not mix.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from reidkit.data.sample import Dataset, Item, Tracklet
from reidkit.errors import UsageError

log = logging.getLogger(__name__)

Row = tuple[str, int, int, str, str] | tuple[str, int, int, str, str, str]


def _cameras(ds: Dataset) -> int:
    cams = [s.camid for subset in (ds.train, ds.query, ds.gallery) for s in subset]
    return max(cams, default=-1) + 1


def _folded(ds: Dataset) -> list[Item]:
    """Query and gallery samples that can become training identities (no junk, no
    distractors)."""
    keep = [s for s in ds.query + ds.gallery if not (ds.zero_is_distractor and s.pid == 0)]
    labels = {pid: ds.num_train_pids + i for i, pid in enumerate(sorted({s.pid for s in keep}))}
    return [s._replace(pid=labels[s.pid]) for s in keep]


def combined_items(datasets: list[Dataset], *, combineall: bool = False) -> Iterator[tuple]:
    """``(item, subset, source)`` of ``datasets`` combined: train pids and camids offset per
    source, every item's dsetid its source's index."""
    names = [ds.name for ds in datasets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UsageError(f"dataset {duplicates[0]!r} is given more than once")
    kinds = {ds.kind for ds in datasets}
    if len(kinds) > 1:
        video = [ds.name for ds in datasets if ds.kind == "tracklet"]
        verb = "holds" if len(video) == 1 else "hold"
        raise UsageError(
            f"cannot combine image and video datasets ({', '.join(video)} {verb} tracklets)"
        )
    pid_offset = cam_offset = 0
    for index, ds in enumerate(datasets):
        train = ds.train + (_folded(ds) if combineall else [])
        for s in train:
            item = s._replace(pid=s.pid + pid_offset, camid=s.camid + cam_offset, dsetid=index)
            yield item, "train", ds.name
        for subset in ("query", "gallery"):
            for s in ds.subset(subset) + ds.junk.get(subset, []):
                yield s._replace(dsetid=index), subset, ds.name
        pid_offset += len({s.pid for s in train})
        cam_offset += _cameras(ds)
    if combineall:
        log.warning(
            "--combineall put the query and gallery identities of %s into train: "
            "evaluating on %s is now meaningless",
            ", ".join(names),
            "them" if len(names) > 1 else "it",
        )


def combined_rows(datasets: list[Dataset], *, combineall: bool = False) -> Iterator[Row]:
    """Manifest rows of ``datasets`` combined (one per frame, with a tracklet id, for
    tracklets)."""
    for n, (item, subset, source) in enumerate(combined_items(datasets, combineall=combineall)):
        if isinstance(item, Tracklet):
            for frame in item.paths:
                yield frame, item.pid, item.camid, subset, source, str(n)
        else:
            yield item.path, item.pid, item.camid, subset, source


def combined_dataset(datasets: list[Dataset]) -> Dataset:
    """``datasets`` as one dataset in memory (train on all of them: ``data.sources``),
    named ``a+b+...``; sample paths are absolute, so its root is the first one's."""
    from reidkit.data.sample import SUBSETS, make_dataset

    subsets: dict[str, list[Item]] = {s: [] for s in SUBSETS}
    for item, subset, _ in combined_items(datasets):
        subsets[subset].append(item)
    names = [ds.name for ds in datasets]
    return make_dataset("+".join(names), datasets[0].root, subsets, sources=names)


def combine_datasets(datasets: list[Dataset], out: Path, *, combineall: bool = False) -> dict:
    """Write the combined manifest to ``out``; returns what was written, per source."""
    from reidkit.data.manifest import write_manifest

    rows = list(combined_rows(datasets, combineall=combineall))
    write_manifest(out, rows)
    per_source = {ds.name: {"train": 0, "query": 0, "gallery": 0} for ds in datasets}
    for _, pid, _, subset, source, *_ in rows:
        if pid != -1:
            per_source[source][subset] += 1
    return {
        "manifest": str(out),
        "rows": len(rows),
        "combineall": combineall,
        "train_ids": len({(r[4], r[1]) for r in rows if r[3] == "train"}),
        "tracklets": len({(r[3], r[4], r[5]) for r in rows if len(r) == 6}),
        "sources": per_source,
    }
