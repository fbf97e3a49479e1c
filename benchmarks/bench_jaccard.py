"""Memory and time of Jaccard distances among one set (clustering for adaptation), sparse
(reidkit.metrics.jaccard) against the dense way of the reference code, in the same run.

Usage::

    python benchmarks/bench_jaccard.py [--size 32621] [--ids 1041] [--dense-size 3000]

Synthetic L2-normalised 2048-d features of identities (identity centre + ``--noise`` per
dimension: 3 leaves the identities apart, 4 mixes their neighbourhoods; by default MSMT17's
training set: 32,621 images of 1,041 identities), Cluster Contrast's settings (k1
30, k2 6; DBSCAN eps 0.6, min_samples 4). Each stage runs in its own process; peak is its
VmHWM, features included:

- ``sparse`` at ``--size``: ``jaccard_among``, then scikit-learn's DBSCAN on the sparse
  matrix (the issue's goal: at most 2 GB at MSMT17's size), keeping every pair whose sets
  overlap (distance under 1) and the pairs under 0.61 (what DBSCAN at eps 0.6 needs);
- at ``--dense-size`` (the dense way's N^2 arrays grow fast): ``sparse`` and the baseline,
  ``dense_rerank.dense_jaccard_among`` (dense N x N distances, V, V after query expansion,
  Jaccard), their largest difference and whether DBSCAN finds the same clusters on both.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_evaluate import peak_mb
from machine import describe

DIM = 2048


def features(size: int, ids: int, noise: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((ids, DIM), dtype=np.float32)
    labels = np.sort(rng.integers(0, ids, size))
    out = centres[labels]
    out += noise * rng.standard_normal((size, DIM), dtype=np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def stage(name: str, size: int, ids: int, noise: float, below: float, save: str = "") -> dict:
    from sklearn.cluster import DBSCAN

    feats = features(size, ids, noise)
    start = time.perf_counter()
    if name == "sparse":
        from reidkit.metrics.jaccard import jaccard_among

        matrix = jaccard_among(feats, k1=30, k2=6, below=below)
        stored = matrix.nnz
    else:
        from dense_rerank import dense_jaccard_among

        from reidkit.metrics.distance import pairwise_distance

        distances = pairwise_distance(feats, feats, normalize=True)  # as jaccard_among finds them
        matrix = dense_jaccard_among(distances, k1=30, k2=6)
        stored = matrix.size
    seconds = time.perf_counter() - start
    labels = DBSCAN(eps=0.6, min_samples=4, metric="precomputed").fit_predict(matrix)
    clustered = time.perf_counter() - start - seconds
    if save:  # as a dense matrix: 1.0 where the sparse one stores nothing
        if name == "sparse":
            coo, matrix = matrix.tocoo(), np.ones(matrix.shape, dtype=np.float32)
            matrix[coo.row, coo.col] = coo.data
        np.save(save, matrix)
    return {
        "seconds": seconds,
        "dbscan_seconds": clustered,
        "peak_mb": peak_mb(),
        "stored": int(stored),
        "clusters": len(set(labels.tolist()) - {-1}),
        "outliers": int((labels == -1).sum()),
        "labels": labels.tolist() if save else None,
    }


def run_stage(name, size, ids, noise, below=1.0, save="") -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--stage", name, "--size", str(size), "--ids", str(ids),
         "--noise", str(noise), "--below", str(below), "--save", save],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def show(label: str, r: dict, size: int) -> None:
    print(
        f"{label:<28} {r['seconds']:8.1f} s  peak {r['peak_mb']:7.0f} MB  stored "
        f"{r['stored']:>12,} ({r['stored'] / size:.0f} a row)  DBSCAN {r['dbscan_seconds']:.1f} s:"
        f" {r['clusters']} clusters, {r['outliers']} outliers"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32621)
    parser.add_argument("--ids", type=int, default=1041)
    parser.add_argument("--dense-size", type=int, default=8000)
    parser.add_argument("--noise", type=float, default=3.0, help="per dimension (centres 1)")
    parser.add_argument("--below", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--save", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(stage(args.stage, args.size, args.ids, args.noise, args.below, args.save)))
        return
    print(describe())
    small, small_ids = args.dense_size, max(2, round(args.ids * args.dense_size / args.size))
    print(f"\n{small} images of {small_ids} identities, 2048-d (k1 30, k2 6; eps 0.6)")
    with tempfile.TemporaryDirectory() as folder:
        files = [str(Path(folder) / f"{name}.npy") for name in ("sparse", "dense")]
        sparse = run_stage("sparse", small, small_ids, args.noise, save=files[0])
        dense = run_stage("dense", small, small_ids, args.noise, save=files[1])
        difference = float(np.abs(np.load(files[0]) - np.load(files[1])).max())
    show("sparse (reidkit)", sparse, small)
    show("dense (the reference way)", dense, small)
    print(f"  peak memory: dense / sparse {dense['peak_mb'] / sparse['peak_mb']:.1f}x")
    print(f"  largest difference of the two matrices {difference:.1e}; same DBSCAN clusters: "
          f"{sparse['labels'] == dense['labels']}")  # fmt: skip
    print(f"\n{args.size} images of {args.ids} identities (MSMT17's training set by default)")
    for below in (1.0, 0.61):  # every pair that overlaps; those DBSCAN at eps 0.6 needs
        big = run_stage("sparse", args.size, args.ids, args.noise, below)
        show(f"sparse, pairs under {below}", big, args.size)
    each = 4 * args.size**2 / 2**20
    print(f"  goal: at most 2048 MB; the dense way's N x N float32 arrays: {each:.0f} MB each")


if __name__ == "__main__":
    main()
