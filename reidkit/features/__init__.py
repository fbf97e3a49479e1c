"""Feature files: HDF5 storage of embeddings with their labels (and, later, extraction)."""

from __future__ import annotations

from reidkit.features.store import SCHEMA, FeatureSet, FeatureWriter, read_features, write_features

__all__ = ["SCHEMA", "FeatureSet", "FeatureWriter", "read_features", "write_features"]
