"""INT8 exports: a verified fp32 graph statically quantised with ONNX Runtime's quantisation
tools, calibrated on training images, and accepted only when retrieval keeps its accuracy.

The quantised graph is QDQ (QuantizeLinear / DequantizeLinear pairs around each quantised
operator, which ONNX Runtime fuses into integer kernels): activations uint8 with per-tensor
ranges measured on the calibration images (their minimum and maximum), weights int8 per
output channel. The image input (uint8 pixels) and the float32 features stay as they are.

The check: the query and gallery of the calibration dataset through the fp32 graph and the
INT8 graph (each image decoded once), ranked as ``evaluate`` ranks them (the model's
distance, the dataset's protocol); the INT8 mAP may be at most ``max_map_drop`` points
below the fp32 mAP.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reidkit.deploy.metadata import DeployInfo, set_metadata
from reidkit.errors import DataError, UsageError
from reidkit.progress import ProgressFn, no_progress

log = logging.getLogger(__name__)
CALIBRATION_IMAGES = 256  # spread over the training set's identities and cameras
MAX_MAP_DROP = 1.0  # points of mAP the INT8 graph may lose against the fp32 one
BATCH = 32


@dataclass(frozen=True)
class Calibration:
    """Where the calibration and check images come from: a dataset under a root."""

    dataset: str
    root: str
    images: int = CALIBRATION_IMAGES

    def describe(self) -> dict[str, Any]:
        """What the file's metadata records (the root is left out: moving data changes
        nothing)."""
        return {"dataset": self.dataset, "images": self.images, "method": "minmax"}

    @functools.cached_property
    def subsets(self):
        """(train, query, gallery) samples of the dataset, read once.

        Raises:
            UsageError: not an image dataset with training, query and gallery images.
        """
        from reidkit.data import load_dataset

        data = load_dataset(self.dataset, self.root)
        if data.kind != "image" or not (data.train and data.query):
            raise UsageError(
                f"--int8: {self.dataset} under {self.root} has no training images "
                "and query/gallery images to calibrate and check on",
                hint="give an image dataset with --dataset NAME --root DIR",
            )
        return data.train, data.query, data.gallery


def calibration_source(
    *, dataset: str | None, root, config: dict | None, images: int | None = None
) -> Calibration:
    """``dataset`` under ``root`` where given, else the dataset the checkpoint was trained
    on (its config's data.dataset and data.root); ``images`` (default
    CALIBRATION_IMAGES) of its training set.

    Raises:
        UsageError: neither is there, or fewer than 1 image is asked for.
    """
    images = CALIBRATION_IMAGES if images is None else images
    if images < 1:
        raise UsageError(f"--calibration-images {images}: must be at least 1")
    if dataset is None:
        trained_on = (config or {}).get("data", {})
        if not trained_on.get("dataset"):
            raise UsageError(
                "--int8 needs images to calibrate on and a query and gallery to check "
                "retrieval on: give --dataset NAME (with --root)",
                hint="a checkpoint of a run calibrates on its training set by default",
            )
        dataset, root = trained_on["dataset"], root or trained_on.get("root", "data")
    return Calibration(dataset, str(root or "data"), images)


def _refuse_unreadable(paths: list[str], index, errors: list[str], purpose: str) -> None:
    """DataError naming the first image of a batch that cannot be read."""
    for i, error in zip(index, errors, strict=True):
        if error:
            raise DataError(
                f"cannot read image {paths[i]}: {error}",
                hint=f"--int8 needs every image it is to {purpose}",
            )


class _Reader:
    """ONNX Runtime's calibration data reader: the graph's input for batches of ``paths``,
    read in strides of one batch (``set_range``), after each of which ONNX Runtime merges
    the batch's ranges into the ranges so far and lets its activations go: memory for one
    batch's activations, whatever the number of images.

    (ONNX Runtime keeps every activation of every batch it reads in one go, about 30 MB an
    image for resnet50 at 256x128; its CalibMaxIntermediateOutputs option, meant to bound
    that, drops the batches it clears in ONNX Runtime 1.32 instead of merging them.)
    """

    def __init__(self, paths: list[str], info: DeployInfo, input_name: str, progress) -> None:
        from reidkit.features.batches import ImageList, batches_in_process

        self.total, self.done, self.progress, self.paths = len(paths), 0, progress, paths
        images = ImageList(paths, 0, info.height, info.width, info.interpolation)
        self.size = int(info.batch) if info.batch.isdigit() else None  # a fixed batch
        step = self.size or BATCH
        self.count = -(-len(paths) // step)
        self.batches = batches_in_process(images, step)
        self.input_name, self.info = input_name, info
        self.next, self.stop = 0, self.count

    def __len__(self) -> int:
        return self.count  # in batches: the unit of set_range

    def set_range(self, start_index: int, end_index: int) -> None:
        if start_index != self.next:  # ONNX Runtime reads the strides in order
            raise RuntimeError(f"calibration batches read out of order: {start_index}")
        self.stop = end_index

    def get_next(self) -> dict[str, np.ndarray] | None:
        from reidkit.features.batches import normalize_nchw

        if self.next >= self.stop:
            return None
        pixels, index, errors = next(self.batches)
        self.next += 1
        _refuse_unreadable(self.paths, index, errors, "calibrate on")
        self.done += len(pixels)
        self.progress(self.done, self.total)
        if self.size and len(pixels) < self.size:  # repeated images leave the ranges as they are
            pixels = np.resize(pixels, (self.size, *pixels.shape[1:]))
        if self.info.input_format == "uint8":
            return {self.input_name: np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))}
        return {self.input_name: normalize_nchw(pixels, self.info.mean, self.info.std)}


def quantized_export(
    serialized: bytes,
    info: DeployInfo,
    calibration: Calibration,
    max_map_drop: float,
    verify_on: list[str],
    *,
    progress_factory=None,
) -> tuple[bytes, dict[str, Any]]:
    """The verified fp32 graph ``serialized`` quantised (:func:`quantize`), compared with
    it on the verification images ``verify_on`` at two batch sizes, and checked for
    retrieval (:func:`retrieval_check`): (the INT8 file's bytes, with the check in its
    metadata; what the verification reports)."""
    progress_factory = progress_factory or (lambda name: no_progress)
    proto, used = quantize(serialized, info, calibration, progress=progress_factory("calibrate"))
    quantised = proto.SerializeToString()
    report = {
        "calibration": {**calibration.describe(), "used": used},
        **agreement(serialized, quantised, info, verify_on),
    }
    check = retrieval_check(
        serialized, quantised, info, calibration, max_map_drop,
        progress=progress_factory("int8 check"),
    )  # fmt: skip
    set_metadata(proto, {**info.to_props(), "int8_check": json.dumps(check, sort_keys=True)})
    return proto.SerializeToString(), {**report, "retrieval": check}


def agreement(fp32: bytes, int8: bytes, info: DeployInfo, paths: list[str]) -> dict[str, Any]:
    """The INT8 graph's features against the fp32 graph's on ``paths``, all in one batch
    and one at a time (:func:`reidkit.deploy.verify.compare`)."""
    from reidkit.deploy.runtime import OnnxRunner, open_session
    from reidkit.deploy.verify import compare
    from reidkit.features.batches import ImageList, batches_in_process
    from reidkit.threads import thread_count

    images = ImageList(paths, 0, info.height, info.width, info.interpolation)
    (pixels, _, _), *_ = batches_in_process(images, len(images))
    ok = np.ones(len(pixels), dtype=bool)
    reference, quantised = (
        OnnxRunner(open_session(graph, "cpu", thread_count()), info, name)
        for graph, name in ((fp32, "fp32"), (int8, "int8"))
    )
    expected = reference.forward(pixels, ok)
    batched = quantised.forward(pixels, ok)
    single = np.concatenate(
        [quantised.forward(pixels[i : i + 1], ok[:1]) for i in range(len(pixels))]
    )
    result = compare(np.concatenate([expected, expected]), np.concatenate([batched, single]))
    if not np.isfinite(result["scaled_diff"]):
        raise DataError("--int8: the quantised graph gives features that are not finite")
    return {f"{key}_to_fp32": value for key, value in result.items()}


class _ToDebug(logging.Handler):
    """ONNX Runtime's quantisation tools log their warnings to the root logger (which,
    without a handler, would set itself up to print them as ``WARNING:root:...``): while
    they run, what reaches the root logger from outside reidkit goes to this module's
    debug log instead, shown with --verbose."""

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("reidkit"):  # ours reach the root when they propagate
            log.debug("onnxruntime.quantization: %s", record.getMessage())


@contextlib.contextmanager
def _tools_quiet():
    root, handler = logging.getLogger(), _ToDebug()
    root.addHandler(handler)
    try:
        with contextlib.redirect_stdout(io.StringIO()) as printed:  # they print too
            yield
    finally:
        root.removeHandler(handler)
        for line in printed.getvalue().splitlines():
            log.debug("onnxruntime.quantization: %s", line)


def quantize(
    serialized: bytes,
    info: DeployInfo,
    calibration: Calibration,
    *,
    progress: ProgressFn = no_progress,
) -> tuple[Any, int]:
    """The fp32 graph ``serialized`` statically quantised to INT8 (QDQ), calibrated on
    ``calibration.images`` training images (or all, where it has fewer): the ONNX
    ModelProto (its metadata is the caller's to set) and the number of images."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from reidkit.deploy.verify import pick_images

    train, _, _ = calibration.subsets
    paths = pick_images([s.path for s in train], calibration.images)
    proto = onnx.load_from_string(serialized)
    input_name = proto.graph.input[0].name
    reader = _Reader(paths, info, input_name, progress)  # ONNX Runtime calls its get_next
    with tempfile.TemporaryDirectory(prefix="reidkit-int8-") as work:
        fp32, prepared, int8 = (Path(work) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        fp32.write_bytes(serialized)
        with _tools_quiet():
            quant_pre_process(str(fp32), str(prepared))  # ONNX Runtime's graph optimisation
            quantize_static(
                str(prepared),
                str(int8),
                reader,
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"CalibStridedMinMax": 1},  # a batch at a time (see _Reader)
            )
        quantised = onnx.load(str(int8))
    quantised.doc_string = proto.doc_string
    return quantised, len(paths)


def retrieval_check(
    fp32: bytes,
    int8: bytes,
    info: DeployInfo,
    calibration: Calibration,
    max_map_drop: float,
    *,
    progress: ProgressFn = no_progress,
) -> dict[str, Any]:
    """mAP of the fp32 and INT8 graphs on the calibration dataset's query and gallery.

    Raises:
        DataError: the INT8 mAP is more than ``max_map_drop`` points below the fp32 one.
    """
    from reidkit.data import protocol_of
    from reidkit.deploy.runtime import OnnxRunner, open_session
    from reidkit.deploy.verify import row_cosines
    from reidkit.features.batches import ImageList, batches_in_process
    from reidkit.metrics.distance import pairwise_distance
    from reidkit.metrics.rank import evaluate_distances
    from reidkit.metrics.ranking import DEFAULT_PROTOCOL
    from reidkit.threads import thread_count

    _, query, gallery = calibration.subsets
    samples = [*query, *gallery]
    runners = [
        OnnxRunner(open_session(graph, "cpu", thread_count()), info, name)
        for graph, name in ((fp32, "the fp32 graph"), (int8, "the INT8 graph"))
    ]
    images = ImageList([s.path for s in samples], 0, info.height, info.width, info.interpolation)
    features: list[list[np.ndarray]] = [[], []]
    done = 0
    for pixels, index, errors in batches_in_process(images, BATCH):
        _refuse_unreadable(images.paths, index, errors, "check retrieval on")
        ok = np.ones(len(pixels), dtype=bool)
        for runner, out in zip(runners, features, strict=True):
            out.append(runner.forward(pixels, ok))
        done += len(pixels)
        progress(done, len(samples))
    protocol = protocol_of(calibration.dataset) or DEFAULT_PROTOCOL
    pids = np.array([s.pid for s in samples])
    camids = np.array([s.camid for s in samples])
    q, g = slice(0, len(query)), slice(len(query), len(samples))
    fp32_rows, int8_rows = (np.concatenate(parts) for parts in features)
    maps = []
    for rows in (fp32_rows, int8_rows):
        distances = pairwise_distance(rows[q], rows[g], info.distance)
        result = evaluate_distances(
            distances, pids[q], camids[q], pids[g], camids[g], protocol=protocol
        )
        maps.append(result.mAP)
    cosine = row_cosines(fp32_rows, int8_rows)
    check = {
        "dataset": calibration.dataset,
        "query": len(query),
        "gallery": len(gallery),
        "protocol": protocol,
        "distance": info.distance,
        "mAP_fp32": maps[0],
        "mAP_int8": maps[1],
        "mAP_drop_points": round(100 * (maps[0] - maps[1]), 4),
        "max_map_drop_points": max_map_drop,
        "min_cosine_to_fp32": float(cosine.min()),
        "mean_cosine_to_fp32": float(cosine.mean()),
    }
    enforce_map_drop(check, max_map_drop, "nothing was written")
    return check


def enforce_map_drop(check: dict[str, Any], max_map_drop: float, consequence: str) -> None:
    """DataError when the check's mAP drop exceeds ``max_map_drop`` points."""
    drop = check["mAP_drop_points"]
    if not np.isfinite(drop) or drop > max_map_drop:
        raise DataError(
            f"--int8: the INT8 graph's mAP on {check['dataset']} is {drop:.2f} points below "
            f"the fp32 graph's ({100 * check['mAP_int8']:.2f}% against "
            f"{100 * check['mAP_fp32']:.2f}%), over the limit of {max_map_drop:g}; "
            f"{consequence}",
            hint="--max-map-drop N accepts a larger drop; --calibration-images N "
            "calibrates on more images",
        )
