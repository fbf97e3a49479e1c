"""The losses against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from reidkit.losses import CenterLoss, ReIDLoss, batch_hard_triplet
from reidkit.losses.triplet import euclidean, hardest_pairs

# four points on a line, two identities: A at 0 and 3, B at 1 and 5
LINE = torch.tensor([[0.0], [3.0], [1.0], [5.0]])
LINE_LABELS = torch.tensor([0, 0, 1, 1])
# anchor 0: farthest positive 3, nearest negative 1    -> gap  2
# anchor 1: farthest positive 3, nearest negative 2    -> gap  1
# anchor 2: farthest positive 4, nearest negative 1    -> gap  3
# anchor 3: farthest positive 4, nearest negative 2    -> gap  2
GAPS = [2.0, 1.0, 3.0, 2.0]


def test_hardest_pairs_by_hand():
    d_ap, d_an, valid = hardest_pairs(LINE, LINE_LABELS)
    assert valid.tolist() == [True] * 4
    assert d_ap.tolist() == pytest.approx([3, 3, 4, 4])
    assert d_an.tolist() == pytest.approx([1, 2, 1, 2])


def test_hard_margin_by_hand():
    assert float(batch_hard_triplet(LINE, LINE_LABELS, margin=0.3)) == pytest.approx(
        sum(g + 0.3 for g in GAPS) / 4
    )
    # well separated: A at 0 and 0.1, B at 10 and 10.2: every hinge is off
    apart = torch.tensor([[0.0], [0.1], [10.0], [10.2]])
    assert float(batch_hard_triplet(apart, LINE_LABELS, margin=0.3)) == 0.0


def test_soft_margin_by_hand():
    expected = sum(math.log1p(math.exp(g)) for g in GAPS) / 4
    got = batch_hard_triplet(LINE, LINE_LABELS, soft_margin=True)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_anchors_without_a_positive_are_left_out():
    # identity 2 has one image: it is no anchor, but it is a negative of the others
    points = torch.cat([LINE, torch.tensor([[2.0]])])
    labels = torch.cat([LINE_LABELS, torch.tensor([2])])
    d_ap, d_an, valid = hardest_pairs(points, labels)
    assert valid.tolist() == [True] * 4 + [False]
    assert d_ap[valid].tolist() == pytest.approx([3, 3, 4, 4])
    assert d_an[valid].tolist() == pytest.approx([1, 1, 1, 2])  # 2.0 is nearer to 3.0 and 1.0
    gaps = [3 - 1, 3 - 1, 4 - 1, 4 - 2]  # d_ap - d_an of the four anchors
    got = batch_hard_triplet(points, labels, margin=0.3)
    assert float(got) == pytest.approx(sum(g + 0.3 for g in gaps) / 4)
    assert float(batch_hard_triplet(torch.ones(3, 2), torch.tensor([0, 1, 2]))) == 0.0
    # no anchor has a negative: 0, and a gradient of zeros rather than NaN
    x = torch.randn(4, 2, requires_grad=True)
    none = batch_hard_triplet(x, torch.zeros(4, dtype=torch.long), soft_margin=True)
    none.backward()
    assert float(none.detach()) == 0.0 and torch.equal(x.grad, torch.zeros(4, 2))


def test_triplet_gradient_moves_the_hardest_pair():
    x = LINE.clone().requires_grad_()
    batch_hard_triplet(x, LINE_LABELS, margin=0.3).backward()
    # d/dx of mean(d_ap - d_an + m), each |xi - xj| giving +-1/4 to both of its points;
    # e.g. the point at 1 gets -1 from its own hardest positive (5) and -1 from its own
    # nearest negative (0), -1 and +1 as the nearest negative of the points at 0 and 3,
    # and -1 as the hardest positive of the point at 5: -3/4. They sum to 0: a shift of
    # every point changes no distance
    assert x.grad[:, 0].tolist() == pytest.approx([0.0, 0.5, -0.75, 0.25])


def test_distances_are_exact_near_zero():
    torch.manual_seed(0)
    x = torch.rand(64, 2048) * 1.2
    x[1] = x[0] + 1e-3 * torch.randn(2048)
    exact = (x[0].double() - x[1].double()).norm().item()
    assert euclidean(x)[0, 1].item() == pytest.approx(exact, rel=1e-5)
    # the matrix-product shortcut torch.cdist takes by default is off by more than 0.5%
    assert abs(torch.cdist(x, x)[0, 1].item() - exact) / exact > 5e-3


def test_center_loss_by_hand():
    loss = CenterLoss(2, 2)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    features = torch.tensor([[3.0, 4.0], [1.0, 2.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    # squared distances 25, 1, 1 -> mean 9
    assert loss(features, labels).item() == pytest.approx(9.0)


def test_total_loss_adds_the_weighted_terms_and_reports_them():
    logits = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 2.0]])
    ce = torch.nn.functional.cross_entropy(logits, LINE_LABELS, label_smoothing=0.1).item()
    loss = ReIDLoss(softmax=0.5, triplet=2.0, margin=0.3, center=0.1, num_classes=2, feature_dim=1)
    with torch.no_grad():
        loss.center.centers.copy_(torch.tensor([[1.0], [3.0]]))
    total, parts = loss(logits, LINE, LINE_LABELS)
    triplet = sum(g + 0.3 for g in GAPS) / 4
    center = (1 + 4 + 4 + 4) / 4  # (0-1)^2, (3-1)^2, (1-3)^2, (5-3)^2
    assert total.item() == pytest.approx(0.5 * ce + 2.0 * triplet + 0.1 * center, rel=1e-6)
    assert parts["ce"] == pytest.approx(ce)
    assert parts["triplet"] == pytest.approx(triplet)
    assert parts["center"] == pytest.approx(center)
    assert parts["d_ap"] == pytest.approx(3.5) and parts["d_an"] == pytest.approx(1.5)
    assert parts["active"] == 1.0
    assert parts["feat_norm"] == pytest.approx((0 + 3 + 1 + 5) / 4)


COSINES = torch.tensor([[0.8, 0.2]])  # one feature, two identities, the first its own


def test_cosface_by_hand():
    # target 30 * (0.8 - 0.35) = 13.5, other 30 * 0.2 = 6: CE = log(1 + e^-7.5)
    loss = ReIDLoss(label_smoothing=0.0, triplet=0.0, id_loss="cosface")
    total, _ = loss(COSINES, torch.zeros(1, 2), torch.tensor([0]))
    assert total.item() == pytest.approx(math.log1p(math.exp(-7.5)), abs=2e-6)  # float32


def test_circle_by_hand():
    # m = 0.25, s = 64: a_p = 1.25 - 0.8 = 0.45, target 64 * 0.45 * (0.8 - 0.75) = 1.44;
    # a_n = 0.2 + 0.25 = 0.45, other 64 * 0.45 * (0.2 - 0.25) = -1.44: CE = log(1 + e^-2.88)
    cos = COSINES.clone().requires_grad_()
    loss = ReIDLoss(label_smoothing=0.0, triplet=0.0, id_loss="circle")
    total, _ = loss(cos, torch.zeros(1, 2), torch.tensor([0]))
    assert total.item() == pytest.approx(math.log1p(math.exp(-2.88)), rel=1e-5)
    # the weights a_p, a_n are constants: d(target logit)/d(cos) = s * a_p = 28.8, and
    # dCE/d(target logit) = p - 1 = -1 / (1 + e^2.88)
    total.backward()
    assert cos.grad[0, 0].item() == pytest.approx(-28.8 / (1 + math.exp(2.88)), rel=1e-5)


def test_margin_losses_take_their_scale_and_margin():
    loss = ReIDLoss(label_smoothing=0.0, triplet=0.0, id_loss="cosface", id_scale=10, id_margin=0)
    total, _ = loss(COSINES, torch.zeros(1, 2), torch.tensor([0]))
    assert total.item() == pytest.approx(math.log1p(math.exp(-6.0)), abs=2e-6)
