"""Adaptation learns: on a small domain shift it beats the direct transfer (the smaller
setting of the issue's synthreid -> synthreid-b figure, which benchmarks/bench_adapt.py
measures: a source that takes minutes to train is out of the suite's reach).

The setting is a toy made to train in seconds: 8x4-pixel "images" whose pixels are a
linear function of an identity's 8 hidden traits, plus an offset for each of 4 cameras
and noise. The source network (A) and the target network (B) differ in that function
and in their cameras' offsets; every identity of B is new. A resnet18 trained with labels
on A transfers to B with a loss, and adaptation on B's unlabelled training images, through
`reidkit train` as a user runs it, wins part of it back.
"""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

HEIGHT, WIDTH, CAMERAS, TRAITS = 8, 4, 4, 8
PIXELS = HEIGHT * WIDTH * 3
TOY = [
    "--model", "resnet18", f"data.height={HEIGHT}", f"data.width={WIDTH}", "data.flip=0",
    "data.pad=0", "data.erasing=0", "data.mean=[0.5,0.5,0.5]", "data.std=[0.125,0.125,0.125]",
    "data.batch_size=64", "data.num_instances=4", "train.deterministic=true",
]  # fmt: skip


def write_network(base, rng, weights, offsets) -> None:
    """A Market-style dataset of one camera network: 60 training identities of 12 images,
    40 test identities of 2 query and 8 gallery images."""
    train, test = ("bounding_box_train",) * 12, ("query",) * 2 + ("bounding_box_test",) * 8
    first = 1
    for subsets, identities in ((train, 60), (test, 40)):
        for pid in range(first, first + identities):
            traits = rng.normal(size=TRAITS)
            for frame, subset in enumerate(subsets):
                camera = int(rng.integers(CAMERAS))
                x = weights @ traits + offsets[camera] + 0.3 * rng.normal(size=PIXELS)
                pixels = np.clip(128 + 10 * x, 0, 255).astype(np.uint8)
                path = base / subset / f"{pid:04d}_c{camera + 1}s1_{frame:06d}_00.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels.reshape(HEIGHT, WIDTH, 3)).save(path)
        first += identities


def mean_ap(cli, weights, base, out) -> float:
    code, _, err = cli("extract", weights, "--dataset", base, "--out", out)
    assert code == 0, err
    code, text, err = cli("evaluate", out / "B-query.h5", out / "B-gallery.h5", "--json")
    assert code == 0, err
    return json.loads(text)["mAP"]


def test_adaptation_beats_the_direct_transfer_on_a_small_domain_shift(tmp_path, cli):
    """Measured: direct 66.3% mAP on B, adapted 86.8% (the toy drawn with seeds 1, 2, 3:
    77.5 -> 93.0, 70.3 -> 82.4, 78.8 -> 94.3); with the pseudo-labels shuffled among the
    clustered images, 46.0%: the gain is the clusters'. About 30 s on 2 cores."""
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(PIXELS, TRAITS))
    networks = {"A": (weights, 0.5), "B": (weights + 0.5 * rng.normal(size=weights.shape), 1.0)}
    for name, (w, offset) in networks.items():
        write_network(tmp_path / name, rng, w, offset * rng.normal(size=(CAMERAS, PIXELS)))
    source = tmp_path / "source"
    code, _, err = cli(
        "train", "--dataset", tmp_path / "A", "--run", source, "--epochs", "6", *TOY,
        "model.pretrained=none", "schedule.warmup_epochs=1", "eval.every=0",
    )  # fmt: skip
    assert code == 0, err
    direct = mean_ap(cli, source / "weights" / "last.pt", tmp_path / "B", tmp_path / "direct")
    adapted = tmp_path / "adapted"
    code, _, err = cli(
        "train", "--dataset", tmp_path / "B", "--run", adapted, "--epochs", "5", *TOY,
        "--pretrained", source / "weights" / "last.pt", "adapt.enabled=true",
        "adapt.eps=0.5", "adapt.camera_centre=true", "data.sampler=pk_cameras",
        "train.iters_per_epoch=40", "loss.triplet=0", "loss.label_smoothing=0",
        "schedule.warmup_epochs=0", "eval.every=0",
    )  # fmt: skip
    assert code == 0, err
    after = mean_ap(cli, adapted / "weights" / "last.pt", tmp_path / "B", tmp_path / "after")
    assert 0.5 < direct < 0.9, direct  # a loss in the transfer, and something to start from
    assert after >= direct + 0.03, (direct, after)
