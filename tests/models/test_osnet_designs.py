"""OSNet-IBN and OSNet-AIN: torchreid's files load whole and give its features, against
tests/torchreid_reference.py (written from torchreid's osnet.py and osnet_ain.py, not from
reidkit's code); the ImageNet start and one epoch of training use every instance norm."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import FAST_TRAIN, counted, query_features
from published import save_legacy
from torchreid_reference import TORCHREID_IN_MODELS, torchreid_osnet_forward, torchreid_osnet_state

from reidkit.models import create_model, load_weights
from reidkit.models.checkpoint import load_checkpoint
from reidkit.models.osnet import OSNet

# instance norms in each model: the stem's, and the blocks' (IBN: both conv2 blocks after the
# sum; AIN: conv2 both, conv3 the second, conv4 the first, on the residual branch)
INSTANCE_NORMS = {"ibn": 3, "ain": 5}


@pytest.mark.parametrize("name", list(TORCHREID_IN_MODELS))
def test_torchreid_file_loads_every_tensor_and_gives_its_features(tmp_path, name):
    design, channels = TORCHREID_IN_MODELS[name]
    state = torchreid_osnet_state(channels, design=design)
    torch.save(state, tmp_path / "w.pth")
    model = create_model(name, num_classes=751).eval()
    report = load_weights(model, tmp_path / "w.pth")
    assert report["missing"] == [] and report["skipped"] == []
    # the fc bias is folded into the BatchNorm after it; batch counters are not counted
    assert len(report["used"]) == len(counted(model.state_dict())) == len(counted(state)) - 1
    norms = [m for m in model.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert len(norms) == INSTANCE_NORMS[design] and all(m.affine for m in norms)
    x = torch.randn(3, 3, 128, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, want = model(x), torchreid_osnet_forward(state, x, design=design)
    assert want.abs().max() > 1  # features worth comparing
    assert ((got - want).abs().max() / want.abs().max()).item() < 1e-6


def test_ain_starts_from_torchreids_imagenet_file_and_trains_its_instance_norms(
    cli, synth_tiny, tmp_path, monkeypatch
):
    """osnet_ain_x0_25 from a stand-in of torchreid's ImageNet file (its names, 1000
    classes, torch's legacy serialization: assumed, the file cannot be downloaded here) uses
    every tensor but the classifier; one epoch moves every instance norm; it extracts."""
    state = torchreid_osnet_state(TORCHREID_IN_MODELS["osnet_ain_x0_25"][1], 1000, design="ain")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = tmp_path / "torch" / "checkpoints" / "osnet_ain_x0_25_imagenet.pth"
    cached.parent.mkdir(parents=True)
    save_legacy(state, cached)
    run = tmp_path / "run"
    code, _, err = cli(
        "train", "--dataset", "synthreid", "--root", synth_tiny, "--model", "osnet_ain_x0_25",
        "--run", run, "--epochs", "1", *FAST_TRAIN, "model.pretrained=imagenet", "--json",
    )  # fmt: skip
    assert code == 0, err
    env = json.loads((run / "env.json").read_text())["pretrained"]
    used = len(counted(state)) - 3  # all but the classifier's two and the folded fc bias
    assert (env["source"], env["used"], env["skipped"], env["missing"]) == ("torchreid", used, 2, 2)
    weights = load_checkpoint(run / "weights" / "last.pt")["state_dict"]
    scales = {k: weights[k] for k in weights if k.endswith(".IN.weight") or k == "conv1.1.weight"}
    assert len(scales) == 5
    assert all(
        not torch.equal(v, state[k.replace("conv1.1", "conv1.bn")]) for k, v in scales.items()
    )
    features = query_features(cli, run / "weights" / "last.pt", synth_tiny, tmp_path / "feats")
    assert features.shape == (48, 512) and np.isfinite(features).all()


def test_an_unknown_design_is_refused():
    with pytest.raises(ValueError, match="design must be one of"):
        OSNet(3, design="bin")
