"""reidkit: a person re-identification toolkit.

The public API is what ``__all__`` lists; everything else (the subpackages' modules, names
with a leading underscore) is internal and may change between versions::

    import reidkit

    config = reidkit.load_config(None, ["data.dataset=market1501", "model.name=resnet50"])
    reidkit.train(config, "runs/r50")
    reidkit.extract_dataset(checkpoint="runs/r50/weights/best.pt", dataset="market1501",
                            root="data", out_dir="feats",
                            options=reidkit.ExtractOptions(flip=True))
    ranking = reidkit.Ranking(rerank=reidkit.Rerank())
    result = reidkit.evaluate_files("feats/market1501-query.h5",
                                    "feats/market1501-gallery.h5", ranking)

Only the error types are imported with the package; every other name is imported on first
use (PEP 562), so ``import reidkit`` stays light and torch, h5py and matplotlib load only
where they are needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from reidkit.errors import (
    DataError,
    Interrupted,
    LockedError,
    MissingInputError,
    ReidkitError,
    UnknownNameError,
    UsageError,
)

# public name -> the module that defines it
_LAZY = {
    "Config": "reidkit.config",
    "load_config": "reidkit.config",
    "Dataset": "reidkit.data",
    "Sample": "reidkit.data",
    "list_datasets": "reidkit.data",
    "load_dataset": "reidkit.data",
    "create_model": "reidkit.models",
    "list_models": "reidkit.models",
    "train": "reidkit.engine.run",
    "resume": "reidkit.engine.run",
    "extract_dataset": "reidkit.features.jobs",
    "ExtractOptions": "reidkit.features.options",
    "FeatureSet": "reidkit.features.store",
    "read_features": "reidkit.features.store",
    "write_features": "reidkit.features.writer",
    "Ranking": "reidkit.metrics.ranking",
    "Rerank": "reidkit.metrics.ranking",
    "evaluate_files": "reidkit.metrics.evaluate",
    "evaluate_distances": "reidkit.metrics.rank",
    "visrank_files": "reidkit.vis.visrank",
}

__all__ = [  # the errors and _LAZY's names (a test checks they agree)
    "Config",
    "DataError",
    "Dataset",
    "ExtractOptions",
    "FeatureSet",
    "Interrupted",
    "LockedError",
    "MissingInputError",
    "Ranking",
    "ReidkitError",
    "Rerank",
    "Sample",
    "UnknownNameError",
    "UsageError",
    "__version__",
    "create_model",
    "evaluate_distances",
    "evaluate_files",
    "extract_dataset",
    "list_datasets",
    "list_models",
    "load_config",
    "load_dataset",
    "read_features",
    "resume",
    "train",
    "visrank_files",
    "write_features",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # the next access is a plain attribute
        return value
    raise AttributeError(f"module 'reidkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from reidkit.config import Config, load_config
    from reidkit.data import Dataset, Sample, list_datasets, load_dataset
    from reidkit.engine.run import resume, train
    from reidkit.features.jobs import extract_dataset
    from reidkit.features.options import ExtractOptions
    from reidkit.features.store import FeatureSet, read_features
    from reidkit.features.writer import write_features
    from reidkit.metrics.evaluate import evaluate_files
    from reidkit.metrics.rank import evaluate_distances
    from reidkit.metrics.ranking import Ranking, Rerank
    from reidkit.models import create_model, list_models
    from reidkit.vis.visrank import visrank_files
