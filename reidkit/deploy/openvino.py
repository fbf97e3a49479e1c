"""OpenVINO as a second runtime for the ONNX files ``reidkit export`` writes (``extract
--onnx FILE --runtime openvino``, the ``[openvino]`` extra).

The file is read by OpenVINO's ONNX frontend and compiled for the CPU in float32
(``INFERENCE_PRECISION_HINT f32``: on CPUs with bfloat16 OpenVINO would otherwise compute
in bfloat16), with the command's thread count. :class:`OpenvinoSession` shows it to
:class:`reidkit.deploy.runtime.OnnxRunner` through the few methods of ONNX Runtime's
``InferenceSession`` that the runner uses: this module is the one place that speaks
OpenVINO. Measured on 2 cores (docs/benchmarks.md): INT8 graphs run 1.1-1.5x faster than
in ONNX Runtime, fp32 graphs no faster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reidkit.errors import DataError, MissingInputError, UsageError

INSTALL_HINT = "pip install 'reidkit[openvino]' (openvino, pinned in constraints.txt)"
ELEMENT_TYPES = {"u8": "tensor(uint8)", "f32": "tensor(float)", "f16": "tensor(float16)"}


def import_openvino():
    try:
        import openvino
    except ImportError:
        raise UsageError("OpenVINO is not installed", hint=INSTALL_HINT) from None
    return openvino


@dataclass(frozen=True)
class Port:
    """An input or output as ONNX Runtime describes one: name, type, shape (ints, or a
    name for a dimension left open)."""

    name: str
    type: str
    shape: list


def _port(port, index: int) -> Port:
    shape = [d.get_length() if d.is_static else f"dim{i}" for i, d in
             enumerate(port.get_partial_shape())]  # fmt: skip
    kind = port.get_element_type().get_type_name()
    name = next(iter(port.get_names()), f"port{index}")
    return Port(name, ELEMENT_TYPES.get(kind, f"tensor({kind})"), shape)


class _Meta:
    def __init__(self, props: dict[str, str]) -> None:
        self.custom_metadata_map = props


class OpenvinoSession:
    """``path`` compiled by OpenVINO for the CPU in float32, behind the part of ONNX
    Runtime's InferenceSession interface that OnnxRunner uses (get_inputs, get_outputs,
    get_providers, get_modelmeta, run)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        ov = import_openvino()
        from openvino.frontend import FrontEndManager

        path = Path(path)
        if not path.is_file():
            raise MissingInputError(f"--onnx {path}: no such file")
        frontend = FrontEndManager().load_by_framework("onnx")
        if frontend is None:
            raise UsageError(f"this OpenVINO ({ov.__version__}) has no ONNX frontend")
        try:
            model = frontend.convert(frontend.load(str(path)))
            config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
            if threads:
                config["INFERENCE_NUM_THREADS"] = threads
            self.compiled = ov.Core().compile_model(model, "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError and its own failure types
            raise DataError(f"{path}: OpenVINO cannot run it: {_reason(exc)}") from None
        self.request = self.compiled.create_infer_request()
        try:  # the ONNX file's metadata properties
            props = model.get_rt_info(["framework"]).astype(dict)
            self.props = {key: value.astype(str) for key, value in props.items()}
        except Exception:  # a file without any
            self.props = {}
        self.version = ov.__version__

    def get_inputs(self) -> list[Port]:
        return [_port(p, i) for i, p in enumerate(self.compiled.inputs)]

    def get_outputs(self) -> list[Port]:
        return [_port(p, i) for i, p in enumerate(self.compiled.outputs)]

    def get_providers(self) -> list[str]:
        return ["OpenVINO CPU"]

    def get_modelmeta(self) -> _Meta:
        return _Meta(self.props)

    def run(self, _names, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        (x,) = feeds.values()
        result = self.request.infer([x])
        return [np.array(result[output]) for output in self.compiled.outputs]


def _reason(exc: Exception) -> str:
    """OpenVINO's message without its C++ source locations, in one line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = re.sub(
        r"(Exception from |Check '[^']*' failed at )?\S+\.(?:h|hpp|cc|cpp):\d+:? ?", "", text
    )
    return text.strip(" :")[:300]
