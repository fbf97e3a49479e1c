"""The curated public API: ``from reidkit import ...`` for every documented entry point,
imported lazily so that ``import reidkit`` stays light."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
from helpers import REPO

import reidkit

ENTRY_POINTS = ("train", "resume", "extract_dataset", "evaluate_files", "visrank_files")


def test_import_reidkit_loads_no_heavy_module():
    script = (
        "import sys, reidkit\n"
        "heavy = ('torch', 'h5py', 'matplotlib', 'numpy', 'scipy', 'PIL', 'reidkit.data')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert done.stdout.strip() == "[]", done.stderr


@pytest.mark.parametrize("name", sorted(set(reidkit.__all__) - {"__version__"}))
def test_every_public_name_is_the_library_object(name):
    value = getattr(reidkit, name)
    module = importlib.import_module(getattr(value, "__module__", "reidkit.errors"))
    assert getattr(module, name) is value
    assert name in dir(reidkit)


def test_all_lists_the_errors_and_every_lazy_name():
    errors = [n for n in reidkit.__all__ if n.endswith("Error") or n == "Interrupted"]
    assert set(reidkit.__all__) == {*errors, "__version__", *reidkit._LAZY}
    assert len(reidkit.__all__) == len(set(reidkit.__all__))


def test_the_entry_points_are_there():
    from reidkit import evaluate_files, extract_dataset, resume, train, visrank_files

    assert [
        f.__name__ for f in (train, resume, extract_dataset, evaluate_files, visrank_files)
    ] == [*ENTRY_POINTS]


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="module 'reidkit' has no attribute 'evaluate'"):
        reidkit.evaluate  # noqa: B018


def test_the_documented_example_runs(tmp_path):
    """The package docstring's evaluation, on files written with the public API."""
    import numpy as np

    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(1, 11), 4)
    feats = rng.normal(size=(10, 8))[pids - 1] + 0.3 * rng.normal(size=(40, 8))
    cams = np.tile(np.arange(4), 10)
    reidkit.write_features(tmp_path / "q.h5", feats[::4], pids[::4], cams[::4])
    reidkit.write_features(tmp_path / "g.h5", feats, pids, (cams + 1) % 4)
    ranking = reidkit.Ranking(rerank=reidkit.Rerank(k1=4, k2=2), device="cpu")
    result = reidkit.evaluate_files(tmp_path / "q.h5", tmp_path / "g.h5", ranking)
    assert result["rerank"]["k1"] == 4 and result["num_query"] == 10
    assert result["mAP"] > 0.5  # clusters this tight are found
    config = reidkit.load_config(None, ["data.dataset=market1501", "model.name=resnet50"])
    assert (config.data.dataset, config.model.name) == ("market1501", "resnet50")
