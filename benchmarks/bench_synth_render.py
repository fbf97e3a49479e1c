"""Single-core throughput of the synthetic pedestrian renderer, and an optional contact sheet.

Usage::

    python benchmarks/bench_synth_render.py [--n 2000] [--repeats 3] [--save DIR]

Renders persons (90%), distractors (5%) and junk (5%) with JPEG encoding in one process pinned
to one core, and prints images per second. Camera textures are built before timing, as a
dataset generator builds them once per camera.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from io import BytesIO
from pathlib import Path

import numpy as np
from machine import describe
from PIL import Image

from reidkit.data.synth.camera import IMAGE_SIZE, random_camera
from reidkit.data.synth.identity import random_identity, similar_identity
from reidkit.data.synth.render import render_distractor, render_junk, render_person


def run_once(n: int, seed: int) -> float:
    """Render and JPEG-encode `n` images; return images per second."""
    rng = np.random.default_rng(seed)
    cameras = [random_camera(i, rng) for i in range(6)]
    identities = [random_identity(rng) for _ in range(300)]
    for cam in cameras:  # build the per-camera textures outside the timed loop
        render_junk(cam, rng)
    start = time.perf_counter()
    for _ in range(n):
        cam = cameras[int(rng.integers(len(cameras)))]
        r = rng.random()
        if r < 0.9:
            img = render_person(identities[int(rng.integers(len(identities)))], cam, rng)
        elif r < 0.95:
            img = render_distractor(cam, rng)
        else:
            img = render_junk(cam, rng)
        img.save(BytesIO(), "JPEG", quality=90)
    return n / (time.perf_counter() - start)


def contact_sheet(path: Path, seed: int = 0, zoom: int = 1) -> None:
    """Save 8 identities x 6 cameras x 2 images, then a row of junk and distractors.

    Rows 7 and 8 are hard negatives of rows 1 and 2 (from ``similar_identity``).
    """
    rng = np.random.default_rng(seed)
    cameras = [random_camera(i, rng) for i in range(6)]
    people = [random_identity(rng) for _ in range(6)]
    people += [similar_identity(people[0], rng), similar_identity(people[1], rng)]
    h, w = IMAGE_SIZE
    gap = 2
    sheet = Image.new("RGB", (12 * (w + gap), 9 * (h + gap)), (255, 255, 255))
    for row, person in enumerate(people):
        for col in range(12):
            img = render_person(person, cameras[col // 2], rng)
            sheet.paste(img, (col * (w + gap), row * (h + gap)))
    for col in range(12):
        cam = cameras[col % 6]
        img = render_junk(cam, rng) if col < 6 else render_distractor(cam, rng)
        sheet.paste(img, (col * (w + gap), 8 * (h + gap)))
    if zoom > 1:
        sheet = sheet.resize((sheet.width * zoom, sheet.height * zoom), Image.NEAREST)
    sheet.save(path)


def main() -> None:
    """Parse arguments, time the renderer and optionally write the contact sheet."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="images per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--save", type=Path, help="folder for synth_sheet.png")
    parser.add_argument("--zoom", type=int, default=1, help="upscale factor of the sheet")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):  # measure one core, not whatever the OS spreads over
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    print(describe())
    rates = [run_once(args.n, seed) for seed in range(args.repeats)]
    print(
        f"images/s median {statistics.median(rates):.0f}  all "
        + " ".join(f"{r:.0f}" for r in rates)
    )
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
        out = args.save / "synth_sheet.png"
        contact_sheet(out, zoom=args.zoom)
        print(f"contact sheet: {out}")


if __name__ == "__main__":
    main()
