"""Datasets. The core types live here: samples and tracklets (``sample``, ``tracklets``),
the registry that turns a name or a path into a Dataset (``catalog``), manifests,
combining and holding out, and what training reads them with (``samplers``,
``transforms``, ``clips``, ``images``). Three sub-packages hold the rest: ``layouts``
(the parsers of the published datasets' folders), ``synth`` (the synthetic data) and
``fetch`` (download and install)."""

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
