"""Which feature files belong together: the attributes that say how a file was made
(model, weights, image size, normalisation, flip, pooling...), and the refusal of a query
and a gallery file that differ in one."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from reidkit.errors import UsageError
from reidkit.features.store import FeatureSet

# Attributes that say how features were made: a query and a gallery file that differ in any
# of them do not belong together (the attribute, and how to show its value).
PROVENANCE_FIELDS = {
    "model": "model",
    "model_options": "model options",
    "checkpoint_sha256": "checkpoint",
    "seed": "seed of the untrained model",
    "image_size": "image size",
    "mean": "pixel mean",
    "std": "pixel std",
    "interpolation": "resize interpolation",
    "flip": "flip averaging",
    "normalized": "feature normalisation",
    "onnx_half": "float16 ONNX graph",
    "onnx_int8": "INT8 ONNX graph",
    "kind": "kind of rows (image or tracklet)",
    "temporal": "temporal pooling",
    "sample": "frames pooled per tracklet",
}


def provenance_of(features: FeatureSet) -> dict[str, Any]:
    """The PROVENANCE_FIELDS a file states (pixel mean and std of files written before
    they were attributes of their own come from the provenance's options)."""
    attrs = features.attrs
    found = {k: attrs[k] for k in PROVENANCE_FIELDS if k in attrs}
    if "model" in attrs:  # every reidkit file: one that does not say float16 is float32
        found.setdefault("onnx_half", False)
        found.setdefault("onnx_int8", False)  # and one that does not say INT8, not INT8
        found.setdefault("kind", "image")  # and one that does not say tracklet, of images
        found.setdefault("interpolation", "bilinear")  # the one resize before it was said
    if "mean" not in found and isinstance(attrs.get("provenance"), str):
        with contextlib.suppress(ValueError, AttributeError):
            options = json.loads(attrs["provenance"]).get("options", {})
            found.update({k: options[k] for k in ("mean", "std") if k in options})
    return found


def check_same_origin(query: FeatureSet, gallery: FeatureSet) -> None:
    """Refuse a query and a gallery file made differently (another model, checkpoint, image
    size, flip or normalisation); only the fields both files state are compared.

    Raises:
        UsageError: naming both files and the first field that differs.
    """
    if query.dim != gallery.dim:
        raise UsageError(
            f"{query.path} has {query.dim}-dimensional features but {gallery.path} has "
            f"{gallery.dim}: they must come from the same model"
        )
    mine, theirs = provenance_of(query), provenance_of(gallery)
    for key, what in PROVENANCE_FIELDS.items():
        if key in mine and key in theirs and not _same_value(mine[key], theirs[key]):
            shown = [_show(key, mine[key]), _show(key, theirs[key])]
            if key == "checkpoint_sha256":  # which files the weights came from, when known
                shown = [
                    f"{v}{_weights_file(f.attrs)}"
                    for v, f in zip(shown, (query, gallery), strict=True)
                ]
            raise UsageError(
                f"{query.path} and {gallery.path} do not belong together: {what} "
                f"{shown[0]} against {shown[1]}",
                hint="extract both with the same model and options, or pass --allow-mismatch",
            )


def _weights_file(attrs: dict[str, Any]) -> str:
    """' (from FILE)': the checkpoint, or the ONNX file, a feature file was extracted with."""
    if attrs.get("onnx"):
        return f" (from {attrs['onnx']}, an ONNX export)"
    return f" (from {attrs['checkpoint']})" if attrs.get("checkpoint") else ""


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return float(a) == float(b)
    return a == b


def _show(key: str, value: Any) -> str:
    if key == "checkpoint_sha256":
        return f"sha256 {str(value)[:12]}" if value else "(none: untrained)"
    if key == "image_size" and isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    return str(value)
