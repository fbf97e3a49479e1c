"""Tracklet features: one row per tracklet, its frames' features pooled over time.

Every frame of every tracklet (``sample: all``, torchreid's test default) or ``seq_len``
of them spread evenly goes through the model's trunk (``features``) in batches of frames
that run across tracklet boundaries, so a 1,000-frame tracklet needs no 1,000-image batch
and short tracklets fill batches. Each tracklet's frame features are pooled (``avg``: the
mean, ``max``: the element-wise maximum; ``--flip`` adds every frame's mirror image as one
more frame) and the pooled vector goes through the model's head once. As pooling comes
before the head (:mod:`reidkit.models.temporal`), the row equals the model's own clip
forward over the same frames, however the frames fell into batches.

Frame batches are cut at fixed positions of the whole frame list, so a resumed run (which
goes on at the batch holding the first frame of the first tracklet not yet flushed, and
recomputes the frames before it in that batch) and each process under torchrun (which runs
the batches holding its tracklets' frames) form exactly the batches of one uninterrupted
process.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from reidkit.data.clips import pick_frames
from reidkit.data.sample import Tracklet
from reidkit.errors import DataError
from reidkit.features.batches import ImageList
from reidkit.features.writer import FeatureWriter
from reidkit.progress import ProgressFn, no_progress
from reidkit.threads import rebalance as rebalance_threads

log = logging.getLogger(__name__)
CHUNK_TRACKLETS = 64  # tracklets per flushed chunk


def clip_frames(tracklet: Tracklet, sample: str, seq_len: int | None) -> tuple[str, ...]:
    """The frames of ``tracklet`` its feature is pooled over."""
    if sample == "all":
        return tracklet.paths
    return tuple(tracklet.paths[i] for i in pick_frames(tracklet.frames, seq_len or 1, sample))


class _Pool:
    """The running pool of one tracklet's frame features."""

    def __init__(self, how: str) -> None:
        self.how, self.value, self.count = how, None, 0

    def add(self, rows: np.ndarray) -> None:
        if not len(rows):
            return
        if self.how == "avg":
            part = rows.sum(0, dtype=np.float64)
            self.value = part if self.value is None else self.value + part
        else:
            part = rows.max(0)
            self.value = part if self.value is None else np.maximum(self.value, part)
        self.count += len(rows)

    def result(self) -> np.ndarray:
        value = self.value / self.count if self.how == "avg" else self.value
        return np.asarray(value, dtype=np.float32)


def pooled_rows(
    runner,
    clips: list[tuple[str, ...]],
    *,
    first: int,
    stop: int | None = None,
    how: str,
    height: int,
    width: int,
    interpolation: str = "bilinear",
    batch_size: int,
    workers: int = 0,
    on_bad: Callable[[str, str], None],
    progress: ProgressFn = no_progress,
) -> Iterator[tuple[list[int], np.ndarray | None]]:
    """``(tracklet indices, embeddings)`` for every batch of frames that completes some
    of the tracklets ``first`` to ``stop`` (exclusive; None: the last); a tracklet none of
    whose frames could be read comes with no row (its index is left out).
    ``on_bad(path, reason)`` is called for an unreadable frame (and may raise)."""
    stop = len(clips) if stop is None else stop
    lengths = np.array([len(c) for c in clips], dtype=np.int64)
    ends = np.cumsum(lengths)  # one past each tracklet's last frame
    starts = ends - lengths
    frames = [p for c in clips for p in c]
    owner = np.repeat(np.arange(len(clips)), lengths)
    if first >= stop:
        return
    # the batches of one uninterrupted process over all the clips that hold these frames
    begin = int(starts[first]) // batch_size * batch_size
    end = min(len(frames), -(-int(ends[stop - 1]) // batch_size) * batch_size)
    images = ImageList(frames[begin:end], begin, height, width, interpolation)
    loader = runner.batches(images, batch_size, workers)
    pools = {t: _Pool(how) for t in range(first, stop)}
    done_to = first  # tracklets before this one are finished
    total = int(ends[stop - 1] - starts[first])
    progress(0, total)
    for batch, index, errors in loader:
        rebalance_threads()
        index = np.asarray(index)
        ok = np.array([not e for e in errors])
        for i, error in zip(index, errors, strict=True):
            if error and first <= owner[i] < stop:
                on_bad(frames[i], error)
        if ok.any():
            # the whole batch runs, frames of tracklets already flushed too: the same
            # batches as an uninterrupted run, so the same numbers
            views = runner.frame_features(batch, ok)  # one array per view (2 with flip)
            mine = owner[index[ok]]
            for t in np.unique(mine[(mine >= first) & (mine < stop)]):
                for view in views:
                    pools[int(t)].add(view[mine == t])
        last = int(index[-1]) + 1
        finished = []
        while done_to < stop and ends[done_to] <= last:
            finished.append(done_to)
            done_to += 1
        kept = [t for t in finished if pools[t].count]
        embeddings = runner.head(np.stack([pools[t].result() for t in kept])) if kept else None
        for t in finished:
            del pools[t]
        if finished:
            yield kept, embeddings
        progress(min(total, max(0, last - int(starts[first]))), total)


def extract_tracklet_rows(
    runner, tracklets, lo, hi, path, attrs, options, batch_size, workers, skip_bad, progress
) -> tuple[int, int]:
    """Extract tracklets[lo:hi] into ``path``; returns (rows resumed from an earlier run,
    frames run through the model now)."""
    root = Path(attrs["root"])
    writer = FeatureWriter(
        path,
        runner.feature_dim,
        storage=options.storage,
        with_paths=True,
        with_dsetids=True,
        with_index=True,
        with_frames=True,
        chunk_rows=CHUNK_TRACKLETS,
        attrs=attrs,
    )
    clips = [clip_frames(t, options.sample, options.seq_len) for t in tracklets]
    bad_frames: list[str] = []

    def on_bad(frame: str, reason: str) -> None:
        if not skip_bad:
            raise DataError(
                f"cannot read image {frame}: {reason}",
                hint="--skip-bad leaves such frames (and tracklets with no frame left) out",
            )
        log.warning("skipped unreadable frame %s: %s", frame, reason)
        bad_frames.append(os.path.relpath(frame, root))

    first = max(lo, writer.next_index)
    frames_run = sum(len(c) for c in clips[first:hi])
    for kept, embeddings in pooled_rows(
        runner, clips, first=first, stop=hi, how=options.temporal, height=options.height,
        width=options.width, interpolation=options.resize,
        batch_size=batch_size, workers=workers, on_bad=on_bad,
        progress=progress,
    ):  # fmt: skip
        if not kept:
            continue
        rows = [tracklets[t] for t in kept]
        writer.append(
            embeddings,
            [t.pid for t in rows],
            [t.camid for t in rows],
            [os.path.relpath(t.path, root) for t in rows],
            [t.dsetid for t in rows],
            index=np.array(kept),
            frames=[t.frames for t in rows],
        )
    missing = np.setdiff1d(np.arange(lo, hi), writer.indices())
    skipped = [os.path.relpath(tracklets[i].path, root) for i in missing]
    writer.finish(skipped=json.dumps(skipped), skipped_frames=json.dumps(bad_frames))
    return writer.resumed_rows, frames_run


def compute_tracklet_features(
    runner, tracklets: list[Tracklet], options, *, batch_size: int = 128, workers: int = 0
) -> np.ndarray:
    """Tracklet features in memory, as ``extract`` computes them (for evaluation during
    training). An unreadable frame is a DataError naming it."""

    def on_bad(frame: str, reason: str) -> None:
        raise DataError(f"cannot read image {frame}: {reason}")

    out = np.zeros((len(tracklets), runner.feature_dim), dtype=np.float32)
    clips = [clip_frames(t, options.sample, options.seq_len) for t in tracklets]
    for kept, embeddings in pooled_rows(
        runner, clips, first=0, how=options.temporal, height=options.height,
        width=options.width, interpolation=options.resize,
        batch_size=batch_size, workers=workers, on_bad=on_bad,
    ):  # fmt: skip
        out[kept] = embeddings
    return out
