"""Plots of an evaluation (PNG, PDF or SVG, matplotlib): CMC curves, pair-distance histograms, the
distribution of per-query AP, and CMC curves of several evaluations overlaid.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot global state, no display
needed) and written atomically.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reidkit.errors import DataError, MissingInputError, UsageError
from reidkit.fileio import atomic_path, is_hdf5

DPI = 100
FORMATS = ("png", "pdf", "svg")  # what a plot's file name may end in


@dataclass
class Curve:
    """A CMC curve to draw: fractions at 1-based ranks."""

    label: str
    ranks: np.ndarray
    values: np.ndarray


def plot_format(path: str | os.PathLike[str], option: str = "--plot") -> str:
    """The file format a plot's name asks for (its suffix).

    Raises:
        UsageError: a suffix that is not one of :data:`FORMATS`.
    """
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise UsageError(
            f"{option} {path}: a plot is written as {', '.join(f'.{f}' for f in FORMATS)}, "
            f"not {'.' + suffix if suffix else 'a name without a suffix'}"
        )
    return suffix


def _save(fig, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=plot_format(path), dpi=DPI)
    return path


def _figure(width: float = 6.4, height: float = 4.4):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def plot_cmc(curves: list[Curve], path: str | os.PathLike[str], title: str = "CMC") -> Path:
    """Draw one or more CMC curves (percent against rank) with a legend."""
    fig, ax = _figure()
    for curve in curves:
        label = (
            f"{curve.label} (rank-1 {100 * curve.values[0]:.1f}%)"
            if curve.ranks[0] == 1
            else (curve.label)
        )
        marker = "o" if len(curve.ranks) <= 10 else None
        ax.plot(curve.ranks, 100 * np.asarray(curve.values), marker=marker, label=label)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_ylim(0, 100)
    ax.set_xlim(1, max(2, *(int(c.ranks[-1]) for c in curves)))
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="best")
    return _save(fig, path)


def plot_distances(
    positive: np.ndarray,
    negative: np.ndarray,
    path: str | os.PathLike[str],
    *,
    positive_total: int,
    negative_total: int,
    title: str = "pair distances",
) -> Path:
    """Histograms (densities) of same-identity and different-identity pair distances."""
    fig, ax = _figure()
    values = [v for v in (positive, negative) if len(v)]
    lo = min(float(v.min()) for v in values) if values else 0.0
    hi = max(float(v.max()) for v in values) if values else 1.0
    bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 61)
    for data, total, name, colour in (
        (positive, positive_total, "same identity", "tab:green"),
        (negative, negative_total, "different identity", "tab:red"),
    ):
        if not len(data):
            continue
        shown = f"{total:,} pairs" if len(data) == total else f"sample of {len(data):,}/{total:,}"
        ax.hist(data, bins=bins, density=True, alpha=0.55, color=colour, label=f"{name} ({shown})")
    ax.set_xlabel("distance")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def plot_ap(ap: np.ndarray, path: str | os.PathLike[str], title: str = "per-query AP") -> Path:
    """Histogram of per-query AP in percent (skipped queries, NaN, left out), with the mean."""
    ap = np.asarray(ap, dtype=float)
    ap = 100 * ap[~np.isnan(ap)]
    fig, ax = _figure()
    ax.hist(ap, bins=np.linspace(0, 100, 21), color="tab:blue", alpha=0.8)
    if len(ap):
        ax.axvline(ap.mean(), color="black", linestyle="--", label=f"mAP {ap.mean():.1f}%")
        ax.legend()
    ax.set_xlabel("AP (%)")
    ax.set_ylabel("queries")
    ax.set_title(f"{title} ({len(ap)} queries)")
    return _save(fig, path)


def curve_from_result(result: dict, label: str) -> Curve:
    """The CMC curve of an evaluation's JSON document (``cmc_curve``, else the ``cmc`` points)."""
    if result.get("cmc_curve"):
        values = np.asarray(result["cmc_curve"], dtype=float)
        return Curve(label, np.arange(1, len(values) + 1), values)
    points = sorted((int(r), float(v)) for r, v in result["cmc"].items())
    return Curve(label, np.array([r for r, _ in points]), np.array([v for _, v in points]))


def read_result(path: str | os.PathLike[str]) -> dict:
    """An evaluation's JSON document (``evaluate --json`` output or a visrank summary.json).

    Raises:
        MissingInputError: the file does not exist.
        DataError: not JSON, or without mAP and CMC.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MissingInputError(f"evaluation file not found: {path}") from None
    except UnicodeDecodeError:
        kind = "an HDF5 file (a feature file?)" if is_hdf5(path) else "not text"
        raise DataError(
            f"{path}: not an evaluation result: it is {kind}",
            hint="save one with: reidkit evaluate QUERY.h5 GALLERY.h5 --json > result.json",
        ) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    try:
        result = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if isinstance(result, dict) and isinstance(result.get("evaluation"), dict):
        result = result["evaluation"]  # a visrank summary
    if (
        not isinstance(result, dict)
        or "mAP" not in result
        or not isinstance(result.get("cmc"), dict)
    ):
        raise DataError(
            f"{path}: not an evaluation result (no mAP and cmc)",
            hint="save one with: reidkit evaluate QUERY.h5 GALLERY.h5 --json > result.json",
        )
    return result


def _default_labels(paths: list[Path]) -> list[str]:
    """File names without extension; parent/name, then the whole path, where they collide."""
    for make in (lambda p: p.stem, lambda p: f"{p.parent.name}/{p.stem}", str):
        labels = [make(p) for p in paths]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{i}: {p}" for i, p in enumerate(paths, 1)]


def compare_results(
    paths: list[str | os.PathLike[str]],
    *,
    labels: list[str] | None = None,
    plot: str | os.PathLike[str] | None = None,
) -> dict:
    """Read several evaluations; optionally overlay their CMC curves in one figure.

    Returns:
        {"results": [{label, path, mAP, mINP, cmc, protocol, metric, rerank}], "plot": path}

    Raises:
        UsageError: the number of labels differs from the number of results.
        MissingInputError, DataError: a result that cannot be read.
    """
    paths = [Path(p) for p in paths]
    if labels and len(labels) != len(paths):
        raise UsageError(
            f"{len(labels)} --label value(s) for {len(paths)} result(s): give one per result"
        )
    labels = list(labels) if labels else _default_labels(paths)
    if plot is not None:
        plot_format(plot)  # before any work
    results = [read_result(p) for p in paths]
    if plot is not None:
        plot_cmc(
            [curve_from_result(r, label) for r, label in zip(results, labels, strict=True)],
            plot,
            title="CMC",
        )
    return {
        "results": [
            {
                "label": label,
                "path": str(path),
                "mAP": r["mAP"],
                "mINP": r.get("mINP"),
                "cmc": r["cmc"],
                "protocol": r.get("protocol"),
                "metric": r.get("metric"),
                "rerank": r.get("rerank"),
            }
            for path, label, r in zip(paths, labels, results, strict=True)
        ],
        "plot": None if plot is None else str(plot),
    }
