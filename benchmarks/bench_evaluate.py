"""Speed and peak memory of evaluation and re-ranking, against baselines in the same run.

Usage::

    python benchmarks/bench_evaluate.py [--scale market|msmt|mars|both]
        [--quality good,poor,medium]
        [--torchreid-cy DIR] [--skip-dense] [--skip-rerank] [--repeats 3]

Synthetic features (identity centres + camera bias + noise, 2048-d float32) are written to
feature files at Market-1501 scale (3368 x 15913, 751 ids, 6 cameras) and MSMT17 scale
(11659 x 82161, 3060 ids, 15 cameras), and as MARS's tracklet files (1980 x 9330
tracklets, 636 test ids, 6 cameras; kind "tracklet" with /frames), at three qualities
(the noise sets the mAP: ``good`` about 0.95, ``medium`` about 0.67, ``poor`` about 0.1).
Each stage runs in a fresh process so its peak memory (VmHWM) is its own:

- ``metrics``: CMC + mAP + mINP from a precomputed distance matrix (distances excluded),
  against (a) torchreid's compiled evaluator on the same matrix (junk columns dropped, as
  torchreid drops junk at load) when ``--torchreid-cy DIR`` names a folder holding its
  built ``rank_cy`` extension, and always (a') a stand-in for it: its first two steps, an
  ``np.argsort`` of every row and the match matrix, a lower bound on its time.
- ``evaluate``: the whole ``reidkit evaluate`` command, wall time from the shell, against
  (c) its distance products alone (query x gallery features in numpy, in evaluation's row
  blocks) and the machine's sgemm rate, measured in the same run.
- ``rerank``: re-ranking + metrics from the feature files, against baseline (b): the
  distance matrices and re-ranking written the reference way (dense (Q+G)^2 arrays), with
  the metrics of both compared; and against (d) the all-pairs products it needs ((Q+G) x
  (Q+G) features in numpy, in row blocks, thrown away).

torchreid's extension is built outside this repository from its own sources
(torchreid/metrics/rank_cylib: ``cythonize`` rank_cy.pyx against this numpy).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import describe

SCALES = {
    "market": {"query": 3368, "gallery": 15913, "ids": 751, "cameras": 6},
    "msmt": {"query": 11659, "gallery": 82161, "ids": 3060, "cameras": 15},
    "mars": {"query": 1980, "gallery": 9330, "ids": 636, "cameras": 6, "tracklets": True},
}
DIM = 2048
CAMERA_BIAS = 0.3  # per dimension, against unit identity centres
NOISE = {"good": 2.55, "medium": 3.0, "poor": 4.1}  # per dimension: the feature quality


def make_features(folder: Path, scale: str, quality: str, seed: int = 0) -> tuple[Path, Path]:
    """Write query and gallery feature files for a scale and quality (cached in ``folder``)."""
    from reidkit.features.writer import write_features

    spec = SCALES[scale]
    noise = NOISE[quality]
    q_path = folder / f"{scale}-{quality}-query.h5"
    g_path = folder / f"{scale}-{quality}-gallery.h5"
    if q_path.exists() and g_path.exists():
        return q_path, g_path
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(spec["ids"], DIM)).astype(np.float32)
    bias = CAMERA_BIAS * rng.normal(size=(spec["cameras"], DIM)).astype(np.float32)
    for path, n in ((q_path, spec["query"]), (g_path, spec["gallery"])):
        pids = rng.integers(1, spec["ids"], n)
        camids = rng.integers(0, spec["cameras"], n)
        feats = np.empty((n, DIM), dtype=np.float32)
        for s in range(0, n, 8192):
            e = min(n, s + 8192)
            feats[s:e] = centres[pids[s:e]] + bias[camids[s:e]]
            feats[s:e] += noise * rng.normal(size=(e - s, DIM)).astype(np.float32)
        if path == g_path:  # distractors and junk, as in Market-1501: people of no identity
            others = rng.random(n) < 0.2
            pids[others] = np.where(rng.random(int(others.sum())) < 0.75, 0, -1)
            shape = (int(others.sum()), DIM)
            feats[others] = rng.normal(size=shape).astype(np.float32) + bias[camids[others]]
            feats[others] += noise * rng.normal(size=shape).astype(np.float32)
        if spec.get("tracklets"):  # one row per tracklet, as extract writes MARS
            frames = rng.integers(2, 920, n)
            attrs = {"kind": "tracklet", "temporal": "avg", "sample": "all"}
            write_features(path, feats, pids, camids, frames=frames, attrs=attrs)
        else:
            write_features(path, feats, pids, camids)
    return q_path, g_path


def peak_mb() -> float:
    """This process's peak resident memory in MiB. VmHWM, unlike ru_maxrss, does not
    inherit the parent's peak across fork and exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def torchreid_standin(dist: np.ndarray, q_pids, g_pids) -> None:
    """The first two steps of torchreid's compiled market evaluator, in numpy as it does
    them: the argsort of every row and the (Q, G) int64 match matrix. Its compiled loop
    over the rows comes on top, so this is a lower bound on its time."""
    indices = np.argsort(dist, axis=1)
    (g_pids[indices] == q_pids[:, None]).astype(np.int64)


def stage(name: str, q_path: str, g_path: str, torchreid_cy: str = "") -> dict:
    """Run one stage in this process; returns seconds, peak MB and its numbers."""
    from reidkit.features.store import read_features
    from reidkit.metrics.distance import pairwise_distance
    from reidkit.metrics.evaluate import evaluate_files
    from reidkit.metrics.rank import evaluate_distances
    from reidkit.metrics.ranking import Ranking, Rerank

    q, g = read_features(q_path), read_features(g_path)
    labels = (q.pids, q.camids, g.pids, g.camids)
    base_mb = peak_mb()
    if name in ("metrics", "standin", "torchreid"):
        dist = pairwise_distance(q.features, g.features)
        keep = g.pids != -1  # torchreid never sees junk: it drops it when loading
        if name != "metrics":
            dist = np.ascontiguousarray(dist[:, keep])
        start = time.perf_counter()
        if name == "metrics":
            result = evaluate_distances(dist, *labels).to_dict()
        elif name == "standin":
            torchreid_standin(dist, q.pids, g.pids[keep])
            result = {}
        else:
            sys.path.insert(0, torchreid_cy)
            from rank_cy import evaluate_cy

            cmc, mean_ap = evaluate_cy(dist, q.pids, g.pids[keep], q.camids, g.camids[keep], 50)
            result = {"mAP": float(mean_ap), "cmc": {"1": float(cmc[0])}}
        return {"seconds": time.perf_counter() - start, "peak_mb": peak_mb(), "result": result}
    if name == "products":
        return {"result": product_times(q.features, g.features)}
    start = time.perf_counter()
    if name == "evaluate":  # the command's own work, in this process, for its peak memory
        result = evaluate_files(q_path, g_path, Ranking(device="cpu"))
        result = {k: result[k] for k in ("mAP", "mINP", "cmc")}
    elif name == "rerank":
        result = evaluate_files(q_path, g_path, Ranking(rerank=Rerank(), device="cpu"))
        result = {k: result[k] for k in ("mAP", "mINP", "cmc")}
    elif name == "dense_rerank":
        from dense_rerank import dense_rerank

        keep = g.pids != -1  # reidkit's default pool: without junk, as torchreid
        gf = g.features[keep]
        final = dense_rerank(
            pairwise_distance(q.features, gf),
            pairwise_distance(q.features, q.features),
            pairwise_distance(gf, gf),
        )
        r = evaluate_distances(final, q.pids, q.camids, g.pids[keep], g.camids[keep])
        result = {"mAP": r.mAP, "mINP": r.mINP, "cmc": {str(k): v for k, v in r.cmc.items()}}
    else:
        raise SystemExit(f"unknown stage {name}")
    return {
        "seconds": time.perf_counter() - start,
        "peak_mb": peak_mb(),
        "base_mb": base_mb,
        "result": result,
    }


def product_times(qf: np.ndarray, gf: np.ndarray) -> dict:
    """The products evaluation and re-ranking cannot do without, timed bare in numpy (the
    BLAS evaluation runs on): query x gallery (evaluate's distances) and all x all features
    (re-ranking's), each in the row blocks evaluation uses and thrown away, best of 2;
    and the machine's sgemm rate (2048^3, best of 5)."""
    from reidkit.metrics.distance import row_blocks

    def timed(fn) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    def blocked(a: np.ndarray, b: np.ndarray) -> None:
        for start, stop in row_blocks(len(a), len(b)):
            a[start:stop] @ b.T

    square = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    square @ square
    sgemm = min(timed(lambda: square @ square) for _ in range(5))
    everyone = np.concatenate([qf, gf])
    qf[:64] @ gf.T  # BLAS's threads started
    query_gallery = min(timed(lambda: blocked(qf, gf)) for _ in range(2))
    all_pairs = min(timed(lambda: blocked(everyone, everyone)) for _ in range(2))
    dim = qf.shape[1]
    return {
        "sgemm_gflops": 2 * 2048**3 / sgemm / 1e9,
        "query_gallery_s": query_gallery,
        "query_gallery_gflops": 2 * len(qf) * len(gf) * dim / query_gallery / 1e9,
        "all_pairs_s": all_pairs,
        "all_pairs_gflops": 2 * len(everyone) ** 2 * dim / all_pairs / 1e9,
    }


def run_stage(name: str, q_path: Path, g_path: Path, *extra: str) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--stage", name, str(q_path), str(g_path), *extra],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_command(q_path: Path, g_path: Path) -> float:
    """Wall seconds of the whole `reidkit evaluate --json` command."""
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "reidkit",
            "evaluate",
            str(q_path),
            str(g_path),
            "--json",
            "--device",
            "cpu",
        ],
        capture_output=True,
        check=True,
    )
    return time.perf_counter() - start


def median_stage(name, q_path, g_path, repeats, *extra):
    runs = [run_stage(name, q_path, g_path, *extra) for _ in range(repeats)]
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "all": [round(r["seconds"], 3) for r in runs],
        "peak_mb": max(r["peak_mb"] for r in runs),
        "result": runs[0]["result"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["market", "msmt", "mars", "both"], default="market")
    parser.add_argument("--quality", default="good,poor", help="of good, medium, poor")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--torchreid-cy", default="", help="folder with torchreid's rank_cy")
    parser.add_argument("--skip-dense", action="store_true", help="skip baseline (b)")
    parser.add_argument("--skip-rerank", action="store_true")
    parser.add_argument("--data", type=Path, help="folder to cache feature files in")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("files", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(stage(args.stage, *args.files)))
        return
    print(describe())
    folder = args.data or Path(tempfile.mkdtemp(prefix="reidkit-bench-"))
    scales = ["market", "msmt"] if args.scale == "both" else [args.scale]
    for scale, quality in ((s, q) for s in scales for q in args.quality.split(",")):
        q_path, g_path = make_features(folder, scale, quality)
        spec = SCALES[scale]
        print(f"\n{scale} scale, {quality} features: {spec['query']} x {spec['gallery']} x {DIM}")
        repeats = args.repeats if scale == "market" else 1
        metrics = median_stage("metrics", q_path, g_path, repeats)
        m = metrics["result"]
        print(f"  features: mAP {m['mAP']:.4f}  rank-1 {m['cmc']['1']:.4f}")
        print(f"metrics (CMC+mAP+mINP)      {metrics['seconds']:8.3f} s  runs {metrics['all']}")
        if args.torchreid_cy:
            tr = median_stage("torchreid", q_path, g_path, repeats, args.torchreid_cy)
            print(f"(a) torchreid evaluate_cy   {tr['seconds']:8.3f} s  runs {tr['all']}")
            print(f"  speed-up over (a)         {tr['seconds'] / metrics['seconds']:8.1f}x")
            print(f"  torchreid: mAP {tr['result']['mAP']:.6f} (reidkit {m['mAP']:.6f})")
        standin = median_stage("standin", q_path, g_path, repeats)
        print(f"(a') argsort + match matrix {standin['seconds']:8.3f} s  runs {standin['all']}")
        print(f"  speed-up over (a')        {standin['seconds'] / metrics['seconds']:8.1f}x")
        walls = [run_command(q_path, g_path) for _ in range(repeats)]
        ev = run_stage("evaluate", q_path, g_path)
        print(
            f"whole evaluate command      {statistics.median(walls):8.3f} s  runs "
            f"{[round(w, 3) for w in walls]}  peak {ev['peak_mb']:.0f} MB"
        )
        p = run_stage("products", q_path, g_path)["result"]
        print(
            f"  its distance products     {p['query_gallery_s']:8.3f} s  (Q x G x {DIM} in "
            f"numpy: {p['query_gallery_gflops']:.0f} GFLOP/s, "
            f"{p['query_gallery_gflops'] / p['sgemm_gflops']:.2f} of sgemm 2048^3 at "
            f"{p['sgemm_gflops']:.0f}); the command is "
            f"{statistics.median(walls) / p['query_gallery_s']:.2f}x them (goal <= 1.3)"
        )
        if args.skip_rerank:
            continue
        rr = run_stage("rerank", q_path, g_path)
        print(
            f"rerank + metrics            {rr['seconds']:8.3f} s  peak {rr['peak_mb']:.0f} MB "
            f"(features loaded: {rr['base_mb']:.0f} MB)"
        )
        print(
            f"  all-pairs products        {p['all_pairs_s']:8.3f} s  ((Q+G)^2 x {DIM}: "
            f"{p['all_pairs_gflops']:.0f} GFLOP/s); re-ranking is "
            f"{rr['seconds'] / p['all_pairs_s']:.2f}x them (goal <= 1.3)"
        )
        print(
            f"  re-ranked: mAP {rr['result']['mAP']:.6f}  mINP {rr['result']['mINP']:.6f}  "
            f"rank-1 {rr['result']['cmc']['1']:.6f}"
        )
        if scale == "market" and not args.skip_dense:
            dense = run_stage("dense_rerank", q_path, g_path)
            print(
                f"baseline (b) dense rerank   {dense['seconds']:8.3f} s  peak "
                f"{dense['peak_mb']:.0f} MB"
            )
            print(f"  speed-up over (b)         {dense['seconds'] / rr['seconds']:8.1f}x")
            print(
                f"  dense:     mAP {dense['result']['mAP']:.6f}  mINP "
                f"{dense['result']['mINP']:.6f}  rank-1 {dense['result']['cmc']['1']:.6f}"
            )
            diff = max(abs(dense["result"][k] - rr["result"][k]) for k in ("mAP", "mINP"))
            print(f"  largest metric difference {diff:.2e}")
    if args.data is None:
        print(f"\n(feature files left in {folder})")


if __name__ == "__main__":
    main()
