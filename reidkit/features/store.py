"""HDF5 feature files, schema "reidkit.features/1".

    /features  float32 or float16 (N, D), chunked      /pids int64 (N,)   /camids int64 (N,)
    /paths     utf-8 strings (N,), relative to attrs["root"]   (optional)
    /dsetids   int64 (N,)                                      (optional)
    /frames    int64 (N,): frames of each tracklet             (tracklet files)
    attrs: schema, complete, model, checkpoint_sha256, image_size, flip, normalized, dataset,
           subset, root, config (JSON), reidkit_version, created; kind ("image", or
           "tracklet": one row per tracklet, /paths its first frame), temporal, sample

Readers need only /features, /pids and /camids, so files made by other tools can be read.

Writing them is :mod:`reidkit.features.writer`'s (crash-safe, resumable, published
atomically); which files belong together is :mod:`reidkit.features.origin`'s.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from reidkit.errors import DataError, MissingInputError

SCHEMA = "reidkit.features/1"
STORAGE_DTYPES = ("float32", "float16")


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


def feature_file_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Rows, dimension and attributes of a feature file, without reading the features."""
    import h5py

    with h5py.File(path, "r") as f:
        rows, dim = f["features"].shape
        return {"rows": int(rows), "dim": int(dim), "attrs": _decode_attrs(f.attrs)}


def _read_rows(dataset, spare_columns: int) -> np.ndarray:
    """A dataset's rows as float32; with spare columns, the leading columns of a wider array
    (read straight into it: no second copy of the features)."""
    if not spare_columns or dataset.ndim != 2 or not len(dataset):
        return dataset[()].astype(np.float32, copy=False)
    from reidkit.metrics.distance import rows_with_room

    n, d = dataset.shape
    rows = rows_with_room(n, d, spare_columns)
    dataset.read_direct(rows.base, dest_sel=np.s_[:, :d])
    return rows


def read_features(
    path: str | os.PathLike[str], *, allow_incomplete: bool = False, spare_columns: int = 0
) -> FeatureSet:
    """Read and validate a feature file.

    ``spare_columns``: room for that many more columns after each row, left uninitialised:
    the features are then the leading columns of an (N, D + spare_columns) array, which a
    consumer may extend in place (the gallery of :class:`reidkit.metrics.distance.
    GalleryDistances`) instead of copying them.

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
            features = _read_rows(f["features"], spare_columns)
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
    # a NaN or inf anywhere makes the sum non-finite: the rows are searched only then (or
    # when finite values overflow it), not with a mask of every value in fresh memory
    with np.errstate(over="ignore", invalid="ignore"):
        total = features.sum()
    if not np.isfinite(total):
        bad = ~np.isfinite(features).all(axis=1)
        if bad.any():
            raise DataError(
                f"{path}: {int(bad.sum())} feature row(s) contain NaN or inf, "
                f"the first at index {int(np.argmax(bad))}"
            )
    return FeatureSet(
        features, pids.reshape(n), camids.reshape(n), paths, dsetids, attrs, path, frames
    )
