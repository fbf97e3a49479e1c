"""Writing a synthetic dataset (:mod:`~reidkit.data.synth.images` or
:mod:`~reidkit.data.synth.video`): plan every file, render them in worker processes into a
hidden staging folder, and publish it as ``<root>/synthreid`` (or ``synthreid-video``) by
one rename when complete.

Generation is deterministic for a seed: every image (or tracklet) has its own random
stream, so files are byte-identical whatever the number of workers and however often the
work was interrupted and resumed (the files already in the staging folder are kept).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from reidkit.data.synth import images, video
from reidkit.data.synth.world import make_world
from reidkit.errors import UsageError
from reidkit.fileio import file_lock, fsync_dir, replace_folder, write_text_atomic
from reidkit.parallel import imap_workers
from reidkit.progress import ProgressFn, no_progress

log = logging.getLogger(__name__)
MARKER = "synthreid.json"
GENERATOR_VERSION = 2  # 2: milder light, colour cast, saturation and gamma per camera
_WORLD: tuple[list, list] | None = None


def _init_worker(world) -> None:
    global _WORLD
    _WORLD = world


def _write_job(args) -> int:
    """Render one image or tracklet into the staging folder unless it is already there
    (resume); returns the images written."""
    job, staging = args
    if isinstance(job, images.Job):
        return images.write_image(job, staging, _WORLD)
    return video.write_tracklet(job, staging, _WORLD)


NETWORKS = tuple(images.NAMES)


def _kind(preset: str, network: str = "a"):
    """(dataset folder name, subset folders, preset, plan function) of a preset name in a
    camera network."""
    if network not in NETWORKS:
        raise UsageError(f"unknown --network {network!r}; choose one of {', '.join(NETWORKS)}")
    if preset in images.PRESETS:
        return images.NAMES[network], images.FOLDERS, images.PRESETS[preset], images.plan
    if preset in video.PRESETS:
        if network != "a":
            raise UsageError(
                f"--network {network} renders images only; preset {preset} is a video preset",
                hint=f"choose one of {', '.join(images.PRESETS)}",
            )
        return video.NAME, video.FOLDERS, video.PRESETS[preset], video.plan
    known = ", ".join([*images.PRESETS, *video.PRESETS])
    raise UsageError(f"unknown preset {preset!r}; choose one of {known}")


def _images(jobs) -> int:
    return sum(len(j.names) if hasattr(j, "names") else 1 for j in jobs)


def _marker(preset, seed: int, images: int, network: str) -> dict:
    from reidkit import __version__

    return {
        "generator": GENERATOR_VERSION,
        "preset": asdict(preset),
        "seed": seed,
        "network": network,
        "images": images,
        "reidkit_version": __version__,
    }


def _read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _same(marker: dict | None, preset, seed: int, network: str) -> bool:
    return (
        bool(marker)
        and marker.get("generator") == GENERATOR_VERSION
        and marker.get("preset") == asdict(preset)
        and marker.get("seed") == seed
        and marker.get("network", "a") == network  # markers before networks: a
    )


def generate(
    root: str | os.PathLike[str],
    preset: str = "small",
    seed: int = 0,
    *,
    network: str = "a",
    workers: int | None = None,
    force: bool = False,
    wait_for_lock: bool = False,
    progress: ProgressFn = no_progress,
) -> dict:
    """Render the synthetic dataset into ``<root>/synthreid`` (``<root>/synthreid-video``
    for a ``video-*`` preset; ``<root>/synthreid-b`` for camera network b, the same sizes
    seen by other cameras and worn by other people: a domain shift).

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
    name, folders, spec, plan_jobs = _kind(preset, network)
    root = Path(root)
    final = root / name
    staging = root / f".{name}.partial"
    start = time.perf_counter()
    with file_lock(final, wait=wait_for_lock):
        marker = _read_marker(final)
        if final.exists() and not force:
            if _same(marker, spec, seed, network):
                return {
                    "dataset": name,
                    "path": str(final),
                    "preset": preset,
                    "seed": seed,
                    "network": network,
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
        if staging.exists() and not _same(staged, spec, seed, network):
            shutil.rmtree(staging)
        for folder in folders.values():
            (staging / folder).mkdir(parents=True, exist_ok=True)
        write_text_atomic(
            staging / MARKER, json.dumps(_marker(spec, seed, images, network), indent=2)
        )
        world = make_world(spec, seed, network)
        rendered = _render_all(jobs, world, staging, workers, progress)
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
        "network": network,
        "images": images,
        "rendered": rendered,
        "resumed": images - rendered,
        "up_to_date": False,
        "seconds": round(seconds, 3),
    }


def _render_all(jobs: list, world, staging: Path, workers: int | None, progress: ProgressFn) -> int:
    tasks = [(job, str(staging)) for job in jobs]
    rendered = 0
    progress(0, len(jobs))
    chunk = 32 if isinstance(jobs[0], images.Job) else 2  # a tracklet is many images
    results = imap_workers(
        _write_job, tasks, workers, initializer=_init_worker, initargs=(world,), chunksize=chunk
    )
    for done, new in enumerate(results, 1):
        rendered += new
        if done % 64 == 0 or done == len(jobs):
            progress(done, len(jobs))
    return rendered
