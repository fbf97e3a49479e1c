"""The top of a ranked list, ties and short galleries; query selection."""

from __future__ import annotations

import numpy as np

from reidkit.vis.ranking import JUNK, SAME_CAMERA, VALID, ignored_reasons, top_of_block
from reidkit.vis.visrank import select_queries


def test_ties_keep_gallery_order_and_stop_at_the_kth_ranked_item():
    dist = np.array([[0.5, 0.2, 0.2, 0.9, 0.2, 0.7]], dtype=np.float32)
    reason = np.array([[VALID, VALID, JUNK, VALID, VALID, SAME_CAMERA]], dtype=np.uint8)
    rows, cols, rank = top_of_block(dist, reason, k=2)
    # 0.2 ties in gallery order: 1 (rank 1), 2 (junk), 4 (rank 2); nothing after rank 2
    assert cols.tolist() == [1, 2, 4] and rank.tolist() == [1, 0, 2] and rows.tolist() == [0] * 3
    # an ignored item tied with the k-th ranked one but later in the gallery is cut
    reason = np.array([[VALID, VALID, VALID, VALID, JUNK, VALID]], dtype=np.uint8)
    _, cols, rank = top_of_block(dist, reason, k=2)
    assert cols.tolist() == [1, 2] and rank.tolist() == [1, 2]


def test_fewer_ranked_items_than_k_shows_the_whole_gallery():
    dist = np.array([[0.3, 0.1, 0.2], [0.1, 0.2, 0.3]], dtype=np.float32)
    reason = np.array([[VALID, JUNK, VALID], [JUNK, JUNK, JUNK]], dtype=np.uint8)
    rows, cols, rank = top_of_block(dist, reason, k=5)
    assert rows.tolist() == [0, 0, 0, 1, 1, 1]
    assert cols.tolist() == [1, 2, 0, 0, 1, 2]
    assert rank.tolist() == [0, 1, 2, 0, 0, 0]


def test_ignored_reasons_follow_the_protocol():
    g_pids, g_cams = np.array([1, 1, -1, 2]), np.array([0, 1, 0, 0])
    market = ignored_reasons(np.array([1]), np.array([0]), g_pids, g_cams, "market")
    assert market.tolist() == [[SAME_CAMERA, VALID, JUNK, VALID]]
    none = ignored_reasons(np.array([1]), np.array([0]), g_pids, g_cams, "none")
    assert none.tolist() == [[VALID, VALID, JUNK, VALID]]


def test_select_queries():
    ap = np.array([0.5, np.nan, 0.1, 0.5, 0.9])
    everyone = np.arange(5)
    assert select_queries(ap, everyone, "worst", 0, None).tolist() == [2, 0, 3, 4, 1]
    assert select_queries(ap, everyone, "best", 0, 2).tolist() == [4, 0]
    assert select_queries(ap, np.array([3, 1, 2]), "input", 0, 0).tolist() == [3, 1, 2]
    shuffled = select_queries(ap, everyone, "random", 7, None)
    assert sorted(shuffled.tolist()) == [0, 1, 2, 3, 4]
    assert select_queries(ap, everyone, "random", 7, 3).tolist() == shuffled[:3].tolist()
