"""OSNet: sizes against the paper, output shapes, gradient flow and seeded initialisation."""

from __future__ import annotations

import pytest
import torch

from reidkit.models.osnet import OSNet
from reidkit.models.zoo import osnet_x0_5, osnet_x0_25, osnet_x0_75, osnet_x1_0

# Parameters without the classifier as reported in the paper (Zhou et al., ICCV 2019).
PAPER_PARAMS = [
    (osnet_x1_0, 2.2e6),
    (osnet_x0_75, 1.3e6),
    (osnet_x0_5, 0.6e6),
    (osnet_x0_25, 0.2e6),
]
FACTORIES = [factory for factory, _ in PAPER_PARAMS]
SMALL = (2, 3, 64, 32)  # survives the 32x downsampling with a 2x1 map left for conv5


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    ("factory", "expected"), PAPER_PARAMS, ids=[f.__name__ for f, _ in PAPER_PARAMS]
)
def test_parameter_count_matches_paper(factory, expected):
    model = factory(1000)
    classifier = count(model.classifier)
    assert classifier == 512 * 1000 + 1000
    backbone = count(model) - classifier
    assert abs(backbone - expected) <= 0.15 * expected, backbone


def test_widths_shrink_the_backbone_but_not_the_embedding():
    models = [factory(10) for factory in FACTORIES]
    sizes = [count(model) for model in models]
    assert sizes == sorted(sizes, reverse=True)
    assert all(model.feature_dim == 512 for model in models)


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.__name__)
def test_eval_forward_returns_embedding(factory):
    torch.manual_seed(0)
    model = factory(7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 256, 128))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 512)
    assert torch.isfinite(out).all()
    # The embedding ends in a ReLU, and a freshly initialised net must not be all dead.
    assert (out >= 0).all() and (out > 0).any()


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.__name__)
def test_train_forward_returns_logits_and_embedding(factory):
    torch.manual_seed(0)
    model = factory(7).train()
    logits, embedding = model(torch.randn(*SMALL))
    assert logits.shape == (2, 7)
    assert embedding.shape == (2, 512)


def test_gradient_reaches_first_conv():
    torch.manual_seed(0)
    model = osnet_x0_25(5).train()
    logits, _ = model(torch.randn(*SMALL))
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3])).backward()
    grad = model.conv1[0].weight.grad
    assert grad is not None
    assert grad.abs().sum() > 0


def test_same_seed_gives_same_weights_and_other_seed_does_not():
    def build(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        return osnet_x0_25(11).state_dict()

    first, second, other = build(3), build(3), build(4)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first["conv1.0.weight"], other["conv1.0.weight"])


def test_initialisation_scheme():
    model = osnet_x0_25(3)
    bn = model.conv1[1]
    assert torch.equal(bn.weight, torch.ones_like(bn.weight))
    assert torch.equal(bn.bias, torch.zeros_like(bn.bias))
    assert torch.equal(model.classifier.bias, torch.zeros(3))
    assert model.classifier.weight.std().item() == pytest.approx(0.01, rel=0.3)


def test_feature_dim_is_configurable():
    model = OSNet(4, width=0.25, feature_dim=128).eval()
    assert model.feature_dim == 128
    with torch.no_grad():
        assert model(torch.randn(*SMALL)).shape == (2, 128)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"width": 0}, "width"), ({"num_classes": 0}, "num_classes")],
    ids=["width", "num_classes"],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OSNet(**{"num_classes": 3, **kwargs})
