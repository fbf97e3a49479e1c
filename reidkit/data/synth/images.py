"""synthreid: a procedural pedestrian dataset in the Market-1501 layout and naming.

Identity lives in clothing, accessories, hair and body shape (with deliberately similar
identities as hard negatives); each camera adds its own background, light, colour cast,
blur, noise, scale and occlusion (:mod:`reidkit.data.synth.render`). Every image has its
own random stream derived from (seed, subset, index); :mod:`reidkit.data.synth.writer`
renders, resumes and publishes them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from reidkit.data.layouts.market import NamingRule, parse_market_layout
from reidkit.data.sample import Dataset, DatasetSpec
from reidkit.data.synth.world import JPEG_QUALITY, split_counts

NAME = "synthreid"
# the dataset of each camera network (camera.OPTICS, identity.WARDROBES): b is a's domain
# shift, the target of adaptation (docs/adaptation.md)
NAMES = {"a": NAME, "b": f"{NAME}-b"}
FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
PIDS_BY_KIND = {"distractor": 0, "junk": -1}


@dataclass(frozen=True)
class Preset:
    """The size of a synthetic dataset.

    ``gallery_images`` counts every non-junk gallery image, distractors included, as
    Market-1501's usual 15913 does; junk images come on top.
    """

    name: str
    cameras: int
    train_ids: int
    train_images: int
    test_ids: int
    query_images: int
    gallery_images: int
    distractors: int
    junk: int
    similar_fraction: float = 0.2


PRESETS = {
    "tiny": Preset("tiny", 4, 16, 160, 16, 48, 136, 16, 8),
    "small": Preset("small", 6, 120, 1800, 100, 400, 1700, 150, 100),
    "market": Preset("market", 6, 751, 12936, 750, 3368, 15913, 2793, 3819),
}


@dataclass(frozen=True)
class Job:
    """One image to render: ``identity`` indexes the identity list (-1: distractor or junk)."""

    subset: str
    filename: str
    kind: str  # "person", "distractor" or "junk"
    identity: int
    camera: int
    stream: tuple[int, ...]


def _spread(n: int, cameras, rng) -> list[int]:
    """Cameras for ``n`` images over a camera set, each camera used at least once."""
    cams = list(cameras) + [int(c) for c in rng.choice(cameras, size=n - len(cameras))]
    return sorted(cams)


def _filename(pid: int, camera: int, frame: int, rng) -> str:
    pid_text = "-1" if pid == -1 else f"{pid:04d}"
    sequence, box = int(rng.integers(1, 7)), int(rng.integers(1, 9))
    return f"{pid_text}_c{camera + 1}s{sequence}_{frame:06d}_{box:02d}.jpg"


def plan(preset: Preset, seed: int) -> tuple[list[Job], list[int]]:
    """Every image of the dataset, and the pid of each identity (train ids first)."""
    import numpy as np

    rng = np.random.default_rng([seed, 0])
    c = preset.cameras
    n_ids = preset.train_ids + preset.test_ids
    pids = [int(p) for p in rng.permutation(np.arange(1, n_ids + 1))]
    jobs: list[Job] = []
    frame = iter(range(1, 10**6, 7))

    def add(subset: str, kind: str, identity: int, camera: int) -> None:
        pid = pids[identity] if kind == "person" else PIDS_BY_KIND[kind]
        index = len(jobs)
        jobs.append(
            Job(
                subset,
                _filename(pid, camera, next(frame), rng),
                kind,
                identity,
                camera,
                (seed, 1, index),
            )
        )

    per_train = split_counts(
        preset.train_images, np.full(preset.train_ids, 2), np.full(preset.train_ids, 10**6), rng
    )
    for i, n in enumerate(per_train):
        k = int(rng.integers(2, min(c, n) + 1))
        for cam in _spread(int(n), rng.choice(c, size=k, replace=False), rng):
            add("train", "person", i, cam)

    t = preset.test_ids
    queries = split_counts(preset.query_images, np.ones(t), np.full(t, c), rng)
    cam_sets = [
        rng.choice(c, size=int(rng.integers(max(q, 2), c + 1)), replace=False) for q in queries
    ]
    sizes = np.array([len(s) for s in cam_sets])
    gallery = split_counts(
        preset.gallery_images - preset.distractors, sizes, np.full(t, 10**6), rng
    )
    for j in range(t):
        identity = preset.train_ids + j
        for cam in sorted(
            int(x) for x in rng.choice(cam_sets[j], size=int(queries[j]), replace=False)
        ):
            add("query", "person", identity, cam)
        for cam in _spread(int(gallery[j]), cam_sets[j], rng):
            add("gallery", "person", identity, cam)
    for _ in range(preset.distractors):
        add("gallery", "distractor", -1, int(rng.integers(c)))
    for _ in range(preset.junk):
        add("gallery", "junk", -1, int(rng.integers(c)))
    return jobs, pids


def render_job(job: Job, world) -> bytes:
    """The JPEG bytes of one planned image."""
    import io

    import numpy as np

    from reidkit.data.synth import render

    identities, cameras = world
    rng = np.random.default_rng(list(job.stream))
    camera = cameras[job.camera]
    if job.kind == "person":
        image = render.render_person(identities[job.identity], camera, rng)
    elif job.kind == "distractor":
        image = render.render_distractor(camera, rng)
    else:
        image = render.render_junk(camera, rng)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def write_image(job: Job, staging: str, world) -> int:
    """Render one image into the staging folder unless it is already there (resume);
    returns the images written."""
    path = os.path.join(staging, FOLDERS[job.subset], job.filename)
    if os.path.exists(path):
        return 0
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(render_job(job, world))
    os.replace(tmp, path)
    return 1


def _spec(network: str, description: str, obtain: str) -> DatasetSpec:
    """The registry entry of a network's dataset: Market-1501's layout under its name."""
    name = NAMES[network]

    def parse(folder: Path) -> Dataset:
        return parse_market_layout(
            name, folder, NamingRule(), hint=spec.how_to_obtain(folder.parent)
        )

    spec = DatasetSpec(name=name, folder=name, description=description, obtain=obtain, parse=parse)
    return spec


SPEC = _spec(
    "a",
    "procedural pedestrians in the Market-1501 layout (tiny, small or market size)",
    "reidkit datasets synth --root {root} --preset small",
)
SPEC_B = _spec(
    "b",
    "synthreid's second camera network: night, low-resolution cameras farther away, winter "
    "clothes (a domain shift)",
    "reidkit datasets synth --root {root} --preset small --network b",
)
