"""A toy query/gallery pair of feature files whose images exist on disk.

A plain module, not a conftest.py: test files elsewhere import the root conftest by name,
and a second conftest module would shadow it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from reidkit.features.writer import write_features


@dataclass
class Case:
    root: Path  # the dataset folder the stored paths are relative to
    query: Path  # feature files
    gallery: Path
    q_feats: np.ndarray
    g_feats: np.ndarray
    q_pids: np.ndarray
    q_cams: np.ndarray
    g_pids: np.ndarray
    g_cams: np.ndarray
    q_paths: list[str]
    g_paths: list[str]


def make_case(tmp_path: Path, *, seed: int = 0, num_q: int = 12, num_g: int = 40) -> Case:
    """Identities 1..6 on cameras 0..2; the gallery has junk (pid -1), distractors (pid 0)
    and same-camera images of query identities, so every kind of tile occurs."""
    rng = np.random.default_rng(seed)
    q_pids = np.resize(np.arange(1, 7), num_q)
    q_cams = rng.integers(0, 3, num_q)
    g_pids = np.resize(np.arange(1, 7), num_g)
    g_pids[rng.random(num_g) < 0.12] = -1
    g_pids[rng.random(num_g) < 0.1] = 0
    g_cams = rng.integers(0, 3, num_g)
    centres = rng.normal(size=(8, 16))
    q_feats = (centres[q_pids + 1] + 0.8 * rng.normal(size=(num_q, 16))).astype(np.float32)
    g_feats = (centres[g_pids + 1] + 0.8 * rng.normal(size=(num_g, 16))).astype(np.float32)
    root = tmp_path / "data" / "toy"
    q_paths = [
        f"query/{p:04d}_c{c + 1}_{i:03d}.jpg"
        for i, (p, c) in enumerate(zip(q_pids, q_cams, strict=True))
    ]
    g_paths = [
        f"gallery/{p:04d}_c{c + 1}_{i:03d}.jpg"
        for i, (p, c) in enumerate(zip(g_pids, g_cams, strict=True))
    ]
    for i, rel in enumerate(q_paths + g_paths):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 64), (37 * i % 256, 91 * i % 256, 53 * i % 256)).save(path)
    feats = tmp_path / "feats"
    query = write_features(
        feats / "q.h5", q_feats, q_pids, q_cams, paths=q_paths, attrs={"root": str(root)}
    )
    gallery = write_features(
        feats / "g.h5", g_feats, g_pids, g_cams, paths=g_paths, attrs={"root": str(root)}
    )
    return Case(
        root, query, gallery, q_feats, g_feats, q_pids, q_cams, g_pids, g_cams, q_paths, g_paths
    )
