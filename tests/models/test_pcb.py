"""PCB as torchreid builds it (torchreid/models/pcb.py): its names and shapes, its test
feature and its training outputs, against tests/resnet_reference.py and the facts below
(written from torchreid's code, not from reidkit's).

torchreid's PCB: a ResNet-50 whose layer4 has stride 1; ``parts_avgpool`` = adaptive
average pooling to (parts, 1); eval: the pooled map L2-normalised over the channels of each
stripe, flattened as ``view(n, -1)`` of (n, 2048, parts, 1) (channel-major); train: dropout
0.5, ``conv5`` = DimReduceLayer (``layers``: 1x1 conv 2048 -> 256 without bias, BatchNorm,
ReLU), ``classifier`` = one Linear(256, classes) per stripe; its loss averages the stripes'
cross-entropies (DeepSupervision)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import FAST_TRAIN, counted, query_features
from resnet_reference import resnet_map, resnet_state

from reidkit.errors import UsageError
from reidkit.losses.total import ReIDLoss
from reidkit.models import create_model, load_weights
from reidkit.models.checkpoint import load_checkpoint


def pcb_state(parts: int, classes: int, seed: int = 0) -> dict:
    """A torchreid PCB state dict as its Engine saves one (torch >= 1.0: with BatchNorm's
    ``num_batches_tracked`` counters): the ResNet-50 trunk (no fc), conv5 and the
    classifiers."""
    state = {k: v for k, v in resnet_state(50, None, seed=seed).items() if not k.startswith("fc.")}
    g = torch.Generator().manual_seed(seed + 1)
    state["conv5.layers.0.weight"] = torch.randn(256, 2048, 1, 1, generator=g) * 0.03
    state["conv5.layers.1.weight"] = 1 + 0.1 * torch.randn(256, generator=g)
    state["conv5.layers.1.bias"] = 0.1 * torch.randn(256, generator=g)
    state["conv5.layers.1.running_mean"] = 0.1 * torch.randn(256, generator=g)
    state["conv5.layers.1.running_var"] = 0.5 + torch.rand(256, generator=g)
    for i in range(parts):
        state[f"classifier.{i}.weight"] = 0.01 * torch.randn(classes, 256, generator=g)
        state[f"classifier.{i}.bias"] = 0.01 * torch.randn(classes, generator=g)
    for key in [k for k in state if k.endswith("running_mean")]:
        state[key.replace("running_mean", "num_batches_tracked")] = torch.tensor(1200)
    return state


def calibrated(state: dict, parts: int) -> dict:
    """BatchNorm statistics of a batch (random ones make a ResNet-50's map reach 1e4)."""
    images = torch.randn(8, 3, 96, 32, generator=torch.Generator().manual_seed(5))
    resnet_map(state, images, 50, None, last_stride=1, calibrate=True)
    return state


def stripes(state: dict, x: torch.Tensor, parts: int) -> torch.Tensor:
    return F.adaptive_avg_pool2d(resnet_map(state, x, 50, None, last_stride=1), (parts, 1))


def reduce(state: dict, v: torch.Tensor) -> torch.Tensor:
    p = "conv5.layers"
    y = F.conv2d(v, state[f"{p}.0.weight"])
    y = F.batch_norm(
        y, state[f"{p}.1.running_mean"], state[f"{p}.1.running_var"],
        state[f"{p}.1.weight"], state[f"{p}.1.bias"], False, 0.0, 1e-5,
    )  # fmt: skip
    return F.relu(y)


@pytest.mark.parametrize("parts", [6, 4])
def test_pcb_has_torchreids_names_and_shapes(parts):
    ours = create_model(f"pcb_p{parts}", 751).state_dict()
    theirs = pcb_state(parts, 751)
    assert counted(ours) == counted(theirs) and set(ours) == set(theirs)
    assert all(ours[k].shape == v.shape for k, v in theirs.items())


@pytest.mark.parametrize(("parts", "part_feature"), [(6, "full"), (4, "full"), (6, "reduced")])
def test_a_torchreid_file_gives_torchreids_test_feature(tmp_path, parts, part_feature):
    state = calibrated(pcb_state(parts, 751, seed=parts), parts)
    torch.save(state, tmp_path / "pcb.pth")
    model = create_model(f"pcb_p{parts}", 751, part_feature=part_feature).eval()
    report = load_weights(model, tmp_path / "pcb.pth")
    assert (report["skipped"], report["missing"]) == ([], [])
    x = torch.randn(2, 3, 96, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = model(x)
        v = stripes(state, x, parts)
        if part_feature == "reduced":
            v = reduce(state, v)
        want = F.normalize(v, p=2, dim=1).view(2, -1)
    assert got.shape == (2, (2048 if part_feature == "full" else 256) * parts)
    assert model.feature_dim == got.shape[1]
    assert torch.allclose(got, want, atol=1e-5)
    per_stripe = want.view(2, -1, parts).norm(dim=1)
    assert torch.allclose(per_stripe, torch.ones(2, parts))  # each stripe normalised


def test_training_gives_one_classifier_per_stripe_and_averages_their_losses(tmp_path):
    state = calibrated(pcb_state(6, 20, seed=2), 6)
    torch.save(state, tmp_path / "pcb.pth")
    model = create_model("pcb_p6", 20)
    load_weights(model, tmp_path / "pcb.pth")
    model.train()
    model.dropout.p = 0.0  # torchreid's dropout draws at random: compare without it
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()  # running statistics, as the reference uses them
    x = torch.randn(4, 3, 96, 32, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        logits, feature = model(x)
        v = stripes(state, x, 6)
        reduced = reduce(state, v)
        c = "classifier"
        want = [
            F.linear(reduced[:, :, i, 0], state[f"{c}.{i}.weight"], state[f"{c}.{i}.bias"])
            for i in range(6)
        ]
    assert logits.shape == (4, 6, 20)
    assert all(torch.allclose(logits[:, i], want[i], atol=1e-5) for i in range(6))
    assert torch.allclose(feature, F.normalize(v, dim=1).view(4, -1), atol=1e-5)
    loss = ReIDLoss(softmax=1.0, label_smoothing=0.1, triplet=0.0)
    _, parts = loss(logits, feature, labels)
    separate = [F.cross_entropy(w, labels, label_smoothing=0.1) for w in want]
    assert torch.allclose(parts["ce"], torch.stack(separate).mean(), atol=1e-6)


def test_an_unknown_part_feature_is_refused():
    with pytest.raises(UsageError, match=r"model\.part_feature: choose from full, reduced"):
        create_model("pcb_p6", 10, part_feature="stripes")


def test_pcb_trains_and_extracts(cli, synth_tiny, tmp_path):
    """One epoch from scratch at 96x32 (6 stripes of 12 rows' worth), the trunk frozen (its
    backward pass would double the time; the stripes' layers learn): the checkpoint
    extracts 12,288-d features."""
    run, feats = tmp_path / "run", tmp_path / "feats"
    code, _, err = cli(
        "train", "--dataset", "synthreid", "--root", synth_tiny, "--model", "pcb_p6",
        "--pretrained", "none", "--run", run, "--epochs", "1", *FAST_TRAIN,
        "data.height=96", "data.width=32", "loss.triplet=0", "train.freeze_base_epochs=1",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    checkpoint = load_checkpoint(run / "weights" / "last.pt")
    assert checkpoint["model"]["name"] == "pcb_p6" and checkpoint["epoch"] == 1
    features = query_features(cli, run / "weights" / "last.pt", synth_tiny, feats)
    assert features.shape == (48, 12288) and np.isfinite(features).all()
    norms = np.linalg.norm(features.reshape(48, 2048, 6), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-4)
