"""The re-ID head: BNNeck outputs in train and eval mode, the cosine classifier, last stride."""

from __future__ import annotations

import pytest
import torch

from reidkit.errors import UsageError
from reidkit.models import create_model


def _pooled(model, x):
    """The model's output and what its pooling layer gave (the feature before the BNNeck)."""
    seen = []
    hook = model.pool.register_forward_hook(lambda m, i, out: seen.append(out.flatten(1)))
    try:
        out = model(x)
    finally:
        hook.remove()
    return out, seen[0]


def test_bnneck_train_mode_gives_the_feature_before_it_and_logits_after_it():
    torch.manual_seed(0)
    model = create_model("resnet18", 5)
    with torch.no_grad():  # a BNNeck that is not the identity
        model.bnneck.weight.uniform_(0.5, 2.0)
        model.classifier.weight.normal_()
    x = torch.rand(4, 3, 64, 32)
    (logits, feature), pooled = _pooled(model.train(), x)
    assert torch.equal(feature, pooled)  # the triplet term sees the feature before BN
    normed = (pooled - pooled.mean(0)) / torch.sqrt(pooled.var(0, unbiased=False) + 1e-5)
    expected = model.classifier(normed * model.bnneck.weight)  # its shift is 0 and frozen
    assert torch.allclose(logits, expected, atol=1e-4)


def test_bnneck_eval_mode_gives_the_feature_after_it():
    torch.manual_seed(0)
    model = create_model("resnet18", 5).eval()
    with torch.no_grad():
        model.bnneck.weight.fill_(2.0)
        model.bnneck.running_mean.fill_(1.0)
        model.bnneck.running_var.fill_(4.0)
        embedding, pooled = _pooled(model, torch.rand(2, 3, 64, 32))
    expected = (pooled - 1.0) / torch.sqrt(torch.tensor(4.0 + 1e-5)) * 2.0
    assert torch.allclose(embedding, expected, atol=1e-5)


def test_without_bnneck_the_embedding_is_the_pooled_feature():
    torch.manual_seed(0)
    model = create_model("resnet18", 5, bnneck=False).eval()
    x = torch.rand(2, 3, 64, 32)
    with torch.no_grad():
        embedding = model(x)
        model.train()
        _, feature = model(x)
    assert model.bnneck is None and model.classifier.bias is not None
    assert embedding.shape == feature.shape == (2, 512)


def test_bnneck_shift_is_frozen_and_classifier_has_no_bias():
    model = create_model("resnet18", 5)
    assert not model.bnneck.bias.requires_grad and model.bnneck.weight.requires_grad
    assert model.classifier.bias is None


@pytest.mark.parametrize(("last_stride", "size"), [(1, (4, 2)), (2, (2, 1))])
def test_last_stride_sets_the_final_map(last_stride, size):
    model = create_model("resnet18", 5, last_stride=last_stride).eval()
    x = torch.rand(1, 3, 64, 32)
    with torch.no_grad():
        out = model.layer4(model.layer3(model.layer2(model.layer1(
            model.maxpool(model.relu(model.bn1(model.conv1(x))))))))  # fmt: skip
    assert tuple(out.shape[2:]) == size


def test_cosine_classifier_gives_cosines():
    torch.manual_seed(0)
    model = create_model("resnet18", 5, classifier="cosine").train()
    logits, feature = model(torch.rand(3, 3, 64, 32))
    assert logits.abs().max() <= 1.0 + 1e-6
    neck = torch.nn.functional.normalize(
        torch.nn.functional.batch_norm(
            feature, None, None, model.bnneck.weight, model.bnneck.bias, training=True
        ),
        dim=1,
    )
    weight = torch.nn.functional.normalize(model.classifier.weight, dim=1)
    assert torch.allclose(logits, neck @ weight.T, atol=1e-5)


def test_unknown_classifier_is_a_usage_error():
    with pytest.raises(UsageError, match=r"model\.classifier"):
        create_model("resnet18", 5, classifier="arcface")
