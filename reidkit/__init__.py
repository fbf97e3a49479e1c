"""reidkit: a person re-identification toolkit.

The public API is small: load datasets by name or path, and the error types every
function raises. Commands live in ``reidkit.cli``; heavy modules (torch, h5py) are
imported only where they are used.
"""

from __future__ import annotations

__version__ = "0.1.0"

from reidkit.data import Dataset, Sample, list_datasets, load_dataset
from reidkit.errors import (
    DataError,
    Interrupted,
    LockedError,
    MissingInputError,
    ReidkitError,
    UnknownNameError,
    UsageError,
)

__all__ = [
    "DataError",
    "Dataset",
    "Interrupted",
    "LockedError",
    "MissingInputError",
    "ReidkitError",
    "Sample",
    "UnknownNameError",
    "UsageError",
    "__version__",
    "list_datasets",
    "load_dataset",
]
