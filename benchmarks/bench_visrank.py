"""visrank at Market-1501 size: ranking overhead against evaluate, drawing speed, memory.

Usage::

    python benchmarks/bench_visrank.py [--data DIR] [--workers 0] [--queries all|N]

Renders synthreid's ``market`` preset (3368 queries, 15913 gallery images plus junk) into
DIR once, and writes 512-d feature files for it (identity centre + camera bias + noise, so
per-query AP spreads from 0 to 1) whose /paths point at the real images. Each stage runs
in a fresh process, so its peak memory (ru_maxrss) is its own:

- ``evaluate``: ``reidkit evaluate`` on the two files: the baseline.
- ``rank only``: ``reidkit visrank --no-images --no-plots --num-queries 0``: the same
  ranking plus every query's top-10 list and ranked.csv; the ratio to evaluate is the cost
  of collecting the lists.
- ``full``: every query drawn (``--num-queries 0``), with plots and index.html; pictures
  per second and peak memory, which must not grow with the number of pictures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from machine import describe

DIM = 512


def make_files(data: Path) -> tuple[Path, Path]:
    from reidkit.data.catalog import load_dataset
    from reidkit.data.synth import generate
    from reidkit.features.writer import write_features

    generate(data, "market", seed=0)
    dataset = load_dataset("synthreid", data)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2000, DIM)).astype(np.float32)
    bias = 0.5 * rng.normal(size=(8, DIM)).astype(np.float32)
    files = []
    for subset in ("query", "gallery"):
        samples = dataset.subset(subset)
        pids = np.array([s.pid for s in samples])
        cams = np.array([s.camid for s in samples])
        feats = centres[pids + 1] + bias[cams] + 2.0 * rng.normal(size=(len(pids), DIM))
        path = data / f"bench-{subset}.h5"
        write_features(
            path,
            feats.astype(np.float32),
            pids,
            cams,
            paths=[str(Path(s.path).relative_to(dataset.root)) for s in samples],
            attrs={"root": str(dataset.root)},
        )
        files.append(path)
    return files[0], files[1]


def timed(args: list[str]) -> tuple[float, float, dict]:
    """Wall seconds, peak RSS (MiB; the process or its largest worker) and the JSON output
    of ``python -m reidkit ARGS``."""
    code = (
        "import resource, runpy, sys; sys.argv = ['reidkit'] + sys.argv[1:];\n"
        "try:\n    runpy.run_module('reidkit', run_name='__main__')\n"
        "finally:\n    print(max(resource.getrusage(w).ru_maxrss for w in "
        "(resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)), file=sys.stderr)"
    )
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed: reidkit {' '.join(args)}\n{proc.stderr}")
    rss_kib = int(proc.stderr.strip().splitlines()[-1])
    return seconds, rss_kib / 1024, json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/bench_visrank"))
    parser.add_argument("--workers", default="0")
    parser.add_argument("--queries", default="0", help="pictures to draw in the full run")
    args = parser.parse_args()
    print(describe())
    query, gallery = make_files(args.data)
    common = [str(query), str(gallery), "--device", "cpu", "--json", "-q"]
    t_eval, m_eval, result = timed(["evaluate", *common])
    print(
        f"evaluate:  {t_eval:6.1f} s  peak {m_eval:6.0f} MiB   "
        f"mAP {100 * result['mAP']:.1f}%  ({result['num_query']} x {result['num_gallery']})"
    )
    out = args.data / "vis"
    t_rank, m_rank, summary = timed(
        ["visrank", *common, "--out", str(out), "--no-images", "--no-plots", "--num-queries", "0"]
    )
    assert summary["evaluation"]["mAP"] == result["mAP"]
    print(
        f"rank only: {t_rank:6.1f} s  peak {m_rank:6.0f} MiB   "
        f"ratio to evaluate {t_rank / t_eval:.2f}x (same mAP), "
        f"{summary['queries_shown']} lists in ranked.csv"
    )
    for n in ("200", args.queries):
        t_full, m_full, summary = timed(
            ["visrank", *common, "--out", str(out), "--num-queries", n, "--html",
             "--workers", args.workers]
        )  # fmt: skip
        drawn = summary["images"]
        print(
            f"full ({drawn:4d} pictures): {t_full:6.1f} s  peak {m_full:6.0f} MiB   "
            f"{drawn / max(1e-9, t_full - t_rank):.0f} pictures/s beyond the ranking, "
            f"missing images {summary['missing_images']}"
        )


if __name__ == "__main__":
    main()
