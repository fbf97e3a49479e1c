"""What an exported ONNX file says about itself: how to feed it and what it returns.

The values are ONNX metadata properties (strings), readable by any ONNX tool:

    reidkit_format     "reidkit.onnx/1"
    input_format       "uint8": RGB pixels 0..255, NCHW, already resized to height x width;
                       "float": float32 NCHW, already standardised with mean and std
    height, width      the input size
    interpolation      how images are resized to it: "bilinear" or "bicubic" (absent in
                       files exported before it was said: bilinear)
    mean, std          per-channel, on the 0..1 scale (JSON lists)
    flip               "true" when the graph averages each image with its mirror image
    half               "true" when the model runs in float16 (the output is float32)
    int8               "true" when the graph is statically quantised to INT8 (absent in
                       files exported before: false)
    calibration        of an INT8 graph: the dataset, the number of training images and
                       the method its ranges were calibrated with (JSON; "{}" otherwise)
    batch              "dynamic" or the fixed batch size
    feature_dim        the length of the embedding
    model              the registered model name; model_options its options (JSON)
    distance           the distance the model's features are evaluated with
    checkpoint_sha256  the sha256 of the weights it was exported from
    reidkit_version    the version that exported it
    int8_check         of an INT8 graph: the retrieval check it passed (JSON: the dataset,
                       the fp32 and INT8 mAP, the drop and the limit); not part of
                       :class:`DeployInfo`, which says how the file was made
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from reidkit.errors import DataError

FORMAT = "reidkit.onnx/1"
INPUT_FORMATS = ("uint8", "float")


@dataclass
class DeployInfo:
    height: int
    width: int
    mean: list[float]
    std: list[float]
    interpolation: str = "bilinear"
    input_format: str = "uint8"
    flip: bool = False
    half: bool = False
    int8: bool = False
    calibration: dict = field(default_factory=dict)
    batch: str = "dynamic"
    feature_dim: int = 0
    model: str = ""
    model_options: dict = field(default_factory=dict)
    distance: str = "euclidean"
    checkpoint_sha256: str = ""
    reidkit_version: str = ""

    def to_props(self) -> dict[str, str]:
        props = {"reidkit_format": FORMAT}
        for key, value in asdict(self).items():
            if isinstance(value, bool):
                props[key] = "true" if value else "false"
            elif isinstance(value, list | dict):
                props[key] = json.dumps(value, sort_keys=True)
            else:
                props[key] = str(value)
        return props

    @classmethod
    def from_props(cls, props: dict[str, str], path: str) -> DeployInfo:
        """Parse an exported file's metadata; UsageError when it is not reidkit's."""
        if props.get("reidkit_format") != FORMAT:
            raise DataError(
                f"{path}: reidkit metadata of format {props.get('reidkit_format')!r}; this "
                f"reidkit reads {FORMAT!r}",
                hint="export it again with this version",
            )
        try:
            info = cls(
                height=int(props["height"]),
                width=int(props["width"]),
                mean=[float(v) for v in json.loads(props["mean"])],
                std=[float(v) for v in json.loads(props["std"])],
                interpolation=props.get("interpolation", "bilinear"),
                input_format=props["input_format"],
                flip=props["flip"] == "true",
                half=props["half"] == "true",
                int8=props.get("int8", "false") == "true",
                calibration=json.loads(props.get("calibration", "{}")),
                batch=props["batch"],
                feature_dim=int(props["feature_dim"]),
                model=props["model"],
                model_options=json.loads(props["model_options"]),
                distance=props["distance"],
                checkpoint_sha256=props["checkpoint_sha256"],
                reidkit_version=props["reidkit_version"],
            )
        except (KeyError, ValueError) as exc:
            raise DataError(f"{path}: damaged reidkit metadata ({exc})") from None
        if len(info.mean) != 3 or len(info.std) != 3 or min(info.std) <= 0:
            raise DataError(f"{path}: damaged reidkit metadata (mean and std need 3 values)")
        return info


def set_metadata(proto, props: dict[str, str]) -> None:
    """Replace the metadata properties of the ONNX ModelProto ``proto`` with ``props``."""
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
