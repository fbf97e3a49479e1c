"""Training on tracklets: clips of seq_len frames with one augmentation each, PK over
tracklets, temporal pooling before the head, exact resume and DDP as for images."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import FAST_TRAIN, reidkit_env, torchrun_argv

from reidkit.config import Config, apply_overrides, check_config
from reidkit.data import load_dataset
from reidkit.data.clips import pick_frames
from reidkit.models import create_model
from reidkit.models.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from reidkit.data.synth import generate

    root = tmp_path_factory.mktemp("video")
    generate(root, "video-tiny", seed=0, workers=2)
    return root


VIDEO_TRAIN = [
    *(a for a in FAST_TRAIN if not a.startswith(("data.height", "data.width"))),
    "data.height=32",
    "data.width=16",
    "data.seq_len=3",
]


def pk_batches(root) -> int:
    """PK batches (4 identities x 4 tracklets) of one epoch over video-tiny's tracklets."""
    from reidkit.data.samplers import PKSampler

    labels = [t.pid for t in load_dataset("synthreid-video", root).train]
    return len(PKSampler(labels, 16, 4, seed=0))


def train_args(root, run, *extra):
    return [
        "train", "--dataset", "synthreid-video", "--root", root, "--model", "resnet18",
        "--run", run, *VIDEO_TRAIN, *extra,
    ]  # fmt: skip


def test_frame_picking():
    assert pick_frames(10, 4, "evenly") == [1, 3, 6, 8]
    assert pick_frames(3, 5, "evenly") == [0, 0, 1, 2, 2]
    assert pick_frames(5, 3, "all") == [0, 1, 2, 3, 4]
    torch.manual_seed(0)
    drawn = [pick_frames(9, 4, "random") for _ in range(20)]
    assert all(d == sorted(set(d)) and len(d) == 4 and d[0] >= 0 and d[-1] < 9 for d in drawn)
    assert len({tuple(d) for d in drawn}) > 5
    short = pick_frames(2, 5, "random")
    assert len(short) == 5 and set(short) <= {0, 1}
    torch.manual_seed(3)
    a = pick_frames(30, 4, "random")
    torch.manual_seed(3)
    assert pick_frames(30, 4, "random") == a  # torch's generator: seeded like augmentations


@pytest.mark.parametrize("name", ["resnet18", "osnet_x0_25"])
def test_clips_pool_frame_features_before_the_head(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, image_size=(64, 32))
    clips = torch.randn(2, 3, 3, 64, 32)
    model.eval()
    with torch.no_grad():
        frames = model.features(clips.flatten(0, 1)).unflatten(0, (2, 3))
        assert torch.allclose(model(clips), model.head(frames.mean(1)), atol=1e-5)
        model.temporal = "max"
        assert torch.allclose(model(clips), model.head(frames.amax(1)), atol=1e-5)
        model.temporal = "avg"
        one = model(clips[:, :1])  # a one-frame clip is the image
        assert torch.allclose(one, model(clips[:, 0]), atol=1e-5)
    model.train()
    logits, feature = model(clips)
    assert logits.shape == (2, 5) and feature.shape == (2, model.feature_dim)


def test_one_augmentation_per_clip_and_pk_over_tracklets(video):
    from reidkit.engine.loaders import train_loader

    config = apply_overrides(
        Config(),
        ["data.height=32", "data.width=16", "data.batch_size=8", "data.num_instances=2",
         "data.seq_len=3", "data.erasing=1.0", "data.flip=0.5", "data.mean=[0.5,0.5,0.5]",
         "data.std=[0.25,0.25,0.25]"],
    )  # fmt: skip
    ds = load_dataset("synthreid-video", video)
    torch.manual_seed(0)
    sampler, loader = train_loader(ds.train, config, rank=0, world=1, device="cpu")
    sampler.set_epoch(0)
    clips, labels = next(iter(loader))
    assert clips.shape == (8, 3, 3, 32, 16) and clips.dtype == torch.float32
    assert sorted(np.bincount(labels.numpy()).tolist())[-4:] == [2, 2, 2, 2]  # P=4 x K=2
    for clip in clips:  # random erasing (p=1) wrote zeros in the same box of every frame
        erased = (clip == 0).all(0)
        assert erased.any() and all(((frame == 0).all(0) == erased).all() for frame in clip)
    tracklet_ids = [i for batch in sampler for i in batch]
    assert max(tracklet_ids) < len(ds.train)


def test_a_one_frame_clip_is_the_image_pipeline(video):
    from reidkit.data.sample import Sample
    from reidkit.data.transforms import TrainClips, TrainImages, train_transform

    config = apply_overrides(
        Config(), ["data.height=32", "data.width=16", "data.mean=[0.5,0.5,0.5]",
                   "data.std=[0.25,0.25,0.25]"],
    )  # fmt: skip
    t = load_dataset("synthreid-video", video).train[0]
    one = t._replace(paths=t.paths[:1])
    transform = train_transform(config.data)
    clips = TrainClips([one], transform, (16, 32), 1, "evenly")
    images = TrainImages([Sample(one.path, one.pid, one.camid)], transform)
    for seed in range(4):  # flip, pad-crop and erasing draws alike
        torch.manual_seed(seed)
        clip, label = clips[0]
        torch.manual_seed(seed)
        image, same = images[0]
        assert label == same and torch.allclose(clip[0], image, atol=1e-6)


def test_resume_after_one_epoch_equals_two_straight(video, tmp_path, cli):
    """Through the end of the warmup (epoch 1), with the frames drawn at random."""
    args = ["train.deterministic=true", "data.sample=random", "model.temporal=max"]
    assert cli(*train_args(video, tmp_path / "straight", "--epochs", "2", *args))[0] == 0
    assert cli(*train_args(video, tmp_path / "split", "--epochs", "1", *args))[0] == 0
    code, _, err = cli("resume", tmp_path / "split", "--max-epoch", "2", "--json")
    assert code == 0, err
    a = load_checkpoint(tmp_path / "straight" / "weights" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "weights" / "last.pt")
    assert a["step"] == b["step"] == 2 * pk_batches(video)
    for key, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][key]), key
    assert a["config"]["model"]["temporal"] == "max"
    rows = (tmp_path / "straight" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    speed = float(rows[1].split(",")[header.index("images_per_s")])
    seconds = float(rows[1].split(",")[header.index("seconds")])
    frames = pk_batches(video) * 16 * 3  # clips x seq_len
    assert speed * seconds == pytest.approx(frames, rel=0.02)  # frames, not clips


def test_evaluation_during_training_is_extracts_number(video, tmp_path, cli):
    run = tmp_path / "run"
    assert cli(*train_args(video, run, "--epochs", "1", "eval.every=1"))[0] == 0
    rows = (run / "metrics.csv").read_text().splitlines()
    logged = float(rows[1].split(",")[rows[0].split(",").index("mAP")])
    code, _, err = cli(
        "extract", run / "weights" / "last.pt", "--dataset", "synthreid-video", "--root",
        video, "--out", tmp_path / "f",
    )  # fmt: skip
    assert code == 0, err
    code, out, _ = cli(
        "evaluate", tmp_path / "f" / "synthreid-video-query.h5",
        tmp_path / "f" / "synthreid-video-gallery.h5", "--json",
    )  # fmt: skip
    assert json.loads(out)["mAP"] == pytest.approx(logged, abs=1e-5)


def test_video_settings_for_an_image_dataset_are_refused(market_tree, tmp_path, cli):
    for key in ("data.seq_len=8", "model.temporal=max", "eval.sample=evenly"):
        code, _, err = cli(
            "train", "--dataset", "market1501", "--root", market_tree.root, "--model",
            "resnet18", "--run", tmp_path / "r", *FAST_TRAIN, "data.batch_size=4",
            "data.num_instances=2", key,
        )  # fmt: skip
        assert code == 2, err
        assert f"{key.split('=')[0]} is for video datasets, and market1501 holds images" in err
    code, _, err = cli(*train_args(tmp_path, tmp_path / "r", "data.sample=dense"))
    assert code == 2 and "data.sample: unknown value 'dense'" in err


@pytest.mark.skipif(sys.platform != "linux", reason="gloo on loopback")
def test_torchrun_two_cpu_processes_train_one_video_model(video, tmp_path):
    """The trainer checks after each epoch that both processes hold the same weights; two
    processes that did not average their gradients would fail that check. Packed clips of
    every frame (data.sample=all) go through DDP. Without the softmax term (loss.softmax=0)
    nothing reaches the classifier or the BNNeck's scale, which DDP refused at the second
    step ("Expected to have finished reduction"): they are frozen, and the run says so.
    (One run for both: the softmax term through DDP is the image training's torchrun
    test's.)"""
    run = tmp_path / "ddp"
    sample = "all"
    argv = train_args(video, run, "--epochs", "2", f"data.sample={sample}", "loss.softmax=0")
    args = ["--run-dir" if a == "--run" else str(a) for a in argv]
    done = subprocess.run(
        [*torchrun_argv(2), *args, "--json"],
        env=reidkit_env(OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["epochs"] == 2
    ckpt = load_checkpoint(run / "weights" / "last.pt")
    assert ckpt["step"] == 2 * (pk_batches(video) // 2) >= 2  # each process took half
    assert ckpt["config"]["data"]["sample"] == sample
    frozen = "loss.softmax=0: nothing trains bnneck.weight, classifier.weight; frozen"
    assert frozen in done.stderr


@pytest.mark.parametrize("temporal", ["avg", "max"])
def test_packed_clips_of_different_lengths_pool_as_each_clip_alone(temporal):
    from reidkit.data.clips import PackedClips

    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=5, image_size=(32, 16)).eval()
    model.temporal = temporal
    clips = [torch.randn(n, 3, 32, 16) for n in (2, 5, 1)]
    packed = PackedClips(torch.cat(clips), torch.tensor([2, 5, 1]))
    with torch.no_grad():
        together = model(packed)
        alone = torch.cat([model(c[None]) for c in clips])
    assert together.shape == (3, model.feature_dim)
    assert torch.allclose(together, alone, atol=1e-5 * float(alone.abs().max()))


def test_sample_all_trains_on_every_frame_of_each_tracklet(video, tmp_path, cli):
    from reidkit.data.clips import PackedClips
    from reidkit.data.samplers import PKSampler
    from reidkit.engine.loaders import train_loader

    ds = load_dataset("synthreid-video", video)
    config = check_config(apply_overrides(
        Config(),
        [*VIDEO_TRAIN, "data.sample=all", "data.mean=[0.5,0.5,0.5]", "data.std=[0.25,0.25,0.25]"],
    ))  # fmt: skip
    assert config.data.max_frames == 512 >= 16 * max(t.frames for t in ds.train)  # no cap
    sampler, loader = train_loader(ds.train, config, rank=0, world=1, device="cpu")
    sampler.set_epoch(0)
    clips, labels = next(iter(loader))
    first = next(iter(sampler))
    assert isinstance(clips, PackedClips)
    assert clips.lengths.tolist() == [ds.train[i].frames for i in first]  # every frame
    assert clips.frames.shape == (sum(clips.lengths.tolist()), 3, 32, 16)
    assert labels.tolist() == [ds.train[i].pid for i in first]

    run = tmp_path / "all"
    code, _, err = cli(*train_args(video, run, "--epochs", "1", "data.sample=all"))
    assert code == 0, err
    epoch = PKSampler([t.pid for t in ds.train], 16, 4, seed=0)
    epoch.set_epoch(0)
    frames = sum(ds.train[i].frames for batch in epoch for i in batch)
    rows = (run / "metrics.csv").read_text().splitlines()
    header, row = rows[0].split(","), rows[1].split(",")
    seconds = float(row[header.index("seconds")])
    speed = float(row[header.index("images_per_s")])
    assert speed * seconds == pytest.approx(frames, rel=0.02)  # every frame went through
    assert load_checkpoint(run / "weights" / "last.pt")["config"]["data"]["sample"] == "all"


def test_frame_caps_fill_the_budget():
    from reidkit.data.clips import frame_caps

    assert frame_caps([3, 10, 20], 20) == [3, 8, 8]
    assert frame_caps([20, 3, 10], 100) == [20, 3, 10]
    assert frame_caps([4, 4, 4], 3) == [1, 1, 1]
    with pytest.raises(ValueError, match="3 clips"):
        frame_caps([4, 4, 4], 2)
    rng = np.random.default_rng(0)
    for _ in range(200):  # against the definition: the largest common cap that fits
        lengths = rng.integers(1, 60, size=rng.integers(1, 12)).tolist()
        budget = int(rng.integers(len(lengths), 400))
        cap = max(c for c in range(1, 61) if sum(min(n, c) for n in lengths) <= budget)
        assert frame_caps(lengths, budget) == [min(n, cap) for n in lengths]


def test_sample_all_batches_keep_within_the_frame_budget(video, tmp_path, cli):
    from reidkit.data.samplers import PKSampler
    from reidkit.engine.loaders import train_loader

    ds = load_dataset("synthreid-video", video)
    longest = max(t.frames for t in ds.train)
    budget = 16 * 2  # 16 clips of 2 frames: less than every frame of most batches
    overrides = [*VIDEO_TRAIN, "data.sample=all", f"data.max_frames={budget}"]
    config = check_config(apply_overrides(Config(), overrides))
    sampler, loader = train_loader(ds.train, config, rank=0, world=1, device="cpu")
    sampler.set_epoch(0)
    torch.manual_seed(0)
    cut = 0
    for (clips, labels), batch in zip(loader, list(sampler), strict=True):
        lengths = clips.lengths.tolist()
        assert sum(lengths) <= budget and len(clips.frames) == sum(lengths)
        assert lengths == [min(ds.train[i].frames, 2) for i in batch]
        assert labels.tolist() == [ds.train[i].pid for i in batch]
        cut += sum(ds.train[i].frames > 2 for i in batch)
    assert longest > 2 and cut > 0

    run = tmp_path / "budget"
    code, _, err = cli(*train_args(video, run, "--epochs", "1", "data.sample=all",
                                   f"data.max_frames={budget}"))  # fmt: skip
    assert code == 0, err
    epoch = PKSampler([t.pid for t in ds.train], 16, 4, seed=0)
    frames = sum(min(ds.train[i].frames, 2) for batch in epoch for i in batch)
    rows = (run / "metrics.csv").read_text().splitlines()
    header, row = rows[0].split(","), rows[1].split(",")
    seen = float(row[header.index("images_per_s")]) * float(row[header.index("seconds")])
    assert seen == pytest.approx(frames, rel=0.02)
    assert load_checkpoint(run / "weights" / "last.pt")["config"]["data"]["max_frames"] == budget


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.max_frames=64"], "data.max_frames=64 budgets the frames of a data.sample=all"),
        (["data.sample=all", "data.max_frames=8"], "data.max_frames=8 is below data.batch_size=16"),
    ],
)
def test_frame_budget_that_cannot_be_honoured_is_refused(video, tmp_path, cli, overrides, message):
    code, _, err = cli(*train_args(video, tmp_path / "run", "--epochs", "1", *overrides))
    assert code == 2
    assert message in err
    assert not (tmp_path / "run").exists()
