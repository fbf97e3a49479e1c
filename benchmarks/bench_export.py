"""Extraction with ONNX Runtime against PyTorch, measured in the same run.

Usage::

    python benchmarks/bench_export.py [--models resnet50,osnet_x0_25] [--gallery 512]
        [--repeats 2] [--threads 2]

For each model (256x128 input, batch 64, fp32, seeded random weights): the model is
exported with ``reidkit.deploy.export`` (verified as every export is), then the synthreid
"small" query and the first ``--gallery`` gallery images are extracted with
``extract_subset`` by PyTorch and by ONNX Runtime in turn, with the same batch, image size
and thread count, decoding in the process for both. Reported: images/s of each (median of
the repeats, alternating), the ratio ONNX Runtime / PyTorch (goal >= 1.0), the largest
feature difference, and mAP of both feature sets.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import describe

from reidkit.data import load_dataset
from reidkit.data.synth import generate
from reidkit.deploy.export import ExportOptions, export_model
from reidkit.deploy.runtime import onnx_extraction
from reidkit.deploy.verify import pick_images
from reidkit.features.extractor import ExtractOptions, TorchRunner, extract_subset
from reidkit.features.source import load_model_source
from reidkit.features.store import read_features
from reidkit.metrics.evaluate import evaluate_files

BATCH = 64


def extract(runner, samples, root, out, options) -> float:
    result = extract_subset(
        runner, samples, out, root=root, attrs={"provenance": {}}, options=options,
        batch_size=BATCH, workers=0, force=True,
    )  # fmt: skip
    return result["images_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,osnet_x0_25")
    parser.add_argument("--gallery", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime

    print(
        describe(),
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"{args.threads} threads for both",
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root, "small", seed=0)
        ds = load_dataset("synthreid", root)
        sets = {"query": ds.query, "gallery": ds.gallery[: args.gallery]}
        print(
            f"synthreid small: {len(sets['query'])} query + {len(sets['gallery'])} gallery "
            f"images, batch {BATCH}, 256x128, fp32, decoding in the process"
        )
        for name in args.models.split(","):
            source = load_model_source(None, name, height=256, width=128, seed=0)
            onnx_file = root / f"{name}.onnx"
            start = time.perf_counter()
            paths = pick_images([s.path for s in ds.query])
            verified = export_model(source, onnx_file, ExportOptions(), verify_on=paths)
            export_s = time.perf_counter() - start
            options = ExtractOptions(
                height=256, width=128, mean=source.data["mean"], std=source.data["std"]
            )
            runners = {
                "pytorch": (TorchRunner(source.model, options, "cpu"), options),
                "onnxruntime": onnx_extraction(
                    onnx_file, device="cpu", height=None, width=None, mean=None, std=None,
                    flip=False, storage="float32",
                )[::2],
            }  # fmt: skip
            rates = {k: [] for k in runners}
            for _ in range(args.repeats):
                for label, (runner, opts) in runners.items():
                    for subset, samples in sets.items():
                        out = root / label / f"synthreid-{subset}.h5"
                        rate = extract(runner, samples, ds.root, out, opts)
                        if subset == "gallery":
                            rates[label].append(rate)
            pt, rt = (statistics.median(rates[k]) for k in ("pytorch", "onnxruntime"))
            pairs = zip(rates["onnxruntime"], rates["pytorch"], strict=True)
            ratio = statistics.median(o / p for o, p in pairs)
            diff = max(
                float(
                    np.abs(
                        read_features(root / "pytorch" / f"synthreid-{s}.h5").features
                        - read_features(root / "onnxruntime" / f"synthreid-{s}.h5").features
                    ).max()
                )
                for s in sets
            )
            maps = {
                k: evaluate_files(
                    root / k / "synthreid-query.h5",
                    root / k / "synthreid-gallery.h5",
                    allow_mismatch=True,
                )["mAP"]
                for k in runners
            }
            v = verified["verification"]
            print(
                f"{name:12s} pytorch {pt:6.1f} img/s   onnxruntime {rt:6.1f} img/s   "
                f"ratio {ratio:.2f}   max |diff| {diff:.1e}   mAP {maps['pytorch']:.4%} / "
                f"{maps['onnxruntime']:.4%}   export {export_s:.0f} s (verified "
                f"{v['max_abs_diff']:.1e})   runs "
                + " ".join(
                    f"{p:.1f}/{o:.1f}"
                    for p, o in zip(rates["pytorch"], rates["onnxruntime"], strict=True)
                )
            )


if __name__ == "__main__":
    main()
