"""Datasets: samples, parsers for known layouts, manifests, combining, synthetic data."""

from __future__ import annotations

from reidkit.data.catalog import DATASETS, list_datasets, load_dataset, protocol_of
from reidkit.data.sample import SUBSETS, Dataset, DatasetSpec, Sample

__all__ = [
    "DATASETS",
    "SUBSETS",
    "Dataset",
    "DatasetSpec",
    "Sample",
    "list_datasets",
    "load_dataset",
    "protocol_of",
]
