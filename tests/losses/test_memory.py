"""The cluster memory (reidkit.losses.memory) against the paper's formulas written out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reidkit.losses.memory import ClusterMemory


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(9, 5)).astype(np.float32)
    labels = np.array([0, 1, 0, 2, -1, 1, 2, 2, 0])
    return features, labels


def test_reset_makes_normalised_means_of_normalised_features(data):
    features, labels = data
    memory = ClusterMemory(5)
    memory.reset(torch.from_numpy(features), torch.from_numpy(labels))
    expected = unit(np.stack([unit(features[labels == c]).mean(0) for c in range(3)]))
    np.testing.assert_allclose(memory.centroids.numpy(), expected, rtol=1e-6, atol=1e-6)
    assert "centroids" in memory.state_dict()  # saved with the run, for an exact resume


def test_loss_is_the_cross_entropy_of_cosines_over_the_temperature(data):
    features, labels = data
    memory = ClusterMemory(5, temperature=0.05)
    memory.reset(torch.from_numpy(features), torch.from_numpy(labels))
    batch, targets = features[:4] * 3.0, np.array([2, 0, 1, 0])
    logits = unit(batch) @ memory.centroids.numpy().T / 0.05
    log_softmax = (
        logits
        - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True))
        - logits.max(1, keepdims=True)
    )
    expected = -log_softmax[np.arange(4), targets].mean()
    x = torch.from_numpy(batch).requires_grad_()
    loss = torch.nn.functional.cross_entropy(memory(x), torch.from_numpy(targets).long())
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert x.grad is not None and not memory.centroids.requires_grad


def test_update_moves_each_samples_centroid_in_turn(data):
    features, labels = data
    memory = ClusterMemory(5, momentum=0.1)
    memory.reset(torch.from_numpy(features), torch.from_numpy(labels))
    expected = memory.centroids.numpy().copy()
    batch, targets = features[:4], np.array([1, 1, 0, 1])  # centroid 1 moves three times
    for f, y in zip(unit(batch), targets, strict=True):
        expected[y] = unit(0.1 * expected[y] + 0.9 * f)
    memory.update(torch.from_numpy(batch), torch.from_numpy(targets))
    np.testing.assert_allclose(memory.centroids.numpy(), expected, rtol=1e-6, atol=1e-6)


def test_logits_stay_float32_under_bfloat16_autocast(data):
    """Cosines near 1 over a temperature of 0.05: bf16 would resolve them to about 0.08."""
    features, labels = data
    memory = ClusterMemory(5)
    memory.reset(torch.from_numpy(features), torch.from_numpy(labels))
    batch = torch.from_numpy(features[:4])
    expected = memory(batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = memory(batch.bfloat16())
    assert under.dtype == torch.float32
    torch.testing.assert_close(under, memory(batch.bfloat16().float()))
    assert expected.dtype == torch.float32
