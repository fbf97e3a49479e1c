"""AGW's weighted regularised triplet (loss.triplet_mining=weighted) against a reference
written from the facts of AGW's and fast-reid's code (mangye16/ReID-Survey, fastreid
modeling/losses/triplet_loss.py: ``softmax_weights`` and ``weighted_example_mining`` with
the anchor among its own positives, then the soft margin), not from reidkit's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reidkit.losses.total import ReIDLoss


def agw_triplet(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    diff = features[:, None, :] - features[None, :, :]
    dist = diff.pow(2).sum(-1).clamp_min(1e-12).sqrt()
    is_pos = (labels[:, None] == labels[None, :]).float()
    is_neg = 1.0 - is_pos

    def softmax_weights(d, mask):
        shifted = d - (d * mask).max(1, keepdim=True).values
        z = (shifted.exp() * mask).sum(1, keepdim=True) + 1e-6
        return shifted.exp() * mask / z

    ap, an = dist * is_pos, dist * is_neg
    d_ap = (ap * softmax_weights(ap, is_pos)).sum(1)
    d_an = (an * softmax_weights(-an, is_neg)).sum(1)
    return F.soft_margin_loss(d_an - d_ap, torch.ones_like(d_ap))


def pk_batch(seed: int, p: int = 4, k: int = 4, dim: int = 16):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(p).repeat_interleave(k)
    centres = torch.randn(p, dim, generator=g)
    return centres[labels] + 0.8 * torch.randn(p * k, dim, generator=g), labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_mining_is_agws_loss_and_gradient(seed):
    features, labels = pk_batch(seed)
    ours_in, ref_in = features.clone().requires_grad_(), features.clone().requires_grad_()
    loss = ReIDLoss(softmax=0.0, triplet=1.0, soft_margin=True, mining="weighted")
    total, _ = loss(torch.zeros(16, 4), ours_in, labels)
    want = agw_triplet(ref_in, labels)
    total.backward()
    want.backward()
    assert abs(total.item() - want.item()) < 1e-5 * max(1.0, want.item())
    assert torch.allclose(ours_in.grad, ref_in.grad, atol=1e-6, rtol=1e-4)
    hard, _ = ReIDLoss(softmax=0.0, triplet=1.0, soft_margin=True)(
        torch.zeros(16, 4), features, labels
    )
    assert abs(hard.item() - want.item()) > 1e-3  # the mining changed the loss


def test_an_unknown_mining_is_a_usage_error(cli):
    code, _, err = cli("train", "--print-config", "loss.triplet_mining=soft")
    assert code == 2 and "loss.triplet_mining: unknown value 'soft'" in err
    assert "one of: hard, weighted" in err
