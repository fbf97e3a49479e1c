"""What the synthetic image and video datasets share: the identities and cameras a seed
makes (:mod:`~reidkit.data.synth.identity`, :mod:`~reidkit.data.synth.camera`), random
counts that add up, and the JPEG quality of every file."""

from __future__ import annotations

JPEG_QUALITY = 90


def split_counts(total: int, lows, highs, rng):
    """Integers between ``lows`` and ``highs`` (arrays) that add up to ``total``, random."""
    import numpy as np

    counts = np.array(lows, dtype=np.int64)
    highs = np.array(highs, dtype=np.int64)
    left = total - int(counts.sum())
    if left < 0 or left > int((highs - counts).sum()):
        raise ValueError(f"cannot split {total} between {lows.sum()} and {highs.sum()}")
    while left > 0:
        open_ = np.flatnonzero(highs > counts)
        add = np.minimum(
            rng.multinomial(left, np.full(len(open_), 1 / len(open_))), highs[open_] - counts[open_]
        )
        counts[open_] += add
        left -= int(add.sum())
    return counts


def make_world(preset, seed: int, network: str = "a"):
    """The identities (train then test) and cameras of a preset (image or video) in a
    camera network (``a``: synthreid's, ``b``: synthreid-b's), from the seed alone.

    A ``similar_fraction`` of identities copy another identity of the same split with one
    or two attributes changed, so that the gallery holds hard negatives.
    """
    import numpy as np

    from reidkit.data.synth.camera import random_camera
    from reidkit.data.synth.identity import WARDROBES, random_identity, similar_identity

    wardrobe = WARDROBES[network]
    identities = []
    for count in (preset.train_ids, preset.test_ids):
        first = len(identities)
        for i in range(count):
            rng = np.random.default_rng([seed, 2, first + i])
            if i > 0 and rng.random() < preset.similar_fraction:
                base = identities[first + int(rng.integers(i))]
                identities.append(similar_identity(base, rng, wardrobe))
            else:
                identities.append(random_identity(rng, wardrobe))
    cameras = [
        random_camera(k, np.random.default_rng([seed, 3, k]), network)
        for k in range(preset.cameras)
    ]
    return identities, cameras
