"""Speed of `reidkit datasets synth`: images written per second, per core.

Usage::

    python benchmarks/bench_synth.py [--preset small] [--repeats 3]

For each repeat, renders the preset into a fresh temporary folder with one worker, then
with one worker per core, and prints images/s; the render-only rate (no files, no
orchestration) is measured in the same run as the baseline, so the ratio says what writing
and process management cost. Target: at least 500 images/s per core.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile

from bench_synth_render import run_once
from machine import describe

from reidkit.data.synth import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(describe())
    rates: dict[str, list[float]] = {
        "render only, 1 core": [],
        "synth, 1 worker": [],
        f"synth, {cores} workers": [],
    }
    # One folder for all runs, removed at the end: deleting thousands of files between runs
    # slows the next run's writes on some file systems (online discard).
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.repeats):
            rates["render only, 1 core"].append(run_once(2000, seed))
            for workers, key in ((1, "synth, 1 worker"), (cores, f"synth, {cores} workers")):
                result = generate(
                    os.path.join(tmp, f"{seed}-{workers}"), args.preset, seed=seed, workers=workers
                )
                rates[key].append(result["images"] / result["seconds"])
    print(f"preset {args.preset}: {result['images']} images per run, {args.repeats} repeats")
    for key, values in rates.items():
        median = statistics.median(values)
        per_core = median / (cores if key.endswith("workers") else 1)
        print(
            f"{key:24s} median {median:7.0f} images/s  ({per_core:.0f} per core)  "
            f"all {' '.join(f'{v:.0f}' for v in values)}"
        )
    ratio = statistics.median(rates["synth, 1 worker"]) / statistics.median(
        rates["render only, 1 core"]
    )
    print(f"synth 1 worker / render only: {ratio:.2f}")


if __name__ == "__main__":
    main()
