from __future__ import annotations

import pytest
import torch

from reidkit.errors import DataError, MissingInputError
from reidkit.models import create_model
from reidkit.models.checkpoint import (
    FORMAT,
    data_config,
    load_checkpoint,
    model_from_checkpoint,
    model_spec,
    save_checkpoint,
)


def test_round_trip_rebuilds_the_same_model(tmp_path):
    torch.manual_seed(0)
    model = create_model("osnet_x0_25", num_classes=9).eval()
    spec = model_spec("osnet_x0_25", model, 9)
    config = {"data": {"height": 128, "width": 64, "mean": [0.5] * 3, "std": [0.2] * 3}}
    config["data"]["interpolation"] = "bicubic"
    path = save_checkpoint(tmp_path / "w" / "best.pt", model, spec, config=config, epoch=3)
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.pt"]
    raw = torch.load(path, weights_only=True)  # loads on current torch without pickle code
    assert raw["format"] == FORMAT and raw["epoch"] == 3 and raw["model"]["feature_dim"] == 512
    rebuilt = model_from_checkpoint(load_checkpoint(path))
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))
    assert data_config(raw) == config["data"]
    assert data_config(None)["height"] == 256
    assert data_config({"config": {"data": {"height": 9}}})["interpolation"] == "bilinear"


def test_foreign_and_missing_checkpoints(tmp_path):
    torch.save(create_model("resnet18", num_classes=2).state_dict(), tmp_path / "plain.pt")
    with pytest.raises(DataError, match="not a reidkit checkpoint") as err:
        load_checkpoint(tmp_path / "plain.pt")
    assert "--model NAME --weights FILE" in err.value.hint
    with pytest.raises(MissingInputError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_text("garbage")
    with pytest.raises(DataError, match="not a loadable checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")


class NotATensor:
    """A pickled object of a class: what weights_only refuses to load."""


def test_unloadable_files_say_what_they_are_and_never_advise_unpickling(tmp_path, cli):
    """torch's own message advises rerunning torch.load with weights_only=False, i.e.
    running whatever code the file holds: that advice must never reach the user."""
    import h5py

    with h5py.File(tmp_path / "feats.h5", "w") as f:
        f["features"] = [[0.0]]
    torch.save({"state_dict": {}, "thing": NotATensor()}, tmp_path / "pickled.pt")
    (tmp_path / "short.pt").write_bytes(b"PK\x03\x04 truncated")
    expected = {
        "feats.h5": "it is an HDF5 file (a feature file?), not PyTorch weights",
        "pickled.pt": "it holds Python objects other than tensors and plain values, which "
        "reidkit never unpickles (save the weights as a state dict of tensors)",
        "short.pt": "a damaged PyTorch file",
    }
    for name, said in expected.items():
        with pytest.raises(DataError) as err:
            load_checkpoint(tmp_path / name)
        assert err.value.message.startswith(f"{tmp_path / name}: not a loadable checkpoint: {said}")
        assert "weights_only" not in err.value.message
    code, out, err = cli(
        "extract", tmp_path / "feats.h5", "--dataset", "synthreid", "--out", tmp_path / "f"
    )
    assert (code, out) == (1, "") and "weights_only" not in err
    assert err.startswith(
        f"error: {tmp_path / 'feats.h5'}: not a loadable checkpoint: it is an HDF5"
    )
