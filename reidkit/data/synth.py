"""synthreid: a procedural pedestrian dataset in the Market-1501 layout and naming.

No real re-ID dataset can be downloaded everywhere reidkit is tested, so the demo, the tests
and the benchmarks run on this one. Identity lives in clothing, accessories, hair and body
shape (with deliberately similar identities as hard negatives); each camera adds its own
background, light, colour cast, blur, noise, scale and occlusion (see ``synth_render``).

The ``video-*`` presets render tracklets instead, into ``<root>/synthreid-video`` (see
:mod:`reidkit.data.synth_video`); the same machinery writes, resumes and publishes them.

Generation is deterministic for a seed: every image has its own random stream derived
from (seed, subset, index), so files are byte-identical whatever the number of workers
and however often the work was interrupted and resumed. Images are written into a hidden
staging folder that becomes ``<root>/synthreid`` by one rename when complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from reidkit.data.market_style import NamingRule, parse_market_layout
from reidkit.data.sample import Dataset, DatasetSpec
from reidkit.errors import UsageError
from reidkit.fileio import file_lock, fsync_dir, replace_folder, write_text_atomic
from reidkit.parallel import imap_workers
from reidkit.progress import ProgressFn, no_progress

log = logging.getLogger(__name__)

NAME = "synthreid"
MARKER = "synthreid.json"
GENERATOR_VERSION = 2  # 2: milder light, colour cast, saturation and gamma per camera
FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
JPEG_QUALITY = 90
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


def _split(total: int, lows, highs, rng):
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

    per_train = _split(
        preset.train_images, np.full(preset.train_ids, 2), np.full(preset.train_ids, 10**6), rng
    )
    for i, n in enumerate(per_train):
        k = int(rng.integers(2, min(c, n) + 1))
        for cam in _spread(int(n), rng.choice(c, size=k, replace=False), rng):
            add("train", "person", i, cam)

    t = preset.test_ids
    queries = _split(preset.query_images, np.ones(t), np.full(t, c), rng)
    cam_sets = [
        rng.choice(c, size=int(rng.integers(max(q, 2), c + 1)), replace=False) for q in queries
    ]
    sizes = np.array([len(s) for s in cam_sets])
    gallery = _split(preset.gallery_images - preset.distractors, sizes, np.full(t, 10**6), rng)
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


def make_world(preset: Preset, seed: int):
    """The identities (train then test) and cameras of a dataset, from the seed alone.

    A ``similar_fraction`` of identities copy another identity of the same split with one
    or two attributes changed, so that the gallery holds hard negatives.
    """
    import numpy as np

    from reidkit.data import synth_render as render

    identities = []
    for count in (preset.train_ids, preset.test_ids):
        first = len(identities)
        for i in range(count):
            rng = np.random.default_rng([seed, 2, first + i])
            if i > 0 and rng.random() < preset.similar_fraction:
                identities.append(
                    render.similar_identity(identities[first + int(rng.integers(i))], rng)
                )
            else:
                identities.append(render.random_identity(rng))
    cameras = [
        render.random_camera(k, np.random.default_rng([seed, 3, k])) for k in range(preset.cameras)
    ]
    return identities, cameras


_WORLD: tuple[list, list] | None = None


def _init_worker(world) -> None:
    global _WORLD
    _WORLD = world


def render_job(job: Job, world) -> bytes:
    """The JPEG bytes of one planned image."""
    import io

    import numpy as np

    from reidkit.data import synth_render as render

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


def _write_job(args: tuple[Job, str]) -> int:
    """Render one image (or tracklet) into the staging folder unless it is already there
    (resume); returns the images written."""
    job, staging = args
    if not isinstance(job, Job):
        from reidkit.data.synth_video import write_tracklet

        return write_tracklet(job, staging, _WORLD)
    path = os.path.join(staging, FOLDERS[job.subset], job.filename)
    if os.path.exists(path):
        return 0
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(render_job(job, _WORLD))
    os.replace(tmp, path)
    return 1


def _kind(preset: str):
    """(dataset folder name, subset folders, preset, plan function) of a preset name."""
    from reidkit.data import synth_video

    if preset in PRESETS:
        return NAME, FOLDERS, PRESETS[preset], plan
    if preset in synth_video.PRESETS:
        return synth_video.NAME, synth_video.FOLDERS, synth_video.PRESETS[preset], synth_video.plan
    known = ", ".join([*PRESETS, *synth_video.PRESETS])
    raise UsageError(f"unknown preset {preset!r}; choose one of {known}")


def _images(jobs) -> int:
    return sum(len(j.names) if hasattr(j, "names") else 1 for j in jobs)


def _marker(preset, seed: int, images: int) -> dict:
    from reidkit import __version__

    return {
        "generator": GENERATOR_VERSION,
        "preset": asdict(preset),
        "seed": seed,
        "images": images,
        "reidkit_version": __version__,
    }


def _read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _same(marker: dict | None, preset: Preset, seed: int) -> bool:
    return (
        bool(marker)
        and marker.get("generator") == GENERATOR_VERSION
        and marker.get("preset") == asdict(preset)
        and marker.get("seed") == seed
    )


def generate(
    root: str | os.PathLike[str],
    preset: str = "small",
    seed: int = 0,
    *,
    workers: int | None = None,
    force: bool = False,
    wait_for_lock: bool = False,
    progress: ProgressFn = no_progress,
) -> dict:
    """Render the synthetic dataset into ``<root>/synthreid`` (``<root>/synthreid-video``
    for a ``video-*`` preset).

    An existing, complete dataset made with the same preset and seed is left as it is;
    an interrupted run is resumed from the images already written.

    Returns:
        dataset (its registry name), path, preset, seed, images, rendered (this run),
        resumed (found from an earlier run), up_to_date, seconds.

    Raises:
        UsageError: unknown preset, or the folder exists with other settings (without
            ``force``).
        LockedError: another process is generating into the same folder.
    """
    name, folders, spec, plan_jobs = _kind(preset)
    root = Path(root)
    final = root / name
    staging = root / f".{name}.partial"
    start = time.perf_counter()
    with file_lock(final, wait=wait_for_lock):
        marker = _read_marker(final)
        if final.exists() and not force:
            if _same(marker, spec, seed):
                return {
                    "dataset": name,
                    "path": str(final),
                    "preset": preset,
                    "seed": seed,
                    "images": marker["images"],
                    "rendered": 0,
                    "resumed": 0,
                    "up_to_date": True,
                    "seconds": round(time.perf_counter() - start, 3),
                }
            made = (
                f"preset {marker['preset']['name']}, seed {marker['seed']}"
                if marker
                else f"no {MARKER} marker"
            )
            if marker and marker.get("generator") != GENERATOR_VERSION:
                made += f", generator version {marker.get('generator')}, now {GENERATOR_VERSION}"
            raise UsageError(
                f"{final} already exists ({made})",
                hint="pass --force to replace it, or choose another --root",
            )
        jobs, _ = plan_jobs(spec, seed)
        images = _images(jobs)
        staged = _read_marker(staging)
        if staging.exists() and not _same(staged, spec, seed):
            shutil.rmtree(staging)
        for folder in folders.values():
            (staging / folder).mkdir(parents=True, exist_ok=True)
        write_text_atomic(staging / MARKER, json.dumps(_marker(spec, seed, images), indent=2))
        rendered = _render_all(jobs, make_world(spec, seed), staging, workers, progress)
        for folder in folders.values():
            fsync_dir(staging / folder)
        replace_folder(staging, final)
    seconds = time.perf_counter() - start
    log.debug(
        "%s: %d images in %s (%.1f s, %.0f images/s rendered)",
        name,
        images,
        final,
        seconds,
        rendered / seconds if seconds else 0,
    )
    return {
        "dataset": name,
        "path": str(final),
        "preset": preset,
        "seed": seed,
        "images": images,
        "rendered": rendered,
        "resumed": images - rendered,
        "up_to_date": False,
        "seconds": round(seconds, 3),
    }


def _render_all(
    jobs: list[Job], world, staging: Path, workers: int | None, progress: ProgressFn
) -> int:
    tasks = [(job, str(staging)) for job in jobs]
    rendered = 0
    progress(0, len(jobs))
    chunk = 32 if isinstance(jobs[0], Job) else 2  # a tracklet is many images
    results = imap_workers(
        _write_job, tasks, workers, initializer=_init_worker, initargs=(world,), chunksize=chunk
    )
    for done, new in enumerate(results, 1):
        rendered += new
        if done % 64 == 0 or done == len(jobs):
            progress(done, len(jobs))
    return rendered


def parse(folder: Path) -> Dataset:
    """Parse synthreid from ``<root>/synthreid``."""
    return parse_market_layout(NAME, folder, NamingRule(), hint=SPEC.how_to_obtain(folder.parent))


SPEC = DatasetSpec(
    name=NAME,
    folder=NAME,
    description="procedural pedestrians in the Market-1501 layout (tiny, small or market size)",
    obtain="reidkit datasets synth --root {root} --preset small",
    parse=parse,
)
