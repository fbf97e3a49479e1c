"""Features: extraction of embeddings from images and tracklets (PyTorch or ONNX Runtime,
resumable, under torchrun), their HDF5 files (schema and reading in ``store``, writing in
``writer``), and which files belong together (``origin``)."""

from __future__ import annotations

from reidkit.features.store import SCHEMA, FeatureSet, read_features
from reidkit.features.writer import FeatureWriter, write_features

__all__ = ["SCHEMA", "FeatureSet", "FeatureWriter", "read_features", "write_features"]
