"""Extraction with ONNX Runtime against reidkit's fastest fp32 PyTorch extraction, measured
in the same run.

Usage::

    python benchmarks/bench_export.py [--models resnet50,osnet_x0_25] [--query 64]
        [--gallery 64] [--repeats 5] [--threads N]

For each model (256x128 input, batch 64, fp32, seeded random weights) the model is
exported with ``reidkit.deploy.export`` (verified as every export is). Then the first
``--query`` query images of synthreid "small" and ``--gallery`` gallery images of the same
people are extracted with ``extract_subset`` (decoding in the process, writing the feature files) in
each of these forms:

- ``onnxruntime``: what ``reidkit extract --onnx`` runs;
- ``pytorch``, ``pytorch channels_last``: what ``reidkit extract`` runs without and with
  ``--channels-last``, the two fp32 forms reidkit has on a CPU. The faster of the two is
  what a reidkit user gets: the ratio is taken against it;
- ``pytorch channels_last, BN folded``: BatchNorm folded into the convolutions by torch's
  own ``torch.fx.experimental.optimization.fuse``. Not what reidkit runs (it does not fold;
  ONNX Runtime's graph optimisations do): a reference for the best PyTorch form.

Both runtimes get the same ``--threads`` through ``reidkit.threads.configure``, as the CLI's
``--threads`` does (torch's threads, ONNX Runtime's intra-op threads). Each form extracts
one batch untimed first (oneDNN and ONNX Runtime prepare their kernels on the first run),
then the forms take turns, ``--repeats`` times, so a slow spell of the machine hits them
all. Reported per form: images/s (query and gallery images over the seconds both took),
the median and the min-max of the repeats, the largest feature difference from the
contiguous PyTorch form and mAP; then ONNX Runtime's median over the faster reidkit form's
and over the folded form's, with the range of the per-repeat ratios.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from machine import describe

from reidkit.data import load_dataset
from reidkit.data.synth import generate
from reidkit.deploy.export import ExportOptions, export_model
from reidkit.deploy.runtime import onnx_extraction
from reidkit.deploy.verify import pick_images
from reidkit.features.extractor import TorchRunner, extract_subset
from reidkit.features.options import ExtractOptions
from reidkit.features.source import load_model_source
from reidkit.features.store import read_features
from reidkit.metrics.evaluate import evaluate_files
from reidkit.threads import configure, usable_cores

BATCH = 64
LABELS = {  # a form's folder name: its printed label
    "ort": "onnxruntime",
    "torch": "pytorch",
    "torch-cl": "pytorch channels_last",
    "torch-cl-folded": "pytorch channels_last, BN folded *",
}
REIDKIT_TORCH = ("torch", "torch-cl")  # the fp32 CPU forms `reidkit extract` has


@dataclass
class Form:
    """One way to run the model, and what its repeats measured."""

    key: str  # of LABELS
    runner: object
    options: ExtractOptions
    rates: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        return LABELS[self.key]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,osnet_x0_25")
    parser.add_argument("--query", type=int, default=64, help="query images timed")
    parser.add_argument("--gallery", type=int, default=64, help="gallery images timed")
    parser.add_argument("--repeats", type=int, default=5, help="alternating runs per form")
    parser.add_argument("--threads", type=int, default=usable_cores())
    return parser.parse_args()


def versions(threads: int) -> str:
    import onnxruntime

    return (
        f"torch {torch.__version__} (CPU capability {torch.backends.cpu.get_cpu_capability()}), "
        f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider); {threads} threads for "
        "both (torch's, and ONNX Runtime's intra-op with one inter-op thread)"
    )


def pick_samples(ds, queries: int, gallery: int) -> dict[str, list]:
    """The first ``queries`` queries, and ``gallery`` gallery images of the same people
    spread evenly over them, so that mAP means something on a few images."""
    query = ds.query[:queries]
    pids = {s.pid for s in query}
    same = [s for s in ds.gallery if s.pid in pids]
    count = min(gallery, len(same))
    return {"query": query, "gallery": [same[i * len(same) // count] for i in range(count)]}


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of an eval-mode image model with every BatchNorm that follows a convolution (or
    a linear layer) folded into it, by torch.fx's ``fuse``. The model's own ``forward`` also
    takes video clips (a branch on the input's rank that fx cannot trace), so the traced
    module is its image path, ``head(features(x))``."""
    from torch.fx.experimental.optimization import fuse

    class Images(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.head(self.net.features(x))

    folded = fuse(Images(copy.deepcopy(model).eval()))
    folded.feature_dim = model.feature_dim  # what TorchRunner reads
    return folded


def build_forms(source, onnx_file: Path) -> list[Form]:
    """The forms to time, ONNX Runtime first."""
    options = ExtractOptions(
        height=256, width=128, mean=source.data["mean"], std=source.data["std"]
    )
    last = replace(options, channels_last=True)
    runner, _, ort_options = onnx_extraction(
        onnx_file, device="cpu", height=None, width=None, mean=None, std=None, flip=False,
        storage="float32",
    )  # fmt: skip
    return [
        Form("ort", runner, ort_options),
        Form("torch", TorchRunner(source.model, options, "cpu"), options),
        # a copy: TorchRunner turns its model to channels_last in place
        Form("torch-cl", TorchRunner(copy.deepcopy(source.model), last, "cpu"), last),
        Form("torch-cl-folded", TorchRunner(fold_batchnorm(source.model), last, "cpu"), last),
    ]


def extract(form: Form, sets: dict[str, list], root: Path, out: Path) -> float:
    """Extract every set in this form; images/s over all of them."""
    start = time.perf_counter()
    rows = 0
    for subset, samples in sets.items():
        extract_subset(
            form.runner, samples, out / f"synthreid-{subset}.h5", root=root,
            attrs={"provenance": {}}, options=form.options, batch_size=BATCH, workers=0,
            force=True,
        )  # fmt: skip
        rows += len(samples)
    return rows / (time.perf_counter() - start)


def measure(forms: list[Form], sets: dict[str, list], root: Path, out: Path, repeats: int):
    """One untimed batch per form, then the forms in turn, ``repeats`` times."""
    warm_up = {"query": sets["gallery"][:BATCH]}
    for form in forms:
        extract(form, warm_up, root, out / "warm-up")
    for _ in range(repeats):
        for form in forms:
            form.rates.append(extract(form, sets, root, out / form.key))


def feature_diff(out: Path, a: str, b: str, sets) -> float:
    """The largest difference between the features two forms wrote."""
    return max(
        float(
            np.abs(
                read_features(out / a / f"synthreid-{s}.h5").features
                - read_features(out / b / f"synthreid-{s}.h5").features
            ).max()
        )
        for s in sets
    )


def mean_ap(out: Path, key: str) -> float:
    folder = out / key
    files = (folder / "synthreid-query.h5", folder / "synthreid-gallery.h5")
    return evaluate_files(*files, allow_mismatch=True)["mAP"]


def ratio_line(ort: Form, other: Form, what: str) -> str:
    median = statistics.median(ort.rates) / statistics.median(other.rates)
    each = [o / p for o, p in zip(ort.rates, other.rates, strict=True)]
    return (
        f"  ONNX Runtime / {what} ({other.label.rstrip(' *')}): {median:.2f} "
        f"(per repeat {min(each):.2f}-{max(each):.2f})"
    )


def report(name: str, forms: list[Form], out: Path, sets) -> None:
    print(f"  {'form':36s} {'img/s median':>12s} {'min-max':>13s} {'max |diff|':>11s}  mAP")
    for form in forms:
        diff = feature_diff(out, "torch", form.key, sets)
        spread = f"{min(form.rates):.1f}-{max(form.rates):.1f}"
        print(
            f"  {form.label:36s} {statistics.median(form.rates):12.1f} {spread:>13s} "
            f"{diff:11.1e}  {mean_ap(out, form.key):.4%}"
        )
    by_key = {f.key: f for f in forms}
    best = max((by_key[k] for k in REIDKIT_TORCH), key=lambda f: statistics.median(f.rates))
    print(ratio_line(by_key["ort"], best, "the faster reidkit PyTorch form"))
    print(ratio_line(by_key["ort"], by_key["torch-cl-folded"], "the BN-folded form"))
    print("  runs (img/s, in order): " + "; ".join(map(runs, forms)))


def runs(form: Form) -> str:
    return f"{form.label.rstrip(' *')} " + " ".join(f"{r:.1f}" for r in form.rates)


def main() -> None:
    args = parse_args()
    began = time.perf_counter()
    threads = configure(args.threads)  # torch's count now; ONNX Runtime's from it below
    print(describe())
    print(versions(threads))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root, "small", seed=0)
        ds = load_dataset("synthreid", root)
        sets = pick_samples(ds, args.query, args.gallery)
        print(
            f"synthreid small: {len(sets['query'])} query + {len(sets['gallery'])} gallery "
            f"images, batch {BATCH}, 256x128, fp32, seeded random weights, decoding in the "
            f"process; {args.repeats} alternating repeats after one untimed batch per form"
        )
        for name in args.models.split(","):
            source = load_model_source(None, name, height=256, width=128, seed=0)
            onnx_file = root / f"{name.replace('/', '_')}.onnx"
            start = time.perf_counter()
            paths = pick_images([s.path for s in ds.query])
            verified = export_model(source, onnx_file, ExportOptions(), verify_on=paths)
            forms = build_forms(source, onnx_file)
            session = forms[0].runner.session.get_session_options()
            print(
                f"{name}: exported in {time.perf_counter() - start:.0f} s (verified, max |diff| "
                f"{verified['verification']['max_abs_diff']:.1e}); ONNX Runtime threads "
                f"{session.intra_op_num_threads} intra-op, {session.inter_op_num_threads} "
                f"inter-op; torch threads {torch.get_num_threads()}"
            )
            out = root / "features" / name.replace("/", "_")
            measure(forms, sets, ds.root, out, args.repeats)
            report(name, forms, out, sets)
    print("* not what reidkit runs (it does not fold BatchNorm): a reference for the best")
    print("  PyTorch form; max |diff| is against the contiguous PyTorch form's features")
    minutes, seconds = divmod(round(time.perf_counter() - began), 60)
    print(f"took {minutes} min {seconds} s")


if __name__ == "__main__":
    main()
