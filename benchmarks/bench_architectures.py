"""The published architectures at one small budget on synthreid, and their extraction rate.

Usage::

    python benchmarks/bench_architectures.py [--epochs 10] [--size 80x32] [--out DIR]
        [--models resnet50,resnet50_ibn_a,...]

Each model trains from scratch (no ImageNet file can be fetched here) on synthreid's small
preset (120 identities, 1800 images) for the same number of epochs at the same input size
(80x32: MGN's three parts need 80 pixels) with the same batches (PK 16 x 4), Adam 3.5e-4
with a 2-epoch warmup, the triplet term rising over the first 5 epochs (a triplet on from
the first step collapses runs from scratch here, docs/training.md), and the losses its
published recipe uses (cross-entropy with label smoothing and a batch-hard triplet; AGW's
weighted triplet; MGN's and SBS's Circle softmax with soft-margin triplets; PCB's
cross-entropy alone); then it is evaluated on the query and gallery with its own distance.
The untrained resnet50 is the baseline measured in the same run. The extraction rate is
``reidkit extract``'s own figure (images/s at 256x128, batch 64, fp32, this machine's
threads) on the 400 query images, at each model's own input size (384x128 for PCB and
MGN).

synthreid is a testbed for plumbing and learning dynamics, not a proxy for real data:
these figures say that each model learns at this budget, not how it ranks on Market-1501.
At the default 10 epochs a ResNet-50 from scratch does not rank yet (docs/benchmarks.md):
give ``--epochs 30`` (about 2 hours for the nine models on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe

# name: (model, its recipe's options at this budget)
COMMON = ["optim.lr=0.00035", "schedule.name=cosine", "schedule.warmup_epochs=2",
          "loss.triplet_warmup=5", "data.batch_size=64", "data.num_instances=4"]  # fmt: skip
CIRCLE = ["loss.id_loss=circle", "loss.soft_margin=true"]
MODELS = {
    "bot_r50": ("resnet50", []),
    "bot_r50_ibn_a": ("resnet50_ibn_a", []),
    "agw_r50": (
        "resnet50",
        [
            "model.non_local=true",
            "model.pooling=gem",
            "loss.triplet_mining=weighted",
            "loss.soft_margin=true",
        ],
    ),
    "sbs_r50_ibn_a": (
        "resnet50_ibn_a",
        [
            "model.non_local=true",
            "model.pooling=gem",
            "model.gem_learnable=true",
            "model.neck_feat=after",
            *CIRCLE,
        ],
    ),
    "mgn_r50_ibn_a": ("mgn_resnet50_ibn_a", CIRCLE),
    "pcb_p6": ("pcb_p6", ["loss.triplet=0", "loss.label_smoothing=0"]),
    "osnet_ain_x1_0": ("osnet_ain_x1_0", []),
    "bot_r50_ibn_b": ("resnet50_ibn_b", []),
    "osnet_ibn_x1_0": ("osnet_ibn_x1_0", []),
}


def reidkit(*argv) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "reidkit", *map(str, argv), "--json"],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"reidkit {' '.join(map(str, argv))}: {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout)


def evaluate(work: Path, root: Path, weights: list[str], name: str) -> dict:
    feats = work / "feats" / name
    reidkit("extract", *weights, "--dataset", "synthreid", "--root", root, "--out", feats)
    result = reidkit("evaluate", feats / "synthreid-query.h5", feats / "synthreid-gallery.h5")
    return {"mAP": result["mAP"], "rank1": result["cmc"]["1"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--size", default="80x32")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    print(describe())
    work = args.out or Path(tempfile.mkdtemp(prefix="bench-arch-"))
    root = work / "data"
    reidkit("datasets", "synth", "--root", root, "--preset", "small", "--seed", "0")
    size = [f"data.height={height}", f"data.width={width}"]
    untrained = evaluate(
        work, root, ["--model", "resnet50", "--height", height, "--width", width], "untrained"
    )
    print(f"untrained resnet50: mAP {untrained['mAP']:.3f}, rank-1 {untrained['rank1']:.3f}")
    rows = []
    for key in args.models.split(","):
        model, options = MODELS[key]
        run = work / "runs" / key
        start = time.perf_counter()
        result = reidkit(
            "train", "--dataset", "synthreid", "--root", root, "--model", model,
            "--pretrained", "none", "--epochs", args.epochs, "--run", run, *size,
            "eval.every=0", *COMMON, *options,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        scores = evaluate(work, root, [run / "weights" / "last.pt"], key)
        speed = reidkit(
            "extract", "--model", model, "--dataset", "synthreid", "--root", root,
            "--out", work / "speed" / key, "--subsets", "query", "--batch-size", "64",
        )  # fmt: skip
        rows.append((key, model, scores, seconds, result, speed))  # result: the run's JSON
        print(
            f"{key:16s} {model:20s} mAP {scores['mAP']:.3f} rank-1 {scores['rank1']:.3f} "
            f"train {seconds:.0f} s; extract {speed['files'][0]['images_per_second']:.1f} images/s",
            flush=True,
        )
    print(json.dumps([{"key": r[0], "model": r[1], "mAP": r[2]["mAP"], "rank1": r[2]["rank1"],
                       "train_s": round(r[3]),
                       "extract_images_per_s": r[5]["files"][0]["images_per_second"]}
                      for r in rows], indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
