"""Writing feature files (:mod:`reidkit.features.store` has their schema).

Writing is crash-safe and resumable. HDF5 files are not safe against a process killed in
the middle of a write, so rows are first flushed as numbered chunk files, each written
atomically, into the folder ``<out>.partial/``; a rerun continues after the last chunk.
``finish`` assembles the chunks into ``<out>`` (written to a temporary name, then renamed)
and removes the folder. A reader therefore never sees a half-written feature file.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from reidkit.errors import UsageError
from reidkit.features.store import STORAGE_DTYPES, _attr, base_attrs
from reidkit.fileio import atomic_path, fsync_dir, write_text_atomic

META = "meta.json"
CHUNK_ROWS = 4096  # the default flush size of a writer
CHUNK_BYTES = 2**20  # HDF5 chunks of about 1 MiB: what HDF5's default chunk cache holds


class FeatureWriter:
    """Append feature rows in chunks; resumable after a crash; published atomically.

    Args:
        path: the final ``.h5`` file.
        dim: feature dimension D.
        storage: "float32" or "float16" on disk.
        attrs: file attributes (see the module docstring); ``provenance`` (a dict) decides
            whether an existing partial file belongs to the same job and can be resumed.
        chunk_rows: rows per flushed chunk.
        with_paths, with_dsetids: whether rows carry paths / dsetids.
        with_index: rows carry the index of their input sample (kept in the partial chunks
            only), so that a resumed job whose inputs can be skipped knows where to go on.
        with_frames: rows carry their tracklet's frame count (/frames).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        dim: int,
        *,
        storage: str = "float32",
        attrs: dict[str, Any] | None = None,
        chunk_rows: int = CHUNK_ROWS,
        with_paths: bool = False,
        with_dsetids: bool = False,
        with_index: bool = False,
        with_frames: bool = False,
    ) -> None:
        if storage not in STORAGE_DTYPES:
            raise UsageError(f"storage must be one of {', '.join(STORAGE_DTYPES)}, not {storage!r}")
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.meta = {
            "dim": int(dim),
            "storage": storage,
            "with_paths": with_paths,
            "with_dsetids": with_dsetids,
            "with_index": with_index,
            "with_frames": with_frames,
            "attrs": base_attrs(**(attrs or {})),
        }
        self.chunk_rows = chunk_rows
        self._pending: list[dict[str, np.ndarray]] = []
        self._pending_rows = 0
        self.chunks = 0
        self.rows = 0
        self.next_index = 0  # with_index: the input sample after the last one flushed
        self._open()

    def _open(self) -> None:
        old = self._read_meta()
        if old is not None and _same_job(old, self.meta):
            self.meta["attrs"]["created"] = old["attrs"]["created"]
            self._count_chunks()
        elif self.partial.exists():
            shutil.rmtree(self.partial)
        self.partial.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.partial / META, json.dumps(self.meta, indent=2))
        self.resumed_rows = self.rows  # rows an earlier, interrupted run had flushed

    def _read_meta(self) -> dict | None:
        try:
            return json.loads((self.partial / META).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _count_chunks(self) -> None:
        while True:
            chunk = self.partial / f"chunk-{self.chunks:06d}.npz"
            if not chunk.is_file():
                return
            try:
                with np.load(chunk) as data:
                    self.rows += len(data["pids"])
                    if "index" in data and len(data["index"]):
                        self.next_index = int(data["index"][-1]) + 1
            except (OSError, ValueError, KeyError):  # cannot happen for atomic chunks; be safe
                chunk.unlink()
                return
            self.chunks += 1

    def append(
        self,
        features: np.ndarray,
        pids: np.ndarray,
        camids: np.ndarray,
        paths: list[str] | None = None,
        dsetids: np.ndarray | None = None,
        index: np.ndarray | None = None,
        frames: np.ndarray | None = None,
    ) -> None:
        """Queue rows; full chunks are flushed to disk."""
        features = np.asarray(features)
        n = len(features)
        if features.ndim != 2 or features.shape[1] != self.meta["dim"]:
            raise ValueError(
                f"expected features of shape (n, {self.meta['dim']}), got {features.shape}"
            )
        batch = {
            "features": features.astype(self.meta["storage"]),
            "pids": np.asarray(pids, dtype=np.int64).reshape(n),
            "camids": np.asarray(camids, dtype=np.int64).reshape(n),
        }
        if self.meta["with_paths"]:
            batch["paths"] = np.asarray(list(paths or []), dtype=str).reshape(n)
        if self.meta["with_dsetids"]:
            batch["dsetids"] = np.asarray(dsetids, dtype=np.int64).reshape(n)
        if self.meta["with_index"]:
            batch["index"] = np.asarray(index, dtype=np.int64).reshape(n)
        if self.meta.get("with_frames"):
            batch["frames"] = np.asarray(frames, dtype=np.int64).reshape(n)
        self._pending.append(batch)
        self._pending_rows += n
        while self._pending_rows >= self.chunk_rows:
            self._flush_chunk(self.chunk_rows)

    def _take(self, rows: int) -> dict[str, np.ndarray]:
        """The first ``rows`` queued rows, removed from the queue (no copy of the rest)."""
        taken, need = [], rows
        while need:
            batch = self._pending[0]
            n = len(batch["pids"])
            if n <= need:
                taken.append(self._pending.pop(0))
                need -= n
            else:
                taken.append({k: v[:need] for k, v in batch.items()})
                self._pending[0] = {k: v[need:] for k, v in batch.items()}
                need = 0
        self._pending_rows -= rows
        return {k: np.concatenate([t[k] for t in taken]) for k in taken[0]}

    def _flush_chunk(self, rows: int) -> None:
        chunk = self._take(rows)
        with (
            atomic_path(self.partial / f"chunk-{self.chunks:06d}.npz") as tmp,
            open(tmp, "wb") as f,
        ):
            np.savez(f, **chunk)
        self.chunks += 1
        self.rows += rows
        if "index" in chunk and rows:
            self.next_index = int(chunk["index"][-1]) + 1

    def indices(self) -> np.ndarray:
        """The input-sample index of every row flushed so far (``with_index`` writers)."""
        self.flush()
        parts = []
        for i in range(self.chunks):
            with np.load(self.partial / f"chunk-{i:06d}.npz") as data:
                parts.append(data["index"])
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def flush(self) -> None:
        """Write every queued row to disk now (also a partial chunk)."""
        if self._pending_rows:
            self._flush_chunk(self._pending_rows)

    def finish(self, **extra_attrs: Any) -> Path:
        """Assemble the chunks into the final file, mark it complete and publish it."""
        import h5py

        self.flush()
        meta = self.meta
        dim, total = meta["dim"], self.rows
        with atomic_path(self.path) as tmp, h5py.File(tmp, "w") as f:
            feats = f.create_dataset(
                "features",
                (total, dim),
                dtype=meta["storage"],
                chunks=chunk_shape(total, dim, meta["storage"]) if total else None,
            )
            labels = {k: f.create_dataset(k, (total,), dtype="int64") for k in ("pids", "camids")}
            if meta["with_dsetids"]:
                labels["dsetids"] = f.create_dataset("dsetids", (total,), dtype="int64")
            if meta.get("with_frames"):
                labels["frames"] = f.create_dataset("frames", (total,), dtype="int64")
            paths = []
            start = 0
            for i in range(self.chunks):
                with np.load(self.partial / f"chunk-{i:06d}.npz") as data:
                    n = len(data["pids"])
                    feats[start : start + n] = data["features"]
                    for key, ds in labels.items():
                        ds[start : start + n] = data[key]
                    if meta["with_paths"]:
                        paths += data["paths"].tolist()
                start += n
            if meta["with_paths"]:
                f.create_dataset("paths", data=paths, dtype=h5py.string_dtype("utf-8"))
            for key, value in {**meta["attrs"], **extra_attrs}.items():
                f.attrs[key] = _attr(value)
            f.attrs["complete"] = True
        shutil.rmtree(self.partial)
        fsync_dir(self.path.parent)
        return self.path


def chunk_shape(rows: int, dim: int, storage: str) -> tuple[int, int]:
    """Whole rows, about CHUNK_BYTES a chunk (one row at the least)."""
    per_row = dim * np.dtype(storage).itemsize
    return max(1, min(rows, CHUNK_BYTES // per_row)), dim


def _same_job(old: dict, new: dict) -> bool:
    keys = ("dim", "storage", "with_paths", "with_dsetids", "with_index", "with_frames")
    return all(old.get(k) == new.get(k) for k in keys) and old.get("attrs", {}).get(
        "provenance"
    ) == new["attrs"].get("provenance")


def write_features(
    path: str | os.PathLike[str],
    features: np.ndarray,
    pids: np.ndarray,
    camids: np.ndarray,
    *,
    paths: list[str] | None = None,
    dsetids: np.ndarray | None = None,
    frames: np.ndarray | None = None,
    storage: str = "float32",
    attrs: dict[str, Any] | None = None,
) -> Path:
    """Write a whole feature file at once (atomically)."""
    writer = FeatureWriter(
        path,
        np.asarray(features).shape[1],
        storage=storage,
        attrs=attrs,
        with_paths=paths is not None,
        with_dsetids=dsetids is not None,
        with_frames=frames is not None,
    )
    writer.append(features, pids, camids, paths, dsetids, frames=frames)
    return writer.finish()
