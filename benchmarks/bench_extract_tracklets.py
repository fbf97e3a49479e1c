"""Tracklet extraction frames/s against image extraction of the same frames, in the same run.

Usage::

    python benchmarks/bench_extract_tracklets.py [--models resnet50,osnet_x0_25]
        [--tracklets 48] [--repeats 2] [--size 256x128]

For each model (batch 64): the same frames of synthreid-video (preset video-small, 8 to 24
frames a tracklet) are extracted once as images (``extract_subset`` on one Sample per
frame: a row per frame) and once as tracklets (a row per tracklet, every frame pooled).
Both decode in the process, write a feature file and are timed from the call; the ratio is
tracklet frames/s over image frames/s. Goal: at least 0.9.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
from machine import describe

from reidkit.data import load_dataset
from reidkit.data.sample import Sample
from reidkit.data.synth import generate
from reidkit.features.extractor import TorchRunner, extract_subset
from reidkit.features.options import ExtractOptions
from reidkit.models import create_model
from reidkit.models.spec import IMAGENET_MEAN, IMAGENET_STD

BATCH = 64

IMAGENET = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


def rate(runner, items, root: Path, out: Path, options: ExtractOptions) -> float:
    result = extract_subset(
        runner, items, out, root=root, attrs={}, options=options, batch_size=BATCH, force=True
    )
    return result["images_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,osnet_x0_25")
    parser.add_argument("--tracklets", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--size", default="256x128")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    print(describe(), f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root, "video-small", seed=0)
        ds = load_dataset("synthreid-video", root)
        tracklets = ds.gallery[: args.tracklets]
        frames = [Sample(p, t.pid, t.camid) for t in tracklets for p in t.paths]
        print(
            f"{len(tracklets)} synthreid-video gallery tracklets, {len(frames)} frames, "
            f"batch {BATCH}, {height}x{width}, decoding in the process"
        )
        print("| model | image frames/s | tracklet frames/s | ratio | per-repeat ratios |")
        print("|---|---|---|---|---|")
        for name in args.models.split(","):
            torch.manual_seed(0)
            model = create_model(name, num_classes=1, image_size=(height, width)).eval()
            image_options = ExtractOptions(height=height, width=width, **IMAGENET)
            clip_options = replace(image_options, sample="all", temporal="avg")
            runner = TorchRunner(model, image_options, "cpu")
            rate(runner, frames[:BATCH], ds.root, root / "warm.h5", image_options)  # warm-up
            images, clips = [], []
            for _ in range(args.repeats):
                images.append(rate(runner, frames, ds.root, root / "i.h5", image_options))
                clip_runner = TorchRunner(model, clip_options, "cpu")
                clips.append(rate(clip_runner, tracklets, ds.root, root / "t.h5", clip_options))
            ratios = [c / i for c, i in zip(clips, images, strict=True)]
            print(
                f"| {name} | {statistics.median(images):.1f} | {statistics.median(clips):.1f} "
                f"| **{statistics.median(ratios):.2f}** | "
                f"{', '.join(f'{r:.2f}' for r in ratios)} |"
            )


if __name__ == "__main__":
    main()
