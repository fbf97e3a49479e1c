from __future__ import annotations

from collections import Counter

import pytest

from reidkit.data.samplers import PKSampler, RandomBatchSampler

LABELS = [i % 10 for i in range(95)] + [10, 10]  # identity 10 has only 2 images


def test_pk_batches_hold_p_identities_of_k_images():
    sampler = PKSampler(LABELS, batch_size=16, num_instances=4, seed=3)
    batches = list(sampler)
    assert batches and all(len(b) == 16 for b in batches)
    for batch in batches:
        counts = Counter(LABELS[i] for i in batch)
        assert len(counts) == 4 and set(counts.values()) == {4}


def test_batches_depend_on_seed_and_epoch_only():
    a, b = PKSampler(LABELS, 16, 4, seed=1), PKSampler(LABELS, 16, 4, seed=1)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b)
    a.set_epoch(1)
    assert list(a) == list(b)


@pytest.mark.parametrize(
    "make",
    [
        lambda r, w: PKSampler(LABELS, 16, 4, seed=0, rank=r, world=w),
        lambda r, w: RandomBatchSampler(97, 8, seed=0, rank=r, world=w),
    ],
)
def test_processes_share_an_epoch_evenly_and_resume_skips(make):
    whole = list(make(0, 1))
    parts = [list(make(r, 2)) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == len(whole) // 2  # equal steps, or DDP hangs
    n = len(parts[0])
    assert parts[0] == whole[: 2 * n][0::2] and parts[1] == whole[: 2 * n][1::2]
    resumed = make(0, 1)
    resumed.skip = 2
    assert list(resumed) == whole[2:] and len(resumed) == len(whole)


def test_pk_needs_enough_identities():
    with pytest.raises(ValueError, match="needs 20 identities"):
        PKSampler(LABELS, batch_size=80, num_instances=4)
    with pytest.raises(ValueError, match="multiple of K=4"):
        PKSampler(LABELS, batch_size=18, num_instances=4)
