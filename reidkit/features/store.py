"""HDF5 feature files, schema "reidkit.features/1".

    /features  float32 or float16 (N, D), chunked      /pids int64 (N,)   /camids int64 (N,)
    /paths     utf-8 strings (N,), relative to attrs["root"]   (optional)
    /dsetids   int64 (N,)                                      (optional)
    /frames    int64 (N,): frames of each tracklet             (tracklet files)
    attrs: schema, complete, model, checkpoint_sha256, image_size, flip, normalized, dataset,
           subset, root, config (JSON), reidkit_version, created; kind ("image", or
           "tracklet": one row per tracklet, /paths its first frame), temporal, sample

Readers need only /features, /pids and /camids, so files made by other tools can be read.

Writing is crash-safe and resumable. HDF5 files are not safe against a process killed in
the middle of a write, so rows are first flushed as numbered chunk files, each written
atomically, into the folder ``<out>.partial/``; a rerun continues after the last chunk.
``finish`` assembles the chunks into ``<out>`` (written to a temporary name, then renamed)
and removes the folder. A reader therefore never sees a half-written feature file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from reidkit.errors import DataError, MissingInputError, UsageError
from reidkit.fileio import atomic_path, fsync_dir, write_text_atomic

SCHEMA = "reidkit.features/1"
STORAGE_DTYPES = ("float32", "float16")
META = "meta.json"
CHUNK_ROWS = 4096  # the default flush size of a writer
CHUNK_BYTES = 2**20  # HDF5 chunks of about 1 MiB: what HDF5's default chunk cache holds
# Attributes that say how features were made: a query and a gallery file that differ in any
# of them do not belong together (the attribute, and how to show its value).
PROVENANCE_FIELDS = {
    "model": "model",
    "model_options": "model options",
    "checkpoint_sha256": "checkpoint",
    "seed": "seed of the untrained model",
    "image_size": "image size",
    "mean": "pixel mean",
    "std": "pixel std",
    "flip": "flip averaging",
    "normalized": "feature normalisation",
    "onnx_half": "float16 ONNX graph",
    "kind": "kind of rows (image or tracklet)",
    "temporal": "temporal pooling",
    "sample": "frames pooled per tracklet",
}


@dataclass
class FeatureSet:
    """Features with their labels, as read from one file.

    Attributes:
        features: (N, D) float32.
        pids, camids: (N,) int64.
        paths: image paths relative to ``attrs["root"]``, when the file has them.
        dsetids: (N,) int64, when the file has them.
        frames: (N,) int64, the frames of each tracklet (tracklet files).
        attrs: the file's attributes (``config`` decoded from JSON).
        path: the file read.
    """

    features: np.ndarray
    pids: np.ndarray
    camids: np.ndarray
    paths: list[str] | None = None
    dsetids: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    frames: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.pids)

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])


def _attr(value: Any) -> Any:
    """An attribute value h5py can store (JSON text for dicts, lists of strings)."""
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if value is None:
        return ""
    return value


def _decode_attrs(raw) -> dict[str, Any]:
    attrs = {}
    for key, value in raw.items():
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        attrs[key] = value
    if isinstance(attrs.get("config"), str) and attrs["config"]:
        with contextlib.suppress(ValueError):
            attrs["config"] = json.loads(attrs["config"])
    return attrs


def base_attrs(**attrs: Any) -> dict[str, Any]:
    """The schema attributes every file gets, merged with the caller's."""
    from reidkit import __version__

    return {
        "schema": SCHEMA,
        "reidkit_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **attrs,
    }


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


def feature_file_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Rows, dimension and attributes of a feature file, without reading the features."""
    import h5py

    with h5py.File(path, "r") as f:
        rows, dim = f["features"].shape
        return {"rows": int(rows), "dim": int(dim), "attrs": _decode_attrs(f.attrs)}


def read_features(path: str | os.PathLike[str], *, allow_incomplete: bool = False) -> FeatureSet:
    """Read and validate a feature file.

    Raises:
        MissingInputError: the file does not exist.
        DataError: not an HDF5 file, a required dataset missing, lengths that differ,
            non-finite rows (how many and the first index), or a file marked incomplete.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        partial = path.with_name(path.name + ".partial")
        hint = (
            "the extraction that writes it was interrupted: rerun it" if partial.exists() else None
        )
        raise MissingInputError(f"feature file not found: {path}", hint=hint)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:
        for name in ("features", "pids", "camids"):
            if name not in f:
                raise DataError(
                    f"{path}: no /{name} dataset",
                    hint="a feature file holds /features (N, D), /pids (N,) and /camids (N,)",
                )
        attrs = _decode_attrs(f.attrs)
        schema = attrs.get("schema")
        if schema is not None and schema != SCHEMA:  # files of other tools have no schema
            raise DataError(
                f"{path}: feature file schema {schema!r} is not one this reidkit reads ({SCHEMA})",
                hint="a newer reidkit wrote it: upgrade reidkit, or extract the features again",
            )
        if attrs.get("complete") is False and not allow_incomplete:
            raise DataError(f"{path}: the file is marked incomplete", hint="rerun the extraction")
        try:
            features = f["features"][()].astype(np.float32, copy=False)
            pids = f["pids"][()].astype(np.int64, copy=False)
            camids = f["camids"][()].astype(np.int64, copy=False)
            paths = (
                [p.decode("utf-8") if isinstance(p, bytes) else str(p) for p in f["paths"][()]]
                if "paths" in f
                else None
            )
            dsetids = f["dsetids"][()].astype(np.int64) if "dsetids" in f else None
            frames = f["frames"][()].astype(np.int64) if "frames" in f else None
        except (OSError, ValueError, TypeError) as exc:
            raise DataError(f"{path}: cannot read the datasets ({exc})") from None
    if features.ndim != 2:
        raise DataError(f"{path}: /features must be 2-D (N, D), found shape {features.shape}")
    n = len(features)
    for name, values in (
        ("pids", pids),
        ("camids", camids),
        ("paths", paths),
        ("dsetids", dsetids),
        ("frames", frames),
    ):
        if values is not None and len(values) != n:
            raise DataError(f"{path}: /{name} has {len(values)} rows but /features has {n}")
    if n == 0:
        raise DataError(f"{path}: the file holds no rows")
    bad = ~np.isfinite(features).all(axis=1)
    if bad.any():
        raise DataError(
            f"{path}: {int(bad.sum())} feature row(s) contain NaN or inf, "
            f"the first at index {int(np.argmax(bad))}"
        )
    return FeatureSet(
        features, pids.reshape(n), camids.reshape(n), paths, dsetids, attrs, path, frames
    )


def provenance_of(features: FeatureSet) -> dict[str, Any]:
    """The PROVENANCE_FIELDS a file states (pixel mean and std of files written before
    they were attributes of their own come from the provenance's options)."""
    attrs = features.attrs
    found = {k: attrs[k] for k in PROVENANCE_FIELDS if k in attrs}
    if "model" in attrs:  # every reidkit file: one that does not say float16 is float32
        found.setdefault("onnx_half", False)
        found.setdefault("kind", "image")  # and one that does not say tracklet, of images
    if "mean" not in found and isinstance(attrs.get("provenance"), str):
        with contextlib.suppress(ValueError, AttributeError):
            options = json.loads(attrs["provenance"]).get("options", {})
            found.update({k: options[k] for k in ("mean", "std") if k in options})
    return found


def check_same_origin(query: FeatureSet, gallery: FeatureSet) -> None:
    """Refuse a query and a gallery file made differently (another model, checkpoint, image
    size, flip or normalisation); only the fields both files state are compared.

    Raises:
        UsageError: naming both files and the first field that differs.
    """
    if query.dim != gallery.dim:
        raise UsageError(
            f"{query.path} has {query.dim}-dimensional features but {gallery.path} has "
            f"{gallery.dim}: they must come from the same model"
        )
    mine, theirs = provenance_of(query), provenance_of(gallery)
    for key, what in PROVENANCE_FIELDS.items():
        if key in mine and key in theirs and not _same_value(mine[key], theirs[key]):
            shown = [_show(key, mine[key]), _show(key, theirs[key])]
            if key == "checkpoint_sha256":  # which files the weights came from, when known
                shown = [
                    f"{v}{_weights_file(f.attrs)}"
                    for v, f in zip(shown, (query, gallery), strict=True)
                ]
            raise UsageError(
                f"{query.path} and {gallery.path} do not belong together: {what} "
                f"{shown[0]} against {shown[1]}",
                hint="extract both with the same model and options, or pass --allow-mismatch",
            )


def _weights_file(attrs: dict[str, Any]) -> str:
    """' (from FILE)': the checkpoint, or the ONNX file, a feature file was extracted with."""
    if attrs.get("onnx"):
        return f" (from {attrs['onnx']}, an ONNX export)"
    return f" (from {attrs['checkpoint']})" if attrs.get("checkpoint") else ""


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return float(a) == float(b)
    return a == b


def _show(key: str, value: Any) -> str:
    if key == "checkpoint_sha256":
        return f"sha256 {str(value)[:12]}" if value else "(none: untrained)"
    if key == "image_size" and isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    return str(value)
