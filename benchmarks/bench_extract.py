"""Extraction throughput against the model-only forward rate, measured in the same run.

Usage::

    python benchmarks/bench_extract.py [--models resnet50,osnet_x0_25] [--images 512]
        [--workers 1] [--repeats 2]

For each model (256x128 input, batch 64): the model-only rate runs the forward passes on
tensors preloaded in memory (same model, batch and dtype); the extraction rate runs
``extract_subset`` on the same images from disk (decoding in DataLoader workers, writing
the feature file). Target: extraction >= 0.85 of the model-only rate. Each model is also
measured with ``--amp bf16 --channels-last``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from machine import describe

from reidkit.data import load_dataset
from reidkit.data.synth import generate
from reidkit.features.batches import ImageList
from reidkit.features.extractor import TorchRunner, _forward, extract_subset, normalize
from reidkit.features.options import ExtractOptions
from reidkit.models import create_model
from reidkit.models.spec import IMAGENET_MEAN, IMAGENET_STD

BATCH = 64

IMAGENET = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


def model_only(model, tensors: torch.Tensor, options: ExtractOptions) -> float:
    """Images/s of the forward passes alone on preloaded tensors."""
    start = time.perf_counter()
    for s in range(0, len(tensors), BATCH):
        _forward(model, tensors[s : s + BATCH], options, "cpu")
    return len(tensors) / (time.perf_counter() - start)


def extraction(model, samples, root: Path, out: Path, options: ExtractOptions, workers: int):
    result = extract_subset(
        TorchRunner(model, options, "cpu"),
        samples,
        out,
        root=root,
        attrs={},
        options=options,
        batch_size=BATCH,
        workers=workers,
        force=True,
    )
    return result["images_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,osnet_x0_25")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(describe(), f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root, "small", seed=0)
        ds = load_dataset("synthreid", root)
        samples = ds.gallery[: args.images]
        print(
            f"{len(samples)} synthreid gallery images, batch {BATCH}, 256x128, "
            f"{args.workers} DataLoader worker(s)"
        )
        for name in args.models.split(","):
            torch.manual_seed(0)
            model = create_model(name, num_classes=1).eval()
            for label, extra in (
                ("fp32", {}),
                ("bf16 + channels_last", {"amp": "bf16", "channels_last": True}),
            ):
                options = ExtractOptions(height=256, width=128, **IMAGENET, **extra)
                m = model.to(memory_format=torch.channels_last) if extra else model
                images = ImageList([s.path for s in samples], 0, options.height, options.width)
                pixels = [torch.from_numpy(images[i][0]) for i in range(len(images))]
                tensors = normalize(torch.stack(pixels), options)
                model_only(m, tensors[:BATCH], options)  # warm-up
                pairs = []
                for _ in range(args.repeats):
                    a = extraction(m, samples, ds.root, root / f"{name}.h5", options, args.workers)
                    b = model_only(m, tensors, options)
                    pairs.append((a, b))
                ext = statistics.median(p[0] for p in pairs)
                ref = statistics.median(p[1] for p in pairs)
                ratio = statistics.median(p[0] / p[1] for p in pairs)
                print(
                    f"{name:12s} {label:22s} extract {ext:7.1f} img/s   model-only "
                    f"{ref:7.1f} img/s   ratio {ratio:.2f}   runs "
                    + " ".join(f"{a:.1f}/{b:.1f}" for a, b in pairs)
                )


if __name__ == "__main__":
    main()
