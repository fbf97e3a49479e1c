"""``reidkit export``: a model as an ONNX file that takes images and returns the embedding
exactly as ``extract`` stores it, verified against PyTorch before it is published.

The graph folds the preprocessing in: uint8 RGB NCHW pixels (or float32 NCHW already
standardised) go through x / 255 - mean / std, the model, optionally the mean with the
mirrored image, and come out as float32 (N, feature_dim). :mod:`reidkit.deploy.metadata`
lists what the file says about itself.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reidkit.deploy.metadata import INPUT_FORMATS, DeployInfo, set_metadata
from reidkit.errors import DataError, MissingInputError, UsageError

log = logging.getLogger(__name__)
DEFAULT_OPSET = 18
FIRST_OPSET = 18  # torch's exporter writes 18 and later (it leaves a lower request at 18)
INPUT_NAME, OUTPUT_NAME = "images", "features"
EXAMPLE_BATCH = 2  # the traced batch of a dynamic export (1 would specialise the size)


@dataclass
class ExportOptions:
    """How the graph is built (the metadata records all of it)."""

    opset: int = DEFAULT_OPSET
    batch: str = "dynamic"
    height: int | None = None
    width: int | None = None
    flip: bool = False
    half: bool = False
    input_format: str = "uint8"
    int8: bool = False

    def check(self) -> None:
        import onnx

        if self.int8 and self.half:
            raise UsageError("--int8 and --half: a graph is quantised to one of them, not both")

        latest = onnx.defs.onnx_opset_version()
        if not FIRST_OPSET <= self.opset <= latest:
            raise UsageError(
                f"--opset {self.opset}: torch's exporter writes opsets {FIRST_OPSET} to "
                f"{latest} (onnx {onnx.__version__})",
                hint=f"the default, {DEFAULT_OPSET}, is the most widely supported",
            )
        if self.batch != "dynamic" and not (self.batch.isdigit() and int(self.batch) >= 1):
            raise UsageError(f"--batch {self.batch}: give 'dynamic' or a positive batch size")
        if self.input_format not in INPUT_FORMATS:
            raise UsageError(f"--input {self.input_format}: choose from {', '.join(INPUT_FORMATS)}")
        for name in ("height", "width"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name} {value}: must be positive")


def import_onnx():
    """onnx and onnxruntime, or a UsageError that says how to install them."""
    from reidkit.deploy.runtime import INSTALL_HINT, import_onnxruntime

    try:
        import onnx
    except ImportError:
        raise UsageError("onnx is not installed", hint=INSTALL_HINT) from None
    return onnx, import_onnxruntime()


def checkpoint_of(path: str | os.PathLike[str]) -> Path:
    """A checkpoint file, or a run directory's weights/best.pt (else its weights/last.pt)."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / "weights" / name).is_file():
                return path / "weights" / name
        raise MissingInputError(f"{path}: a folder without weights/best.pt or weights/last.pt")
    if not path.exists():
        raise MissingInputError(f"{path}: no such checkpoint or run directory")
    return path


def deploy_graph(model, info: DeployInfo):
    """The module that is exported: preprocessing, model, flip averaging, float32 out."""
    import torch

    from reidkit.features.batches import pixel_offset_divisor

    class DeployGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            offset, divisor = pixel_offset_divisor(info.mean, info.std)  # as extraction's
            self.register_buffer("offset", torch.from_numpy(offset))
            self.register_buffer("divisor", torch.from_numpy(divisor))

        def forward(self, images):
            x = images.float()
            if info.input_format == "uint8":
                x = (x - self.offset) / self.divisor
            if info.half:
                x = x.half()
            features = self.model(x).float()
            if info.flip:
                features = (features + self.model(torch.flip(x, dims=[3])).float()) / 2
            return features

    return DeployGraph().eval()


def export_onnx(graph, info: DeployInfo, opset: int):
    """torch's ONNX exporter (torch.export based) on ``graph``; returns the ModelProto with
    the metadata set. Any failure of the exporter is a one-line DataError."""
    import torch

    batch = EXAMPLE_BATCH if info.batch == "dynamic" else int(info.batch)
    dtype = torch.uint8 if info.input_format == "uint8" else torch.float32
    example = torch.zeros((batch, 3, info.height, info.width), dtype=dtype)
    if dtype == torch.uint8:
        example = torch.randint(0, 256, example.shape, generator=torch.Generator().manual_seed(0))
        example = example.to(torch.uint8)
    dynamic = ({0: torch.export.Dim("batch", min=1)},) if info.batch == "dynamic" else None
    chatter = io.StringIO()  # the exporter prints its progress; our log says what matters
    try:
        with contextlib.redirect_stdout(chatter), torch.inference_mode(False), torch.no_grad():
            program = torch.onnx.export(
                graph,
                (example,),
                dynamo=True,
                dynamic_shapes=dynamic,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                external_data=False,
                optimize=True,
                verify=False,
            )
    except Exception as exc:
        reason = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        log.debug("exporter output:\n%s", chatter.getvalue())
        raise DataError(f"{info.model}: torch's ONNX exporter failed: {reason[:300]}") from None
    proto = program.model_proto
    set_metadata(proto, info.to_props())
    proto.doc_string = f"reidkit {info.model}: images in, re-ID embedding out"
    return proto


def deploy_info(source, options: ExportOptions, calibration=None) -> DeployInfo:
    """What the file made from ``source`` with ``options`` (and, for an INT8 graph, its
    :class:`reidkit.deploy.quantize.Calibration`) will say about itself."""
    from reidkit import __version__

    return DeployInfo(
        height=options.height or source.data["height"],
        width=options.width or source.data["width"],
        mean=[float(v) for v in source.data["mean"]],
        std=[float(v) for v in source.data["std"]],
        interpolation=source.data.get("interpolation", "bilinear"),
        input_format=options.input_format,
        flip=options.flip,
        half=options.half,
        int8=options.int8,
        calibration=calibration.describe() if options.int8 else {},
        batch=options.batch,
        feature_dim=int(source.model.feature_dim),
        model=source.attrs["model"],
        model_options=json.loads(source.attrs["model_options"]),
        distance=source.attrs.get("distance", "euclidean"),
        checkpoint_sha256=source.attrs.get("checkpoint_sha256", ""),
        reidkit_version=__version__,
    )


def opset_of(proto) -> int:
    """The ONNX (default domain) opset a model's graph is written in."""
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def exported_as(path: str | os.PathLike[str]) -> tuple[DeployInfo, int] | None:
    """The metadata and opset of a reidkit export at ``path``; None for any other file."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
        props = {p.key: p.value for p in proto.metadata_props}
        opset = opset_of(proto)
        return DeployInfo.from_props(props, str(path)), opset
    except Exception:  # not ONNX, not reidkit's, damaged: not an export of ours
        return None


def int8_check_of(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The retrieval check an INT8 export at ``path`` records (its ``int8_check``); None
    when it records none that can be read (a tool rewrote the metadata, say)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in proto.metadata_props}
    try:
        check = json.loads(props["int8_check"])
        float(check["mAP_drop_points"]), float(check["mAP_int8"]), float(check["mAP_fp32"])
    except (KeyError, ValueError, TypeError):
        return None
    return check


def is_current(
    path: str | os.PathLike[str], info: DeployInfo, opset: int, *, force: bool = False
) -> bool:
    """Whether ``path`` already is the export that ``info`` and ``opset`` describe: the one
    rule for an unchanged rerun of ``reidkit export`` (nothing to do). A reidkit export made
    with other weights or options is exported again, and so is one of random weights
    (``--model`` without ``--weights``), whose seed the metadata does not record.

    Raises:
        UsageError: ``path`` exists and is not a reidkit export (unless ``force``).
    """
    path = Path(path)
    if force or not path.exists():
        return False
    if not info.checkpoint_sha256:  # random weights: the seed is not in the metadata
        return False
    made = exported_as(path)
    if made is None:
        raise UsageError(
            f"--out {path}: the file exists and is not a reidkit export",
            hint="--force replaces it",
        )
    if made != (info, opset):
        log.info("%s was exported with other weights or options: exporting it again", path)
    return made == (info, opset)


@dataclass
class Export:
    """A verified export, not yet written: :meth:`write` publishes it."""

    serialized: bytes
    info: DeployInfo
    opset: int
    verification: dict[str, Any]
    started: float

    def write(self, out: str | os.PathLike[str]) -> dict[str, Any]:
        """Write the file atomically; the result that ``reidkit export --json`` prints."""
        from reidkit.fileio import atomic_path

        out = Path(out)
        with atomic_path(out) as tmp:
            tmp.write_bytes(self.serialized)
        return {
            "file": str(out),
            "up_to_date": False,
            "bytes": len(self.serialized),
            "sha256": hashlib.sha256(self.serialized).hexdigest(),  # the bytes just written
            "opset": self.opset,
            **asdict(self.info),
            "verification": self.verification,
            "seconds": round(time.perf_counter() - self.started, 2),
        }


def build_export(
    source,
    options: ExportOptions,
    *,
    verify_on,
    tolerance: float | None = None,
    calibration=None,
    max_map_drop: float | None = None,
    progress_factory=None,
) -> Export:
    """Export ``source`` (a :class:`reidkit.features.source.ModelSource`) to ONNX in memory
    and verify it on the images ``verify_on`` with ONNX Runtime against PyTorch. With
    ``options.int8`` the verified fp32 graph is then quantised, calibrated as
    ``calibration`` (a :class:`reidkit.deploy.quantize.Calibration`) says, and kept only
    when its mAP is at most ``max_map_drop`` points below the fp32 graph's
    (:mod:`reidkit.deploy.quantize`).

    Raises:
        UsageError: bad options.
        DataError: the export fails, ONNX Runtime's features differ beyond ``tolerance``, or
            the INT8 graph loses more mAP than allowed.
    """
    import onnx

    from reidkit.deploy.verify import verify_export

    options.check()
    if options.int8 and calibration is None:
        raise UsageError("--int8 needs a dataset to calibrate on")
    start = time.perf_counter()
    model = source.model.eval()
    info = deploy_info(source, options, calibration)
    exported = copy.deepcopy(model).half() if options.half else model
    proto = export_onnx(deploy_graph(exported, info), info, options.opset)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:
        raise DataError(f"{info.model}: the exported graph fails onnx's checker: {exc}") from None
    serialized = proto.SerializeToString()
    tolerance = tolerance if tolerance is not None else (1e-2 if options.half else 1e-4)
    verification = verify_export(serialized, model, info, verify_on, tolerance)
    opset = opset_of(proto)
    if options.int8:
        from reidkit.deploy import quantize

        serialized, verification["int8"] = quantize.quantized_export(
            serialized, info, calibration,
            quantize.MAX_MAP_DROP if max_map_drop is None else max_map_drop, verify_on,
            progress_factory=progress_factory,
        )  # fmt: skip
    return Export(serialized, info, opset, verification, start)


def export_model(
    source, out: str | os.PathLike[str], options: ExportOptions, *, verify_on, **checks
) -> dict[str, Any]:
    """Export ``source`` to ``out``: :func:`build_export` (``checks``: its tolerance, and
    an INT8 graph's calibration and max_map_drop), then the file appears only when the
    checks passed (written atomically)."""
    return build_export(source, options, verify_on=verify_on, **checks).write(out)
