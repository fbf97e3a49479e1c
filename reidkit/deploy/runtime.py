"""Extraction with ONNX Runtime: an exported model as a runner for
:func:`reidkit.features.extractor.extract_subset`. Neither torch nor onnx is imported here,
so a deployment needs only onnxruntime, numpy, h5py and pillow.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from reidkit.deploy.metadata import INPUT_FORMATS, DeployInfo
from reidkit.device import may_have_gpu
from reidkit.errors import DataError, MissingInputError, UsageError
from reidkit.features.batches import ImageList, batches_in_process, normalize_nchw

log = logging.getLogger(__name__)
INSTALL_HINT = "pip install 'reidkit[onnx]' (onnx and onnxruntime, pinned in constraints.txt)"
RUNTIMES = ("onnxruntime", "openvino")  # what runs an exported graph (reidkit.deploy.openvino)


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise UsageError("ONNX Runtime is not installed", hint=INSTALL_HINT) from None
    return onnxruntime


def providers_for(device: str) -> list[str]:
    """ONNX Runtime's execution providers for ``device``: auto (CUDA when ONNX Runtime has
    it and a GPU is there, else the CPU), cpu, or cuda (an error without it)."""
    ort = import_onnxruntime()
    available = ort.get_available_providers()
    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device {device}: with --onnx, use auto, cpu or cuda")
    if device == "cpu":
        return ["CPUExecutionProvider"]
    # the GPU build lists CUDA even on a machine without a GPU: auto needs the device too
    has_cuda = "CUDAExecutionProvider" in available and (device == "cuda" or may_have_gpu())
    if device == "cuda" and not has_cuda:
        raise UsageError(
            f"--device {device}: this ONNX Runtime has no CUDA provider "
            f"(it has {', '.join(available)})",
            hint="pip install onnxruntime-gpu, or --device cpu",
        )
    return (["CUDAExecutionProvider"] if has_cuda else []) + ["CPUExecutionProvider"]


def open_session(path: str | Path | bytes, device: str = "cpu", threads: int | None = None):
    """An InferenceSession for the file ``path`` (or a serialized model), with a one-line
    error for what ONNX Runtime cannot load or run (not ONNX, an opset or an operator it
    does not have).

    Args:
        threads: ONNX Runtime's intra-op threads, with one inter-op thread: the command's
            count (reidkit.threads, the one torch gets), so ``--threads N`` means N for both
            runtimes. None leaves ONNX Runtime's own default, one per physical core.
    """
    ort = import_onnxruntime()
    if isinstance(path, bytes):
        model, path = path, "the exported graph"
    else:
        path = Path(path)
        if not path.is_file():
            raise MissingInputError(f"--onnx {path}: no such file")
        model = str(path)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(model, options, providers=providers_for(device))
    except UsageError:
        raise
    except Exception as exc:  # ORT raises its own Fail / InvalidGraph / NotImplemented types
        raise DataError(f"{path}: ONNX Runtime cannot run it: {ort_reason(exc)}") from None
    if device == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        raise DataError(  # ONNX Runtime falls back to the CPU when CUDA fails to load
            f"--device cuda: ONNX Runtime could not start its CUDA provider for {path}",
            hint="check the CUDA and cuDNN libraries onnxruntime-gpu needs, or --device cpu",
        )
    return session


def ort_reason(exc: Exception) -> str:
    """ONNX Runtime's message without its prefix and C++ source location."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    text = re.sub(r"Load model from \S+ failed: ?", "", text)
    text = re.sub(r"\S+\.(?:h|cc|cpp):\d+ .*?\) (?=[A-Z])", "", text)  # file:line signature
    sentences = text.split(". ")
    return ". ".join(sentences[:2]) + ("." if len(sentences) > 2 else "")


class OnnxRunner:
    """An exported model run by ONNX Runtime, fed uint8 (N, H, W, 3) batches."""

    def __init__(self, session, info: DeployInfo, path: str) -> None:
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise DataError(
                f"{path}: the graph has {len(inputs)} inputs and {len(outputs)} outputs; "
                "extraction needs one image input and an embedding output"
            )
        _check_input(inputs[0], info, path)
        self.session, self.info, self.path = session, info, path
        self.device = "cuda" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        self.input_name = inputs[0].name
        self.uint8 = inputs[0].type == "tensor(uint8)"
        if info.input_format not in INPUT_FORMATS:
            raise DataError(f"{path}: unknown input_format {info.input_format!r}")
        self.fixed_batch = int(info.batch) if info.batch.isdigit() else None
        self.flip_here = False  # average with the mirror here, for a graph without --flip
        self.feature_dim = info.feature_dim or _output_dim(outputs[0], path)

    def batches(self, images: ImageList, batch_size: int, workers: int):
        """Batches decoded in this process (``workers`` is 0: extraction refuses more)."""
        return batches_in_process(images, batch_size)

    def forward(self, batch: np.ndarray, ok: np.ndarray) -> np.ndarray:
        """Features of the batch's readable images (``ok``); a graph exported for a fixed
        batch size runs on pieces of that size, the last one padded."""
        pixels = np.asarray(batch)[ok]
        step = self.fixed_batch or len(pixels)
        parts = []
        for start in range(0, len(pixels), step):
            piece = pixels[start : start + step]
            rows = len(piece)
            if rows < step:
                pad = np.zeros((step - rows, *piece.shape[1:]), dtype=piece.dtype)
                piece = np.concatenate([piece, pad])
            features = self.run(piece)
            if self.flip_here:
                features = (features + self.run(piece[:, :, ::-1])) / 2
            parts.append(features[:rows])
        return np.concatenate(parts)

    def run(self, pixels: np.ndarray) -> np.ndarray:
        """The graph on uint8 (N, H, W, 3) pixels, N as the graph takes it."""
        if self.uint8:
            x = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))
        else:
            x = normalize_nchw(pixels, self.info.mean, self.info.std)
        (features, *_) = self.session.run(None, {self.input_name: x})
        return np.asarray(features, dtype=np.float32)


def _check_input(first, info: DeployInfo, path: str) -> None:
    """The graph's input must be a batch of 3-channel images of the size extraction feeds
    (its fixed dimensions checked now, before a batch fails inside ONNX Runtime).

    Raises:
        UsageError: another rank, element type, channel count or image size.
    """
    shape = list(first.shape)
    if len(shape) != 4 or first.type not in ("tensor(uint8)", "tensor(float)"):
        raise UsageError(
            f"{path}: its input {first.name!r} is {first.type} of shape {shape}, not a batch "
            "of images (uint8 or float32, N x 3 x height x width)"
        )
    if isinstance(shape[1], int) and shape[1] != 3:
        raise UsageError(f"{path}: its input takes {shape[1]} channels, not 3 (RGB)")
    fixed = [(name, dim, want) for name, dim, want in
             (("height", shape[2], info.height), ("width", shape[3], info.width))
             if isinstance(dim, int) and dim != want]  # fmt: skip
    if fixed:
        given = " ".join(f"--{name} {want}" for name, _, want in fixed)
        right = " ".join(f"--{name} {dim}" for name, dim, _ in fixed)
        raise UsageError(
            f"{path}: the graph takes {shape[2]}x{shape[3]} images, not the {given} asked for",
            hint=f"give {right}",
        )


def _output_dim(output, path: str) -> int:
    shape = output.shape
    if len(shape) != 2 or not isinstance(shape[1], int):
        raise DataError(f"{path}: the output's shape {shape} is not (batch, feature_dim)")
    return shape[1]


def open_graph(path: str | Path, device: str, threads: int | None, runtime: str):
    """An ONNX Runtime session, or an OpenVINO one behind the same methods."""
    if runtime not in RUNTIMES:
        raise UsageError(f"--runtime {runtime}: choose from {', '.join(RUNTIMES)}")
    if runtime == "onnxruntime":
        return open_session(path, device, threads)
    if device not in ("auto", "cpu"):
        raise UsageError(
            f"--device {device}: reidkit runs OpenVINO on the CPU", hint="--device cpu"
        )
    from reidkit.deploy.openvino import OpenvinoSession

    return OpenvinoSession(path, threads)


def onnx_runner(
    path: str | Path,
    *,
    device: str = "auto",
    threads: int | None = None,
    runtime: str = "onnxruntime",
    height: int | None = None,
    width: int | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    interpolation: str | None = None,
) -> OnnxRunner:
    """The runner of an ONNX file. Without reidkit metadata (a model exported elsewhere) the
    input size and normalisation must be given (the resize is bilinear unless given); with
    it, given values must agree. ``runtime`` runs it (:data:`RUNTIMES`)."""
    session = open_graph(path, device, threads, runtime)
    props = dict(session.get_modelmeta().custom_metadata_map)
    given = {"height": height, "width": width, "mean": mean, "std": std}
    if "reidkit_format" in props:
        info = DeployInfo.from_props(props, str(path))
        for key, value in given.items():
            if value is not None and value != getattr(info, key):
                raise UsageError(
                    f"--{key} {value}: {path} was exported for {key} {getattr(info, key)}",
                    hint="leave it out: the file says how to feed it",
                )
        if interpolation is not None and interpolation != info.interpolation:
            raise UsageError(
                f"interpolation {interpolation}: {path} was exported for images resized "
                f"{info.interpolation}",
                hint="leave it out: the file says how to feed it",
            )
    else:
        missing = [f"--{k}" for k, v in given.items() if v is None]
        if missing:
            raise UsageError(
                f"{path}: no reidkit metadata, so {', '.join(missing)} must be given",
                hint="a model exported by reidkit export says how to feed it",
            )
        first = session.get_inputs()[0]
        info = DeployInfo(
            height=height, width=width, mean=list(mean), std=list(std),
            interpolation=interpolation or "bilinear",
            input_format="uint8" if first.type == "tensor(uint8)" else "float",
            batch=str(first.shape[0]) if isinstance(first.shape[0], int) else "dynamic",
        )  # fmt: skip
    return OnnxRunner(session, info, str(path))


def runtime_name(runner: OnnxRunner, runtime: str) -> str:
    """What ran the graph, with its version: a feature file's ``runtime``."""
    if runtime == "openvino":
        return f"openvino {runner.session.version}"
    return f"onnxruntime {import_onnxruntime().__version__}"


def onnx_extraction(path: str | Path, *, device: str, options, runtime: str = "onnxruntime"):
    """(runner, feature-file attrs, resolved ExtractOptions) of an extraction with ONNX
    Runtime: ``options``' image size, mean and std apply to a file without reidkit's
    metadata (one with it states its own), and its ``flip`` is honoured by the graph when
    it was exported with --flip, else here. ``runtime`` runs it (:data:`RUNTIMES`)."""
    from reidkit.fileio import file_sha256
    from reidkit.threads import thread_count

    runner = onnx_runner(
        path, device=device, threads=thread_count(), height=options.height,
        width=options.width, mean=options.mean, std=options.std,
        interpolation=options.interpolation, runtime=runtime,
    )  # fmt: skip
    info = runner.info
    runner.flip_here = options.flip and not info.flip
    resolved = replace(
        options, height=info.height, width=info.width, mean=list(info.mean),
        std=list(info.std), interpolation=info.interpolation, flip=options.flip or info.flip,
        channels_last=False,  # PyTorch's; what files made with ONNX Runtime always recorded
    )  # fmt: skip
    attrs = {
        "model": info.model or Path(path).stem,
        "model_options": json.dumps(info.model_options, sort_keys=True),
        "distance": info.distance,
        "checkpoint_sha256": info.checkpoint_sha256,
        "onnx": str(path),
        "onnx_sha256": file_sha256(path),
        "onnx_half": info.half,
        "onnx_int8": info.int8,
        "runtime": runtime_name(runner, runtime),
    }
    return runner, attrs, resolved
