"""synthreid-video: procedural tracklets in the DukeMTMC-VideoReID layout and naming.

The identities and cameras are synthreid's (:func:`reidkit.data.synth.world.make_world`); a
tracklet is one person walking through one camera's view: the viewpoint and heading are
fixed, the gait advances frame to frame (stride and arm swing), the person drifts sideways
and grows or shrinks (walking towards or away from the camera), the box moves a little over
the background, and an occluder, when the camera draws one, sweeps across the frames, so
some frames are occluded and others not. Blur and light are fixed per tracklet; sensor
noise is drawn per frame.

Layout: ``synthreid-video/{train,query,gallery}/PPPP/TTTT/PPPP_Cc_Fffff_Xnnnnn.jpg``. Query
holds one tracklet per test identity; the gallery holds tracklets of every test identity
from at least one other camera, and tracklets of distractor identities seen only there.
Deterministic for a seed: each tracklet has its own random stream.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

from reidkit.data.sample import Dataset, DatasetSpec
from reidkit.data.synth.world import JPEG_QUALITY, split_counts

NAME = "synthreid-video"
FOLDERS = {"train": "train", "query": "query", "gallery": "gallery"}


@dataclass(frozen=True)
class VideoPreset:
    """The size of a synthetic video dataset. ``gallery_tracklets`` counts the distractor
    identities' tracklets (one each) too."""

    name: str
    cameras: int
    train_ids: int
    train_tracklets: int
    test_ids: int
    gallery_tracklets: int
    distractors: int
    min_frames: int
    max_frames: int
    similar_fraction: float = 0.2


PRESETS = {
    "video-tiny": VideoPreset("video-tiny", 4, 12, 36, 12, 32, 4, 4, 10),
    "video-small": VideoPreset("video-small", 6, 100, 400, 100, 360, 40, 8, 24),
}


@dataclass(frozen=True)
class TrackletJob:
    """One tracklet to render: ``identity`` indexes the identity list (-1: a distractor,
    drawn from its own stream)."""

    subset: str
    folder: str  # PPPP/TTTT, relative to the subset folder
    names: tuple[str, ...]  # frame file names
    identity: int
    camera: int
    stream: tuple[int, ...]


def plan(preset: VideoPreset, seed: int) -> tuple[list[TrackletJob], list[int]]:
    """Every tracklet of the dataset, and the pid of each identity (train ids first)."""
    import numpy as np

    rng = np.random.default_rng([seed, 10])
    c, n_ids = preset.cameras, preset.train_ids + preset.test_ids
    pids = [int(p) for p in rng.permutation(np.arange(1, n_ids + preset.distractors + 1))]
    jobs: list[TrackletJob] = []
    count: dict[int, int] = {}

    def add(subset: str, identity: int, camera: int, pid: int) -> None:
        count[pid] = count.get(pid, 0) + 1
        first = int(rng.integers(1, 200))
        n = int(rng.integers(preset.min_frames, preset.max_frames + 1))
        x = int(rng.integers(10000, 99999))
        names = tuple(f"{pid:04d}_C{camera + 1}_F{first + f:04d}_X{x}.jpg" for f in range(n))
        jobs.append(
            TrackletJob(
                subset,
                f"{pid:04d}/{count[pid]:04d}",
                names,
                identity,
                camera,
                (seed, 11, len(jobs)),
            )
        )

    t = preset.train_ids
    per_train = split_counts(preset.train_tracklets, np.full(t, 2), np.full(t, 10**6), rng)
    for i, n in enumerate(per_train):
        cams = rng.choice(c, size=min(c, 2 + int(rng.integers(3))), replace=False)
        for k in range(int(n)):
            add("train", i, int(cams[k % len(cams)]), pids[i])
    per_test = split_counts(
        preset.gallery_tracklets - preset.distractors,
        np.ones(preset.test_ids),
        np.full(preset.test_ids, 10**6),
        rng,
    )
    for j, n in enumerate(per_test):
        identity = t + j
        query_cam, *others = (int(x) for x in rng.permutation(c))
        add("query", identity, query_cam, pids[identity])
        for k in range(int(n)):  # the first in another camera, so the query has a match
            cam = others[k % len(others)] if k == 0 or rng.random() < 0.8 else query_cam
            add("gallery", identity, cam, pids[identity])
    for d in range(preset.distractors):
        add("gallery", -1, int(rng.integers(c)), pids[n_ids + d])
    return jobs, pids


def render_tracklet(job: TrackletJob, world) -> list[bytes]:
    """The JPEG bytes of every frame of one planned tracklet."""
    import numpy as np

    from reidkit.data.synth import camera as cams
    from reidkit.data.synth import render
    from reidkit.data.synth.identity import WARDROBES, random_identity

    identities, cameras = world
    rng = np.random.default_rng(list(job.stream))
    cam = cameras[job.camera]
    person = (
        identities[job.identity]
        if job.identity >= 0
        else random_identity(rng, WARDROBES[cam.network])
    )
    n, (ch, cw) = len(job.names), (cams.CH, cams.CW)
    view, facing, _, _ = render.pose(rng)
    phase, speed = rng.uniform(0, 2 * math.pi), rng.uniform(0.5, 0.9)
    u0 = min(ch * rng.uniform(*cam.scale_range) * person.height_scale, 0.99 * ch)
    u1 = min(u0 * rng.uniform(0.85, 1.15), 0.99 * ch)
    cx0 = cw * (0.5 + rng.uniform(-cam.jitter, cam.jitter))
    cx1 = cx0 + cw * rng.uniform(-cam.jitter, cam.jitter)
    foot = min(ch * (0.985 + rng.uniform(-cam.jitter, cam.jitter) * 0.5), ch)
    oy, ox = int(rng.integers(cams.PAD_Y + 1)), int(rng.integers(cams.PAD_X + 1))
    dy, dx = rng.uniform(-1, 1), rng.uniform(-3, 3)  # the box over the background, per frame
    look = cams.draw_look(cam, rng)
    occluder = int(rng.integers(2**31)) if rng.random() < cam.occlusion_prob else None
    sweep = 1.6 * (1 if rng.random() < 0.5 else -1)
    frames = []
    for f in range(n):
        a = f / max(n - 1, 1)
        u, cx = u0 + (u1 - u0) * a, cx0 + (cx1 - cx0) * a
        img, d = cams.canvas_at(cam, round(oy + dy * f), round(ox + dx * f))
        gait = phase + speed * f
        stride, swing = 0.45 * abs(math.sin(gait)), 0.5 * math.sin(gait)
        render.draw_person(d, person, cx, max(foot, u + 0.01 * ch), u, view, facing, stride, swing)
        if occluder is not None:
            shift = sweep * (a - 0.5)
            render.occlude(d, cam, np.random.default_rng(occluder), cx, foot, u, shift)
        buffer = io.BytesIO()
        cams.finish(img, cam, rng, look).save(buffer, "JPEG", quality=JPEG_QUALITY)
        frames.append(buffer.getvalue())
    return frames


def write_tracklet(job: TrackletJob, staging: str, world) -> int:
    """Render one tracklet into the staging folder unless all its frames are there
    (resume); returns the frames written."""
    folder = os.path.join(staging, FOLDERS[job.subset], job.folder)
    if all(os.path.exists(os.path.join(folder, n)) for n in job.names):
        return 0
    os.makedirs(folder, exist_ok=True)
    for name, data in zip(job.names, render_tracklet(job, world), strict=True):
        path = os.path.join(folder, name)
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)
    return len(job.names)


def parse(folder: Path) -> Dataset:
    """Parse synthreid-video from ``<root>/synthreid-video``."""
    from reidkit.data.layouts.dukemtmcvidreid import parse_layout

    return parse_layout(NAME, folder, folder)


SPEC = DatasetSpec(
    name=NAME,
    folder=NAME,
    description="procedural tracklets in the DukeMTMC-VideoReID layout (video-tiny, video-small)",
    obtain="reidkit datasets synth --root {root} --preset video-small",
    parse=parse,
)
