"""``visrank``: ranked lists as pictures, ranked.csv, an HTML index and plots, for exactly
the ranking ``reidkit evaluate`` computes (same distances, protocol and re-ranking).

The output folder:

    OUT/ranked/0001_<query name>.jpg   one picture per query, in the chosen order
    OUT/ranked.csv                     the shown items of every picture, as data
    OUT/plots/cmc.png, distances.png, ap.png
    OUT/index.html                     (--html) sortable index, opens from the folder
    OUT/summary.json                   the evaluation and what was written

Everything is written into a hidden staging folder beside OUT that replaces OUT in one
rename when complete, so an interrupted run leaves OUT as it was. OUT is replaced only if it
is empty or an earlier visrank output (it has summary.json).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np

from reidkit.errors import MissingInputError, UsageError
from reidkit.fileio import file_lock, os_errors_named, replace_folder, write_text_atomic
from reidkit.metrics.evaluate import read_pair
from reidkit.metrics.ranking import Ranking
from reidkit.parallel import imap_workers
from reidkit.progress import no_progress
from reidkit.vis.plots import Curve, plot_ap, plot_cmc, plot_distances
from reidkit.vis.ranking import IGNORED_REASONS, rank_lists
from reidkit.vis.report import QueryRow, write_index_html, write_ranked_csv
from reidkit.vis.strip import (
    IGNORED_COLOUR,
    MATCH_COLOUR,
    QUERY_COLOUR,
    WRONG_COLOUR,
    Layout,
    Tile,
    draw_strip,
)

log = logging.getLogger(__name__)

SCHEMA = "reidkit.visrank/1"
SUMMARY = "summary.json"
ORDERS = ("worst", "best", "random", "input")
IMAGE_FORMATS = ("jpg", "png")
DEFAULT_NUM_QUERIES = 20
PLOTS = {"cmc": "plots/cmc.png", "distances": "plots/distances.png", "ap": "plots/ap.png"}


def read_query_list(path: str | os.PathLike[str], query) -> np.ndarray:
    """Query indices named in a text file, one per line: a 0-based index into the query
    file, or an image path as stored in it (or a file name, when only one query has it).
    Blank lines and lines starting with # are skipped; repeats are dropped.

    Raises:
        MissingInputError: the file does not exist.
        UsageError: a line that names no query (FILE:LINE in the message).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise MissingInputError(f"query list not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the query list ({exc})") from None
    stored = query.paths or []
    by_path = {p: i for i, p in reversed(list(enumerate(stored)))}
    by_name: dict[str, list[int]] = {}
    for i, p in enumerate(stored):
        by_name.setdefault(os.path.basename(p), []).append(i)
    chosen: dict[int, None] = {}
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.isdigit():
            index = int(line)
            if index >= len(query):
                raise UsageError(
                    f"{path}:{lineno}: query index {index} is out of range "
                    f"({query.path} has {len(query)} queries, 0 to {len(query) - 1})"
                )
        elif line in by_path:
            index = by_path[line]
        elif len(by_name.get(line, ())) == 1:
            index = by_name[line][0]
        else:
            why = "several queries have that file name" if line in by_name else "no such query"
            raise UsageError(f"{path}:{lineno}: {why}: {line!r} in {query.path}")
        chosen[index] = None
    if not chosen:
        raise UsageError(f"{path}: the query list names no query")
    return np.fromiter(chosen, dtype=np.int64, count=len(chosen))


def select_queries(
    ap: np.ndarray, candidates: np.ndarray, order: str, seed: int, limit: int | None
) -> np.ndarray:
    """Order the candidate queries and keep the first ``limit`` (all when None or 0).

    ``worst`` puts the lowest AP first, ``best`` the highest; queries without a valid match
    (AP NaN) come last in both, and equal APs keep candidate order.
    """
    if order == "random":
        chosen = np.random.default_rng(seed).permutation(candidates)
    elif order in ("worst", "best"):
        values = ap[candidates]
        skipped = np.isnan(values)
        key = np.where(skipped, 0.0, values if order == "worst" else -values)
        chosen = candidates[np.lexsort((key, skipped))]
    else:
        chosen = candidates
    return chosen[:limit] if limit else chosen


def _image_finder(features, root: Path | None):
    """path index -> the image file to draw (None when the file stores no paths)."""
    stored_root = features.attrs.get("root") or ""
    if root is None:
        bases = [Path(stored_root)] if stored_root else [Path()]
    else:
        # --root may be the dataset folder the paths are relative to, or the data root
        # above it (as --root means for the other commands)
        bases = [root, root / Path(stored_root).name] if stored_root else [root]

    def find(i: int) -> str | None:
        if features.paths is None:
            return None
        rel = features.paths[i]
        candidates = [Path(rel)] if os.path.isabs(rel) else [b / rel for b in bases]
        for candidate in candidates:
            if candidate.is_file():
                return str(candidate)
        return str(candidates[0])

    return find


def _safe_name(path: str, index: int) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem).strip("._")
    return stem or f"query{index}"


def _label(features, i: int) -> str:
    return features.paths[i] if features.paths is not None else f"#{i}"


def _query_rows(query, gallery, result, lists, chosen, image_format, images: bool):
    width = max(4, len(str(len(chosen))))
    # people read the camera of the file name (c6 is camera 6, camid 5)
    query_base = int(query.attrs.get("camera_base", 0))
    gallery_base = int(gallery.attrs.get("camera_base", 0))
    rows = []
    for ordinal, q in enumerate(chosen, 1):
        q = int(q)
        ap = None if np.isnan(result.ap[q]) else float(result.ap[q])
        first = int(result.first_match[q]) if result.first_match[q] > 0 else None
        part = lists.items(q)
        items = [
            {
                "rank": int(rank),
                "gallery_index": int(g),
                "gallery_path": _label(gallery, int(g)),
                "gallery_pid": int(gallery.pids[g]),
                "gallery_camid": int(gallery.camids[g]),
                "gallery_camera": int(gallery.camids[g]) + gallery_base,
                "distance": float(d),
                "match": bool(same),
                "ignored": IGNORED_REASONS[int(reason)],
            }
            for g, d, rank, same, reason in zip(
                lists.gallery[part],
                lists.distance[part],
                lists.rank[part],
                lists.same_pid[part],
                lists.ignored[part],
                strict=True,
            )
        ]
        name = f"ranked/{ordinal:0{width}d}_{_safe_name(_label(query, q), q)}.{image_format}"
        rows.append(
            QueryRow(
                ordinal=ordinal,
                image=name if images else "",
                index=q,
                path=_label(query, q),
                pid=int(query.pids[q]),
                camid=int(query.camids[q]),
                camera=int(query.camids[q]) + query_base,
                ap=ap,
                first_match=first,
                items=items,
            )
        )
    return rows


def _render_task(row: QueryRow, find_query, find_gallery, staging: Path, note: str = ""):
    """What one worker needs to draw one picture: (destination, header, tiles)."""
    if row.ap is None:
        score = "no valid match in the gallery"
    else:
        score = f"AP {100 * row.ap:.1f}%   first match: rank {row.first_match}"
    header = f"{row.ordinal}. {row.path}   pid {row.pid}  cam {row.camera}   {score}{note}"
    tiles = [
        Tile(find_query(row.index), QUERY_COLOUR, ("query", f"pid {row.pid}", f"cam {row.camera}"))
    ]
    for item in row.items:
        if item["ignored"]:
            colour, first = IGNORED_COLOUR, f"({item['ignored']})"
        else:
            colour, first = (MATCH_COLOUR if item["match"] else WRONG_COLOUR), f"#{item['rank']}"
        lines = (
            first,
            f"d {item['distance']:.4f}",
            f"pid {item['gallery_pid']} cam {item['gallery_camera']}",
        )
        tiles.append(Tile(find_gallery(item["gallery_index"]), colour, lines))
    return str(staging / row.image), header, tiles


def _draw_and_save(task) -> list[str | None]:
    dest, header, tiles = task
    image, missing = draw_strip(header, tiles, Layout())
    if dest.endswith(".png"):
        image.save(dest, format="PNG")
    else:
        image.save(dest, format="JPEG", quality=92)
    return missing


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    if out.is_dir() and not (out / SUMMARY).is_file() and any(out.iterdir()):
        raise UsageError(
            f"--out {out} exists and is not a visrank output folder (it has no {SUMMARY})",
            hint="choose a new or empty folder; visrank replaces its own earlier output only",
        )


@contextlib.contextmanager
def _removed_on_failure(staging: Path):
    """A staging folder is removed when the run fails: on a full disk it would keep the
    disk full (a kill leaves it to the next run, which clears it first)."""
    try:
        yield
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def visrank_files(
    query_path: str | os.PathLike[str],
    gallery_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    ranking: Ranking | None = None,
    *,
    allow_mismatch: bool = False,
    topk: int = 10,
    num_queries: int | None = None,
    queries: str | os.PathLike[str] | None = None,
    order: str | None = None,
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
    html: bool = False,
    images: bool = True,
    plots: bool = True,
    image_format: str = "jpg",
    workers: int | None = 0,
    progress_factory=None,
) -> dict:
    """Rank the gallery for each query as evaluate does; draw, list and plot the result.

    Args:
        ranking: how to rank (default: ``Ranking()``, metric and protocol from the files).
        allow_mismatch: rank files made by different models or options anyway.
        num_queries: queries to show; None: 20, or all of ``queries``; 0: all.
        queries: a file naming the queries to show (see :func:`read_query_list`).
        order: worst, best, random or input; None: worst, or input with ``queries``.
        root: where the images are, overriding the root stored in the feature files.
        workers: processes drawing pictures (0: one per core).

    Returns:
        The summary document (also written to OUT/summary.json).

    Raises:
        UsageError: bad options, or OUT is something other than a visrank output.
        MissingInputError, DataError: unreadable feature files or query list.
        LockedError: another visrank is writing OUT.
    """
    ranking = ranking or Ranking()
    if topk < 1:
        raise UsageError(f"--topk must be at least 1, got {topk}")
    if num_queries is not None and num_queries < 0:
        raise UsageError(f"--num-queries must be 0 (all) or more, got {num_queries}")
    if order is not None and order not in ORDERS:
        raise UsageError(f"unknown --order {order!r}", hint=f"orders: {', '.join(ORDERS)}")
    if image_format not in IMAGE_FORMATS:
        raise UsageError(
            f"unknown --image-format {image_format!r}", hint=f"formats: {', '.join(IMAGE_FORMATS)}"
        )
    progress = progress_factory or (lambda name: no_progress)
    out = Path(out)
    _check_out(out)
    start = time.perf_counter()
    query, gallery = read_pair(query_path, gallery_path, allow_mismatch=allow_mismatch)
    ranking = ranking.resolve(query, gallery)
    if queries is not None:
        candidates = read_query_list(queries, query)
        order = order or "input"
    else:
        candidates = np.arange(len(query))
        order = order or "worst"
        num_queries = DEFAULT_NUM_QUERIES if num_queries is None else num_queries
    blocks = ranking.blocks(query, gallery, progress("rerank" if ranking.rerank else "rank"))
    result, lists, pairs = rank_lists(
        query, gallery, blocks, protocol=ranking.protocol, ranks=ranking.ranks, topk=topk, seed=seed
    )
    ranked_seconds = time.perf_counter() - start
    chosen = select_queries(result.ap, candidates, order, seed, num_queries)
    rows = _query_rows(query, gallery, result, lists, chosen, image_format, images)
    evaluation = ranking.describe(
        result, num_gallery=len(gallery), query=query_path, gallery=gallery_path
    )
    missing: set[str | None] = set()
    # tracklet files store each tracklet's first frame: that is what is drawn, and said
    tracklets = "tracklet" in (query.attrs.get("kind"), gallery.attrs.get("kind"))
    note = "   (tracklets: first frame shown)" if tracklets else ""
    staging = out.with_name(f".{out.name}.partial")
    with file_lock(out), os_errors_named(out), _removed_on_failure(staging):
        _check_out(out)
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "plots").mkdir(parents=True)
        if images:
            (staging / "ranked").mkdir()
            image_root = Path(root) if root is not None else None
            find_query = _image_finder(query, image_root)
            find_gallery = _image_finder(gallery, image_root)
            tasks = (_render_task(row, find_query, find_gallery, staging, note) for row in rows)
            draw_progress = progress("draw")
            draw_progress(0, len(rows))
            for done, lost in enumerate(imap_workers(_draw_and_save, tasks, workers), 1):
                missing.update(lost)
                draw_progress(done, len(rows))
        written_plots = {}
        if plots:
            name = query.attrs.get("model") or Path(query_path).stem
            curve = Curve(name, np.arange(1, len(result.cmc_curve) + 1), result.cmc_curve)
            plot_cmc(
                [curve],
                staging / PLOTS["cmc"],
                title=f"CMC, {ranking.protocol} protocol{', re-ranked' if ranking.rerank else ''} "
                f"(mAP {100 * result.mAP:.1f}%)",
            )
            plot_distances(
                pairs.positive,
                pairs.negative,
                staging / PLOTS["distances"],
                positive_total=pairs.positive_total,
                negative_total=pairs.negative_total,
                title=f"{ranking.metric} distances{' (re-ranked)' if ranking.rerank else ''}",
            )
            plot_ap(result.ap, staging / PLOTS["ap"])
            written_plots = dict(PLOTS)
        write_ranked_csv(staging / "ranked.csv", rows)
        summary = {
            "schema": SCHEMA,
            "out": str(out),
            "evaluation": evaluation,
            "order": order,
            "seed": seed,
            "topk": topk,
            "queries_shown": len(rows),
            "images": len(rows) if images else 0,
            "image_format": image_format if images else None,
            "missing_images": len(missing),
            "shown": "the first frame of each tracklet" if tracklets else "each image",
            "ranked_csv": "ranked.csv",
            "index_html": "index.html" if html else None,
            "plots": written_plots,
        }
        if html:
            write_index_html(staging / "index.html", rows, summary, list(written_plots.values()))
        summary["seconds"] = {
            "rank": round(ranked_seconds, 3),
            "total": round(time.perf_counter() - start, 3),
        }
        write_text_atomic(staging / SUMMARY, json.dumps(summary, indent=2) + "\n")
        replace_folder(staging, out)
    if missing:
        first = min((m for m in missing if m), default=None)
        log.warning(
            "%d image(s) not found, drawn as placeholders%s",
            len(missing),
            f" (first: {first}; pass --root to say where the images are)"
            if first
            else " (the feature files store no image paths)",
        )
    return summary
