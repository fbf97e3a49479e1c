"""The published architectures at one small budget on synthreid.

Usage::

    python benchmarks/bench_architectures.py [--epochs 10] [--size 80x32] [--out DIR]
        [--models bot_r50,bot_r50_ibn_a,...]

Each model trains from scratch (no ImageNet file can be fetched here) on synthreid's small
preset (120 identities, 1800 images) for the same number of epochs at the same input size
(80x32: MGN's three parts need 80 pixels) with the same batches (PK 16 x 4), Adam 3.5e-4
with a 2-epoch warmup, the triplet term rising over the first 5 epochs (a triplet on from
the first step collapses runs from scratch here, docs/training.md), and the losses its
published recipe uses (cross-entropy with label smoothing and a batch-hard triplet; AGW's
weighted triplet; MGN's and SBS's Circle softmax with soft-margin triplets; PCB's
cross-entropy alone); then it is evaluated on the query and gallery with its own distance.
The untrained resnet50 is the baseline measured in the same folder. Extraction rates have
their own benchmark (bench_extract.py).

The runs take hours, so the benchmark can be stopped and started again with the same
``--out``: a model whose figures are in ``DIR/results`` is not run again, and a run that
was stopped continues from its last checkpoint (``reidkit resume``, exact). The training
seconds printed are the wall time of this invocation's part of the run.

synthreid is a testbed for plumbing and learning dynamics, not a proxy for real data:
these figures say that each model learns at this budget, not how it ranks on Market-1501.
At the default 10 epochs a ResNet-50 from scratch does not rank yet (docs/benchmarks.md):
give ``--epochs 30`` (about 3 hours for the nine models on 2 cores).
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


def cached(path: Path, compute) -> dict:
    """The figures in ``path``, or compute them and keep them there."""
    if path.exists():
        return json.loads(path.read_text())
    figures = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures))
    return figures


def train(run: Path, argv: list) -> float:
    """Train (or continue a stopped run of) one model; the wall seconds spent here."""
    start = time.perf_counter()
    if (run / "weights" / "last.pt").exists():
        reidkit("resume", run)
    else:
        reidkit("train", *argv, "--run", run)
    return time.perf_counter() - start


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
    if not (root / "synthreid").exists():
        reidkit("datasets", "synth", "--root", root, "--preset", "small", "--seed", "0")
    size = [f"data.height={height}", f"data.width={width}"]
    budget = f"{args.epochs}ep-{height}x{width}"
    untrained = cached(
        work / "results" / f"untrained-{height}x{width}.json",
        lambda: evaluate(
            work, root, ["--model", "resnet50", "--height", height, "--width", width], "untrained"
        ),
    )
    print(f"untrained resnet50: mAP {untrained['mAP']:.3f}, rank-1 {untrained['rank1']:.3f}")
    rows = []
    for key in args.models.split(","):
        model, options = MODELS[key]
        run = work / "runs" / f"{key}-{budget}"

        def measure(key=key, model=model, options=options, run=run) -> dict:
            seconds = train(
                run,
                ["--dataset", "synthreid", "--root", root, "--model", model,
                 "--pretrained", "none", "--epochs", args.epochs, *size, "eval.every=0",
                 *COMMON, *options],
            )  # fmt: skip
            return {
                "train_s": round(seconds),
                **evaluate(work, root, [run / "weights" / "last.pt"], key),
            }

        figures = cached(work / "results" / f"{key}-{budget}.json", measure)
        rows.append({"key": key, "model": model, **figures})
        print(
            f"{key:16s} {model:20s} mAP {figures['mAP']:.3f} rank-1 {figures['rank1']:.3f} "
            f"train {figures['train_s']} s (this invocation's part)",
            flush=True,
        )
    print(json.dumps({"budget": budget, "untrained": untrained, "models": rows}, indent=1))


if __name__ == "__main__":
    main()
