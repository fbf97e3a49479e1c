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


# identity i % 10 of sample i; identity 0's images on cameras 0, 0, 0, ..., one on camera 1;
# identity 10 has two images on one camera
CAMERAS = [(i // 10) % 3 if i % 10 else int(i == 90) for i in range(95)] + [0, 0]


def test_pk_cameras_draws_each_group_across_cameras():
    sampler = PKSampler(LABELS, 16, 4, cameras=CAMERAS, seed=3)
    plain = PKSampler(LABELS, 16, 4, seed=3)
    assert len(sampler) == len(plain)  # an identity gives as many groups as without cameras
    anchors = []
    for batch in sampler:
        assert len(batch) == 16
        for g in range(0, 16, 4):
            anchor, *rest = batch[g : g + 4]
            assert {LABELS[i] for i in rest} == {LABELS[anchor]}
            anchors.append(anchor)
            others = {CAMERAS[i] for i in range(97) if LABELS[i] == LABELS[anchor]} - {
                CAMERAS[anchor]
            }
            if others:  # all K-1 from the other cameras
                assert all(CAMERAS[i] != CAMERAS[anchor] for i in rest), (anchor, rest)
            else:  # identity 10: its other image, with replacement
                assert all(i != anchor for i in rest)
    # identity 0's one image on camera 1 joins every group anchored on camera 0
    zero = [b[g : g + 4] for b in sampler for g in range(0, 16, 4) if LABELS[b[g]] == 0]
    assert zero and all(g[1:] == [90, 90, 90] for g in zero if g[0] != 90)
    assert len(set(anchors)) == len(anchors)  # the anchors are distinct images


def test_iters_fix_the_epoch_across_passes():
    one_pass = len(PKSampler(LABELS, 16, 4, seed=0))
    for world in (1, 2):
        epochs = [
            PKSampler(LABELS, 16, 4, seed=0, iters=7, world=world, rank=r) for r in range(world)
        ]
        assert [len(e) for e in epochs] == [7] * world and one_pass < 7
        whole = PKSampler(LABELS, 16, 4, seed=0, iters=7 * world)
        assert [list(e) for e in epochs] == [list(whole)[r::world] for r in range(world)]
    a, b = PKSampler(LABELS, 16, 4, seed=0, iters=7), PKSampler(LABELS, 16, 4, seed=0, iters=7)
    batches = list(a)
    assert batches == list(b) and batches[0] != batches[one_pass]  # later passes drawn anew
    b.set_epoch(1)
    assert list(b) != batches
    b.set_epoch(0)
    b.skip = 5
    assert list(b) == batches[5:]
    assert len(RandomBatchSampler(97, 8, seed=0, iters=30)) == 30
    with pytest.raises(ValueError, match="fills no batch"):
        list(RandomBatchSampler(5, 8, iters=1))


def test_the_training_loader_draws_across_cameras_of_each_dataset():
    """data.sampler=pk_cameras reaches the loader's sampler, a camera being a (dataset,
    camera) pair: camera 0 of one source is not camera 0 of another."""
    from reidkit.config import Config
    from reidkit.data.sample import Sample
    from reidkit.engine.loaders import train_loader

    # 8 identities of 8 images, one of them from the second source, all on camera 0
    samples = [Sample(f"{i}.jpg", i % 8, 0, int(i < 8)) for i in range(64)]
    config = Config()
    config.data.sampler, config.data.batch_size, config.data.num_instances = "pk_cameras", 16, 4
    config.data.mean, config.data.std = [0.5] * 3, [0.5] * 3  # (set by the model in a run)
    config.train.iters_per_epoch = 5
    sampler, _ = train_loader(samples, config, rank=0, world=1, device="cpu")
    batches = list(sampler)
    assert len(batches) == 5
    for batch in batches:
        for g in range(0, 16, 4):
            anchor, *rest = batch[g : g + 4]
            if anchor < 8:  # the second source's image: the rest from the first
                assert all(i >= 8 for i in rest)
            else:  # the first source's: the rest are the second source's one image
                assert rest == [anchor % 8] * 3
