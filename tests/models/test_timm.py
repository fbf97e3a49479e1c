"""timm trunks go through the same commands as every model: train, resume, extract."""

from __future__ import annotations

import h5py
import pytest
import torch
from helpers import FAST_TRAIN

from reidkit.models import create_model
from reidkit.models.checkpoint import load_checkpoint

TIMM_MODELS = {  # name: feature dimension
    "timm/resnet50d": 2048,
    "timm/convnext_tiny": 768,
    "timm/vit_small_patch16_224": 384,
}
RESUMED = "timm/vit_small_patch16_224"  # the quickest of them to train here


def test_a_vit_is_built_for_the_reid_input_size():
    model = create_model("timm/vit_small_patch16_224", 5, image_size=(256, 128))
    assert model.trunk.patch_embed.img_size == (256, 128)
    assert model.trunk.pos_embed.shape == (1, 1 + 16 * 8, 384)  # class token + 16x8 patches
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 256, 128)).shape == (1, 384)


def test_an_unknown_timm_model_is_a_usage_error(cli):
    code, _out, err = cli("train", "--model", "timm/resnet5O", "--print-config")
    assert code == 2 and "error: unknown model 'timm/resnet5O': timm has no model 'resnet5O'" in err


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TIMM_MODELS))
def test_timm_models_train_resume_and_extract(cli, synth_tiny, tmp_path, name):
    run, feats = tmp_path / "run", tmp_path / "feats"
    code, _, err = cli(
        "train", "--dataset", "synthreid", "--root", synth_tiny, "--model", name, "--run", run,
        "--epochs", "1", *FAST_TRAIN, "--json",
    )  # fmt: skip
    assert code == 0, err
    checkpoint = load_checkpoint(run / "weights" / "last.pt")
    assert checkpoint["model"]["name"] == name and checkpoint["epoch"] == 1
    assert checkpoint["model"]["kwargs"] == {
        "bnneck": True,
        "classifier": "linear",
        "image_size": [64, 32],
    }
    if name == RESUMED:  # resuming does not depend on the trunk: one is enough
        code, _, err = cli("resume", run, "--max-epoch", "2", "--json")
        assert code == 0, err
        assert load_checkpoint(run / "weights" / "last.pt")["epoch"] == 2
    code, _out, err = cli(
        "extract", run / "weights" / "last.pt", "--dataset", "synthreid", "--root", synth_tiny,
        "--out", feats, "--subsets", "query", "--device", "cpu", "--json",
    )  # fmt: skip
    assert code == 0, err
    with h5py.File(feats / "synthreid-query.h5") as f:
        assert f["features"].shape[1] == TIMM_MODELS[name] and f.attrs["distance"] == "cosine"
        assert f["features"].shape[0] > 0 and list(f.attrs["image_size"]) == [64, 32]
