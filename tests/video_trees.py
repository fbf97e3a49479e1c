"""Tiny video dataset trees built with the real naming rules and the real .mat structure
(written with scipy), for the parsers' tests and the later stages' tests.

Each builder writes the tree under a data root and returns what it holds, so a test can
derive its expected counts from the same description.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

_BYTES: dict[tuple[str, tuple[int, int, int]], bytes] = {}


def frame_bytes(kind: str = "JPEG", color=(120, 80, 40), size=(16, 32)) -> bytes:
    key = (kind, color)
    if key not in _BYTES:
        buffer = io.BytesIO()
        Image.new("RGB", size, color).save(buffer, kind)
        _BYTES[key] = buffer.getvalue()
    return _BYTES[key]


def write_frames(folder: Path, names, kind: str = "JPEG", color=(120, 80, 40)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data = frame_bytes(kind, color)
    for name in names:
        (folder / name).write_bytes(data)


def mars_name(pid: int, cam: int, tracklet: int, frame: int) -> str:
    """MARS naming: PPPPCcTttttFfff.jpg; junk's pid is written 00-1."""
    pid_text = "00-1" if pid == -1 else f"{pid:04d}"
    return f"{pid_text}C{cam}T{tracklet:04d}F{frame:03d}.jpg"


# (pid, one-based camera, frames) per tracklet; query rows index the test tracks (0-based)
MARS_TRAIN = [(1, 1, 3), (1, 2, 4), (4, 3, 2), (4, 3, 5), (6, 6, 3)]
MARS_TEST = [(2, 1, 3), (2, 4, 2), (2, 5, 4), (3, 2, 3), (3, 3, 2), (0, 1, 3), (-1, 2, 2)]
MARS_QUERY = [0, 3]


def write_mars(root: Path, train=MARS_TRAIN, test=MARS_TEST, query=MARS_QUERY) -> Path:
    """``root/mars`` with bbox_train, bbox_test and info/ (names, tracks, query_IDX)."""
    from scipy.io import savemat

    folder = root / "mars"
    (folder / "info").mkdir(parents=True, exist_ok=True)
    for subset, tracks, info, key in (
        ("train", train, "tracks_train_info.mat", "track_train_info"),
        ("test", test, "tracks_test_info.mat", "track_test_info"),
    ):
        names, rows = [], []
        for t, (pid, cam, n) in enumerate(tracks, 1):
            frames = [mars_name(pid, cam, t, f) for f in range(1, n + 1)]
            rows.append((len(names) + 1, len(names) + n, pid, cam))
            names += frames
            write_frames(folder / f"bbox_{subset}" / frames[0][:4], frames)
        (folder / "info" / f"{subset}_name.txt").write_text("\n".join(names) + "\n")
        savemat(folder / "info" / info, {key: np.array(rows, dtype=np.float64)})
    savemat(
        folder / "info" / "query_IDX.mat",
        {"query_IDX": np.array([[q + 1 for q in query]], dtype=np.float64)},
    )
    return folder


def duke_video_name(pid: int, cam: int, frame: int, old: bool = False) -> str:
    """DukeMTMC-VideoReID naming: PPPP_Cc_Fffff_Xnnnnn.jpg (old release: PPPPCcFffffXnnnnn)."""
    if old:
        return f"{pid:04d}C{cam}F{frame:04d}X30823.jpg"
    return f"{pid:04d}_C{cam}_F{frame:04d}_X30823.jpg"


# subset -> (pid, one-based camera, frames) per tracklet
DUKEV_SPEC = {
    "train": [(5, 1, 3), (5, 2, 4), (9, 3, 2), (9, 8, 3)],
    "query": [(11, 1, 3), (12, 2, 2)],
    "gallery": [(11, 2, 4), (11, 1, 2), (12, 5, 3), (13, 6, 2)],
}


def write_duke_video(root: Path, spec=DUKEV_SPEC, old: bool = False, first: int = 1) -> Path:
    """``root/dukemtmc-vidreid/DukeMTMC-VideoReID/{train,query,gallery}/PID/TRACKLET/``;
    frames numbered from ``first`` (some real tracklets start at F0002)."""
    base = root / "dukemtmc-vidreid" / "DukeMTMC-VideoReID"
    for subset, tracklets in spec.items():
        for t, (pid, cam, n) in enumerate(tracklets, 1):
            names = [duke_video_name(pid, cam, first + f, old) for f in range(n)]
            write_frames(base / subset / f"{pid:04d}" / f"{t:04d}", reversed(names))
    return base


def write_ilids(root: Path, persons: int = 6, frames=(3, 4), splits=None) -> Path:
    """``root/ilids-vid/i-LIDS-VID/sequences/cam{1,2}/personNNN/camK_personNNN_fffff.png``;
    with ``splits`` (rows of 1-based person numbers, test half first) the split .mat too."""
    from scipy.io import savemat

    folder = root / "ilids-vid"
    for k, n in zip((1, 2), frames, strict=True):
        for p in range(1, persons + 1):
            names = [f"cam{k}_person{p:03d}_{100 + 7 * f:05d}.png" for f in range(n + p % 2)]
            person = folder / "i-LIDS-VID/sequences" / f"cam{k}" / f"person{p:03d}"
            write_frames(person, names, "PNG")
    if splits is not None:
        mat = folder / "train-test people splits" / "train_test_splits_ilidsvid.mat"
        mat.parent.mkdir(parents=True, exist_ok=True)
        savemat(mat, {"ls_set": np.array(splits, dtype=np.float64)})
    return folder


def write_prid(root: Path, frames: dict[str, dict[int, int]]) -> Path:
    """``root/prid2011/prid_2011/multi_shot/cam_{a,b}/person_NNNN/NNNN.png``; ``frames`` maps
    camera (a, b) to {person number: frame count}."""
    folder = root / "prid2011"
    for cam, persons in frames.items():
        for p, n in persons.items():
            names = [f"{f:04d}.png" for f in range(1, n + 1)]
            write_frames(
                folder / "prid_2011/multi_shot" / f"cam_{cam}" / f"person_{p:04d}", names, "PNG"
            )
    return folder
