"""CPU inference in each form reidkit has, against PyTorch fp32 as it ran before and the
machine's matrix-multiply rate, measured in the same run.

Usage::

    python benchmarks/bench_inference.py [--models resnet50,osnet_x0_25] [--query 64]
        [--gallery 64] [--repeats 3] [--threads N] [--checkpoints RUN,...]

First the machine's limit: the best rate of a 2048 x 2048 x 2048 product in torch (fp32
and bf16, the kernels models run on), in numpy (fp32, what evaluation runs on) and in ONNX
Runtime's MatMulInteger (uint8 x int8, the INT8 graphs' kernels), with the same threads.
Then for each model (256x128 input, seeded random weights; and each of ``--checkpoints``, a
trained run or checkpoint at its own size) the forms:

- ``pytorch fp32 as before``: contiguous, BatchNorm as it is; what ``reidkit extract`` ran
  before BatchNorm folding and the family's memory format became its default, the baseline;
- ``pytorch fp32``: ``reidkit extract``'s default now (BatchNorm folded, the family's
  memory format on the CPU), and ``*`` the other memory format, to show the family's is
  the faster;
- ``pytorch bf16``: the same with ``--amp bf16``;
- ``onnxruntime fp32``: the model exported by ``reidkit export`` (verified as every export
  is), run as ``reidkit extract --onnx`` runs it;
- ``onnxruntime int8``: ``reidkit export --int8`` of it, calibrated on 256 training images
  of synthreid "small"; its own retrieval check (the whole query and gallery of synthreid
  "small", fp32 graph against INT8 graph) is printed below the table;
- ``openvino fp32`` and ``openvino int8``: the same two files run by OpenVINO
  (``extract --onnx FILE --runtime openvino``), when it is installed. Both INT8 forms are
  held to the machine's int8 product rate (ONNX Runtime's MatMulInteger).

Each form first runs one batch untimed (oneDNN and ONNX Runtime prepare their kernels),
then the forms take turns, ``--repeats`` times, so that a slow spell of the machine hits
them all. Per form: the model's rate (a batch of preloaded pixels through the runner
``extract`` uses, normalisation included: the best of the repeats), what that is in
GFLOP/s (the model's multiply-adds x 2, counted by torch's FlopCounterMode) and as a
fraction of the torch product rate of its precision; the extraction's rate (the query and
gallery images of synthreid "small" decoded and written to feature files by
``extract_subset``: median and min-max of the repeats); the largest feature difference from
the baseline's features, on their scale; and the mAP of each form's features.
"""

from __future__ import annotations

import argparse
import importlib.util
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
from reidkit.deploy.export import ExportOptions, build_export, checkpoint_of, export_model
from reidkit.deploy.quantize import Calibration
from reidkit.deploy.runtime import onnx_extraction
from reidkit.deploy.verify import pick_images
from reidkit.features.batches import ImageList, batches_in_process
from reidkit.features.extractor import TorchRunner, extract_subset
from reidkit.features.jobs import inference_form
from reidkit.features.options import ExtractOptions
from reidkit.features.source import load_model_source
from reidkit.features.store import read_features
from reidkit.metrics.evaluate import evaluate_files
from reidkit.threads import configure, usable_cores

BATCH = 32
GEMM = 2048  # the side of the products that measure the machine's rate


@dataclass
class Form:
    """One way to run the model, and what its repeats measured."""

    key: str  # its folder
    label: str
    runner: object
    options: ExtractOptions
    precision: str = "fp32"  # which product rate is its limit: torch's, or a key of limits
    rates: list[float] = field(default_factory=list)  # extraction, img/s
    model_seconds: list[float] = field(default_factory=list)  # one batch through the runner


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,osnet_x0_25")
    parser.add_argument("--query", type=int, default=64, help="query images extracted")
    parser.add_argument("--gallery", type=int, default=64, help="gallery images extracted")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs per form")
    parser.add_argument("--threads", type=int, default=usable_cores())
    parser.add_argument(
        "--checkpoints", default="", help="trained runs or checkpoints to add (their size)"
    )
    return parser.parse_args()


def product_rates() -> dict[str, float]:
    """GFLOP/s of the best of five GEMM x GEMM products: torch fp32 and bf16, numpy fp32."""
    rates = {}
    a32 = torch.rand(GEMM, GEMM)
    cases = {
        "torch fp32": (lambda: a32 @ a32),
        "torch bf16": (lambda b=a32.bfloat16(): b @ b),
        "numpy fp32": (lambda n=a32.numpy(): n @ n),
    }
    for name, product in cases.items():
        product()
        best = min(_timed(product) for _ in range(5))
        rates[name] = 2 * GEMM**3 / best / 1e9
    rates["onnxruntime int8"] = int8_product_rate()
    return rates


def int8_product_rate() -> float:
    """GOP/s of ONNX Runtime's MatMulInteger on GEMM x GEMM uint8 x int8 (int32 out): the
    kernel that quantised convolutions and products run on."""
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.integers(-128, 128, (GEMM, GEMM), dtype=np.int8), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["c"])], "gemm",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [GEMM, GEMM])],
        [helper.make_tensor_value_info("c", TensorProto.INT32, [GEMM, GEMM])], [weight],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    a = rng.integers(0, 256, (GEMM, GEMM), dtype=np.uint8)
    session.run(None, {"a": a})
    best = min(_timed(lambda: session.run(None, {"a": a})) for _ in range(5))
    return 2 * GEMM**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def flops_per_image(model, height: int, width: int) -> float:
    """The multiply-adds x 2 of one image through the model (eval mode)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model.eval()(torch.rand(1, 3, height, width))
    return counter.get_total_flops()


def pick_samples(ds, queries: int, gallery: int) -> dict[str, list]:
    """The first ``queries`` queries, and ``gallery`` gallery images of the same people
    spread evenly over them, so that mAP means something on a few images."""
    query = ds.query[:queries]
    pids = {s.pid for s in query}
    same = [s for s in ds.gallery if s.pid in pids]
    count = min(gallery, len(same))
    return {"query": query, "gallery": [same[i * len(same) // count] for i in range(count)]}


def build_forms(name: str, source, onnx_files: dict[str, Path]) -> list[Form]:
    """The forms to time, the baseline first."""
    size = {"height": source.data["height"], "width": source.data["width"]}
    base = ExtractOptions(**size, mean=source.data["mean"], std=source.data["std"])
    before = replace(base, channels_last=False, fold_bn=False)
    default = replace(base, **inference_form(base, "cpu", name))
    other = replace(default, channels_last=not default.channels_last)
    bf16 = replace(default, amp="bf16")
    forms = [
        Form("before", "pytorch fp32 as before", TorchRunner(source.model, before, "cpu"), before),
        Form(
            "fp32",
            f"pytorch fp32, {layout(default)}",
            TorchRunner(source.model, default, "cpu"),
            default,
        ),
        Form(
            "other",
            f"pytorch fp32, {layout(other)} *",
            TorchRunner(source.model, other, "cpu"),
            other,
        ),
        Form("bf16", "pytorch bf16", TorchRunner(source.model, bf16, "cpu"), bf16, "bf16"),
    ]
    graphs = [("ort", "ort", "onnxruntime", "fp32", "fp32"),
              ("int8", "int8", "onnxruntime", "int8", "onnxruntime int8")]  # fmt: skip
    if importlib.util.find_spec("openvino"):
        graphs += [("ov", "ort", "openvino", "fp32", "fp32"),
                   ("ov-int8", "int8", "openvino", "int8", "onnxruntime int8")]  # fmt: skip
    for key, graph, runtime, precision, limit in graphs:
        runner, _, options = onnx_extraction(
            onnx_files[graph], device="cpu", options=ExtractOptions(), runtime=runtime
        )
        forms.append(Form(key, f"{runtime} {precision}", runner, options, limit))
    return forms


def layout(options: ExtractOptions) -> str:
    return "folded, " + ("channels_last" if options.channels_last else "contiguous")


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


def measure(forms: list[Form], sets, root: Path, out: Path, repeats: int) -> None:
    """One untimed batch per form, then the forms in turn, ``repeats`` times: the model on
    preloaded pixels, then the extraction."""
    paths = [s.path for s in sets["gallery"][:BATCH]]
    size = forms[0].options.height, forms[0].options.width
    images = ImageList(paths, 0, *size, forms[0].options.resize)
    (pixels, ok, _), *_ = batches_in_process(images, len(images))
    for form in forms:
        form.runner.forward(pixels, ok)
    for _ in range(repeats):
        for form in forms:
            # the best of 3 calls: the first after another form's can meet that form's
            # threads still spinning (ONNX Runtime's wait for more work), which cost an
            # INT8 batch of 14 ms up to 3x
            form.model_seconds.append(
                min(_timed(lambda f=form: f.runner.forward(pixels, ok)) for _ in range(3))
            )
            form.rates.append(extract(form, sets, root, out / form.key))


def feature_diff(out: Path, form: Form, sets) -> float:
    """The largest difference from the baseline's features, on their scale."""
    worst = 0.0
    for subset in sets:
        base = read_features(out / "before" / f"synthreid-{subset}.h5").features
        got = read_features(out / form.key / f"synthreid-{subset}.h5").features
        worst = max(worst, float(np.abs(got - base).max()) / max(1.0, float(np.abs(base).max())))
    return worst


def mean_ap(out: Path, key: str) -> float:
    folder = out / key
    files = (folder / "synthreid-query.h5", folder / "synthreid-gallery.h5")
    return evaluate_files(*files, allow_mismatch=True)["mAP"]


def report(forms: list[Form], flops: float, limits: dict[str, float], out: Path, sets) -> None:
    print(
        f"  {'form':40s} {'model img/s':>11s} {'GFLOP/s':>8s} {'of limit':>8s} "
        f"{'extract img/s':>13s} {'min-max':>11s} {'x before':>8s} {'max diff':>9s}  mAP"
    )
    before = statistics.median(forms[0].rates)
    for form in forms:
        model_rate = BATCH / min(form.model_seconds)
        achieved = flops * model_rate / 1e9
        limit = limits[form.precision if " " in form.precision else f"torch {form.precision}"]
        median = statistics.median(form.rates)
        spread = f"{min(form.rates):.1f}-{max(form.rates):.1f}"
        print(
            f"  {form.label:40s} {model_rate:11.1f} {achieved:8.1f} {achieved / limit:8.2f} "
            f"{median:13.1f} {spread:>11s} {median / before:8.2f} "
            f"{feature_diff(out, form, sets):9.1e}  {mean_ap(out, form.key):.4%}"
        )
    print(
        "  runs (extract img/s, in order): "
        + "; ".join(f"{f.key} " + " ".join(f"{r:.1f}" for r in f.rates) for f in forms)
    )


def exports(source, root: Path, ds, stem: str) -> dict:
    """The fp32 export (verified) and the INT8 one (calibrated on 256 training images of
    synthreid small, its check on the whole query and gallery reported, not enforced)."""
    paths = pick_images([s.path for s in ds.query])
    files = {"ort": root / f"{stem}.onnx", "int8": root / f"{stem}-int8.onnx"}
    export_model(source, files["ort"], ExportOptions(), verify_on=paths)
    start = time.perf_counter()
    built = build_export(
        source, ExportOptions(int8=True), verify_on=paths,
        calibration=Calibration("synthreid", str(root)), max_map_drop=100.0,
    )  # fmt: skip
    built.write(files["int8"])
    seconds = time.perf_counter() - start
    return {**files, "check": built.verification["int8"]["retrieval"], "seconds": seconds}


def main() -> None:
    args = parse_args()
    began = time.perf_counter()
    threads = configure(args.threads)
    print(describe())
    import onnxruntime

    print(
        f"torch {torch.__version__} (CPU capability {torch.backends.cpu.get_cpu_capability()}), "
        f"onnxruntime {onnxruntime.__version__}; {threads} threads for both"
    )
    limits = product_rates()
    print(
        f"limit: {GEMM}^3 products at "
        + ", ".join(f"{k} {v:.0f} G{'OP' if 'int8' in k else 'FLOP'}/s" for k, v in limits.items())
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root, "small", seed=0)
        ds = load_dataset("synthreid", root)
        sets = pick_samples(ds, args.query, args.gallery)
        print(
            f"synthreid small: {len(sets['query'])} query + {len(sets['gallery'])} gallery "
            f"images, batch {BATCH}, 256x128, seeded random weights, decoding in the process; "
            f"{args.repeats} alternating repeats after one untimed batch per form"
        )
        models = [(name, None) for name in args.models.split(",") if name]
        models += [(None, path) for path in args.checkpoints.split(",") if path]
        for i, (name, checkpoint) in enumerate(models):
            if checkpoint:
                source = load_model_source(checkpoint_of(checkpoint))
                name = source.attrs["model"]
                print(f"{name}: the trained checkpoint {checkpoint}")
            else:
                source = load_model_source(None, name, height=256, width=128, seed=0)
            height, width = source.data["height"], source.data["width"]
            flops = flops_per_image(source.model, height, width)
            stem = f"{i}-{name.replace('/', '_')}"
            files = exports(source, root, ds, stem)
            print(f"{name}: {flops / 1e9:.2f} GFLOP per image at {height}x{width}")
            forms = build_forms(name, source, files)
            out = root / "features" / stem
            measure(forms, sets, ds.root, out, args.repeats)
            report(forms, flops, limits, out, sets)
            check = files["check"]
            print(
                f"  INT8 retrieval check on synthreid small ({check['query']} query, "
                f"{check['gallery']} gallery): mAP fp32 {check['mAP_fp32']:.4%}, INT8 "
                f"{check['mAP_int8']:.4%}, drop {check['mAP_drop_points']:.2f} points; "
                f"cosine to fp32 min {check['min_cosine_to_fp32']:.4f} mean "
                f"{check['mean_cosine_to_fp32']:.4f}; export took {files['seconds']:.0f} s"
            )
    minutes, seconds = divmod(round(time.perf_counter() - began), 60)
    print(f"took {minutes} min {seconds} s")


if __name__ == "__main__":
    main()
