"""Adaptation on synthetic data (synthreid is a testbed: these figures say nothing of real
data): a source model trained on synthreid, its direct transfer to synthreid-b (the second
camera network), and what adaptation (adapt.enabled) recovers, per epoch, in the same run.

Usage::

    python benchmarks/bench_adapt.py [--data DIR] [--source-epochs 10] [--epochs 30]
        [--eps 0.4] [--camera-centre | --no-camera-centre] [--sampler pk|pk_cameras]
        [--iters N]

Stages, each a reidkit command in its own process (timed):

1. ``datasets synth``: synthreid at Market-1501's size (751 training identities, the
   source) and synthreid-b small (120 training identities, the target).
2. the source: the demo's recipe (configs/synthreid_resnet18.yaml, resnet18 from scratch at
   64x32) for ``--source-epochs`` on synthreid (market preset).
3. direct transfer: ``extract`` + ``evaluate`` of the source on synthreid-b.
4. adaptation: ``train --pretrained SOURCE adapt.enabled=true`` on synthreid-b's training
   images (their identities unused), Cluster Contrast's loss alone, evaluated on
   synthreid-b's query and gallery every 5 epochs. Its wall time is the CPU budget.

Prints the machine, the direct vs adapted table and every epoch's clusters, outliers and
agreement with the true identities (metrics.csv).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe

REPO = Path(__file__).resolve().parents[1]
SMALL_IMAGES = ["data.height=64", "data.width=32", "data.batch_size=64", "data.num_instances=4"]


def reidkit(*argv) -> tuple[str, float]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "reidkit", *map(str, argv)], capture_output=True, text=True
    )
    if done.returncode:
        sys.exit(f"reidkit {' '.join(map(str, argv))} failed:\n{done.stderr[-3000:]}")
    return done.stdout, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="folder for datasets and runs (kept)")
    parser.add_argument("--source-epochs", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--eps", type=float, default=0.4)
    parser.add_argument("--camera-centre", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--sampler", choices=("pk", "pk_cameras"), default="pk",
        help="pk_cameras: the recipes' (Cluster Contrast's) sampler",
    )  # fmt: skip
    parser.add_argument("--iters", type=int, default=0, help="train.iters_per_epoch (0: a pass)")
    args = parser.parse_args()
    print(describe())
    folder = args.data or Path(tempfile.mkdtemp(prefix="reidkit-adapt-"))
    source_root, target_root = folder / "source", folder / "target"
    reidkit("datasets", "synth", "--root", source_root, "--preset", "market")
    reidkit("datasets", "synth", "--root", target_root, "--preset", "small", "--network", "b")
    source_run = folder / "runs" / "source"
    if not (source_run / "weights" / "last.pt").is_file():
        _, seconds = reidkit(
            "train", "--config", REPO / "configs" / "synthreid_resnet18.yaml",
            "--root", source_root, "--run", source_run, f"train.epochs={args.source_epochs}",
            "eval.every=0",
        )  # fmt: skip
        print(
            f"source: {args.source_epochs} epochs on synthreid (market preset) in {seconds:.0f} s"
        )
    source = source_run / "weights" / "last.pt"
    feats = folder / "feats"
    reidkit("extract", source, "--dataset", "synthreid-b", "--root", target_root, "--out", feats)
    out, _ = reidkit(
        "evaluate", feats / "synthreid-b-query.h5", feats / "synthreid-b-gallery.h5", "--json"
    )
    direct = json.loads(out)
    run = (
        folder
        / "runs"
        / (f"adapt-eps{args.eps}{'-cc' * args.camera_centre}-{args.sampler}-i{args.iters}")
    )
    _, seconds = reidkit(
        "train", "--dataset", "synthreid-b", "--root", target_root, "--run", run,
        "--pretrained", source, "--model", "resnet18", "--exist-ok", *SMALL_IMAGES,
        "adapt.enabled=true", f"adapt.eps={args.eps}",
        f"adapt.camera_centre={str(args.camera_centre).lower()}",
        "loss.triplet=0", "loss.label_smoothing=0", "schedule.name=step",
        "schedule.step_size=20", "schedule.warmup_epochs=0", f"train.epochs={args.epochs}",
        "eval.every=5", f"data.sampler={args.sampler}", f"train.iters_per_epoch={args.iters}",
    )  # fmt: skip
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    best = max(float(r["mAP"]) for r in rows if r["mAP"])
    print("\nsynthreid-b query/gallery      mAP      rank-1")
    print(f"direct transfer                {direct['mAP']:.4f}   {direct['cmc']['1']:.4f}")
    for r in rows:
        if r["mAP"]:
            mAP, rank1 = float(r["mAP"]), float(r["rank1"])
            print(f"adapted, epoch {r['epoch']:>3}            {mAP:.4f}   {rank1:.4f}")
    print(f"gain (best epoch)              {best - direct['mAP']:+.4f}")
    how = f"eps {args.eps}, camera_centre {args.camera_centre}, sampler {args.sampler}"
    how += f", {args.iters} iterations an epoch" if args.iters else ", a pass an epoch"
    print(f"adaptation: {args.epochs} epochs in {seconds:.0f} s ({how})")
    print("\nepoch  clusters  outliers  NMI    ARI    pair P  pair R")
    for r in rows:
        print(
            f"{r['epoch']:>5}  {r['clusters']:>8}  {r['outliers']:>8}  {float(r['nmi']):.3f}  "
            f"{float(r['ari']):.3f}  {float(r['pair_precision']):.3f}   "
            f"{float(r['pair_recall']):.3f}"
        )
    if args.data is None:
        print(f"\n(files left in {folder})")


if __name__ == "__main__":
    main()
