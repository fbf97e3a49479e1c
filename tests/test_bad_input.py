"""Bad input to every command: the exit code, one ``error:`` line naming the culprit, no
traceback, and no output left behind.

The contract (docs/cli.md, reidkit/errors.py): exit 2 for usage and configuration errors
(bad option, unknown name, missing input, bad config), exit 1 for runtime and data failures
(corrupt data, unreadable files, I/O). stderr ends with exactly one ``error: ...`` line,
optionally followed by one ``hint: ...`` line; the error line names the file or the option
at fault; an error reidkit reports as "unexpected" was not handled on purpose. Whatever
the failing command would have written does not exist afterwards.

Each case in ``CASES`` builds its inputs in a fresh folder and returns the command line and
what must hold. Valid but unusual images (grayscale, RGBA, palette, ...) must be extracted;
unreadable ones are left out with ``--skip-bad``.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from helpers import FAST_TRAIN, market_name, run_reidkit, write_image
from PIL import Image

from reidkit.config import Config, dump_config
from reidkit.features.writer import write_features
from reidkit.models import create_model

IS_ROOT = os.geteuid() == 0

# A Market-style folder: four training identities on four cameras (enough for one PK batch
# of 4 x 4), two queries and a small gallery.
SPEC = {
    "bounding_box_train": [(pid, cam) for pid in (1, 2, 3, 4) for cam in (1, 2, 3, 4)],
    "query": [(5, 1), (6, 1)],
    "bounding_box_test": [(5, 2), (6, 2), (5, 3), (6, 3)],
}
# extraction with a tiny model on tiny images
EXTRACT = ("--model", "osnet_x0_25", "--height", "64", "--width", "32", "--device", "cpu")
# training as tests/engine/test_trainer.py runs it: tiny images, one epoch, CPU
TRAIN = [
    "--model",
    "osnet_x0_25",
    "--epochs",
    "1",
    *FAST_TRAIN,
]
# feature files: three queries on camera 0, each with two matches on cameras 1 and 2
QUERY_LABELS = ([1, 2, 3], [0, 0, 0])
GALLERY_LABELS = ([1, 2, 3, 1, 2, 3], [1, 1, 1, 2, 2, 2])


class Workspace:
    """Builds the inputs of one case under a fresh folder."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.locked: list[Path] = []  # read-only folders, made writable again afterwards

    def __truediv__(self, name: str) -> Path:
        return self.tmp / name

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def dataset(self, name: str = "ds") -> Path:
        """A Market-style folder (see SPEC)."""
        base = self.tmp / name
        for folder, items in SPEC.items():
            for i, (pid, cam) in enumerate(items):
                write_image(base / folder / market_name(pid, cam, i + 1), color=(20 * i, 60, 90))
        return base

    def dataset_with(self, filename: str, content: bytes | Callable[[Path], None]) -> Path:
        """The dataset with one more query file: given bytes, or written by a function."""
        base = self.dataset()
        path = base / "query" / filename
        if callable(content):
            content(path)
        else:
            path.write_bytes(content)
        return base

    def features(
        self,
        name: str,
        labels=QUERY_LABELS,
        *,
        dim: int = 8,
        seed: int = 0,
        nan_row: int | None = None,
    ) -> Path:
        pids, camids = labels
        feats = np.random.default_rng(seed).normal(size=(len(pids), dim)).astype(np.float32)
        if nan_row is not None:
            feats[nan_row, 3] = np.nan
        subset = "query" if labels is QUERY_LABELS else "gallery"
        paths = [
            market_name(p, c + 1, i + 1) for i, (p, c) in enumerate(zip(pids, camids, strict=True))
        ]
        return write_features(
            self.tmp / name,
            feats,
            np.array(pids),
            np.array(camids),
            paths=[f"{subset}/{p}" for p in paths],
            attrs={"root": str(self.tmp / "images"), "model": "test"},
        )

    def pair(self) -> tuple[Path, Path]:
        """A valid query and gallery feature file."""
        return self.features("query.h5"), self.features("gallery.h5", GALLERY_LABELS, seed=1)

    def h5(self, name: str, **datasets) -> Path:
        """An HDF5 file written with h5py directly, holding exactly ``datasets``."""
        path = self.tmp / name
        with h5py.File(path, "w") as f:
            for key, value in datasets.items():
                f.create_dataset(key, data=value)
        return path

    def truncated(self, source: Path, name: str) -> Path:
        """The first half of ``source``."""
        data = source.read_bytes()
        return self.write(name, data[: len(data) // 2])

    def unwritable(self, name: str) -> Path:
        """A path no output can be written to: inside a read-only folder, or (as root, who
        ignores permissions) under a regular file."""
        if IS_ROOT:
            blocker = self.write("blocker", "a file, not a folder\n")
            return blocker / name
        folder = self.tmp / "readonly"
        folder.mkdir()
        folder.chmod(0o555)
        self.locked.append(folder)
        return folder / name

    def run_dir(self, name: str = "run") -> Path:
        """A folder that looks like a run: config.yaml, and weights/ without last.pt."""
        run = self.tmp / name
        (run / "weights").mkdir(parents=True)
        (run / "config.yaml").write_text(dump_config(Config()), encoding="utf-8")
        return run


# -- images -----------------------------------------------------------------------------


def noisy(size=(64, 128), seed=0) -> Image.Image:
    """A noisy RGB image (noise makes a JPEG large enough that half of it ends in the scan)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def truncated_jpeg(path: Path) -> None:
    noisy().save(path, "JPEG", quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def corrupt_bytes(n: int = 2000) -> bytes:
    return np.random.default_rng(7).bytes(n)


# The unreadable images, each in the query folder next to two good ones.
BAD_IMAGES = {
    "corrupt": ("0009_c1s1_000099_01.jpg", corrupt_bytes()),
    "empty": ("0009_c1s1_000099_01.jpg", b""),
    "truncated": ("0009_c1s1_000099_01.jpg", truncated_jpeg),
}


def _save(mode: str, fmt: str) -> Callable[[Path], None]:
    def save(path: Path) -> None:
        image = noisy().convert(mode)
        if mode == "RGBA":  # a real alpha channel, not a constant one
            image.putalpha(noisy(seed=1).convert("L"))
        image.save(path, fmt)

    return save


def _gray16(path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 65535, (128, 64), dtype=np.uint16)
    Image.fromarray(pixels).save(path, "PNG")


# Valid images of unusual kinds: extraction must take them like any other.
ODD_IMAGES = {
    "grayscale-jpeg": ("0009_c1s1_000099_01.jpg", _save("L", "JPEG")),
    "grayscale-png": ("0009_c1s1_000099_01.png", _save("L", "PNG")),
    "rgba-png": ("0009_c1s1_000099_01.png", _save("RGBA", "PNG")),
    "palette-png": ("0009_c1s1_000099_01.png", _save("P", "PNG")),
    "cmyk-jpeg": ("0009_c1s1_000099_01.jpg", _save("CMYK", "JPEG")),
    "16-bit-grayscale-png": ("0009_c1s1_000099_01.png", _gray16),
}


# -- the cases ----------------------------------------------------------------------------


@dataclass
class Bad:
    """A failing command line and what must hold after it.

    Attributes:
        argv: the command line after ``reidkit``.
        code: the expected exit code.
        names: what the error line must contain (each a string, or a tuple of alternatives).
        absent: paths that must not exist afterwards (the outputs it would have written).
        kept: paths that existed before and must still exist afterwards.
    """

    argv: list
    code: int
    names: tuple = ()
    absent: tuple[Path, ...] = ()
    kept: tuple[Path, ...] = ()


CASES: dict[str, Callable[[Workspace], Bad]] = {}


def case(case_id: str):
    def register(build: Callable[[Workspace], Bad]) -> Callable[[Workspace], Bad]:
        assert case_id not in CASES, case_id
        CASES[case_id] = build
        return build

    return register


def extract_outputs(out: Path, dataset: str = "ds") -> tuple[Path, Path]:
    return out / f"{dataset}-query.h5", out / f"{dataset}-gallery.h5"


# extract: images -------------------------------------------------------------------------


def _bad_image_case(kind: str) -> Callable[[Workspace], Bad]:
    def build(w: Workspace) -> Bad:
        filename, content = BAD_IMAGES[kind]
        base = w.dataset_with(filename, content)
        out = w / "feats"
        return Bad(
            ["extract", *EXTRACT, "--dataset", base, "--out", out],
            1,
            (str(base / "query" / filename),),
            extract_outputs(out),
        )

    return build


for _kind in BAD_IMAGES:
    case(f"extract-{_kind}-image")(_bad_image_case(_kind))


@case("extract-empty-query-folder")
def _(w):
    base = w.dataset()
    for image in (base / "query").iterdir():
        image.unlink()
    out = w / "feats"
    return Bad(["extract", *EXTRACT, "--dataset", base, "--out", out], 2, ("query",), (out,))


@case("extract-empty-query-folder-after-gallery")
def _(w):
    # the empty subset is known before any work: no gallery file either
    base = w.dataset()
    for image in (base / "query").iterdir():
        image.unlink()
    out = w / "feats"
    argv = ["extract", *EXTRACT, "--dataset", base, "--subsets", "gallery,query", "--out", out]
    return Bad(argv, 2, ("query",), (out,))


# extract: model, checkpoint, dataset, options -------------------------------------------------


@case("extract-unknown-model")
def _(w):
    out = w / "feats"
    argv = ["extract", "--model", "osnet_x9", "--dataset", w.dataset(), "--out", out]
    return Bad(argv, 2, ("osnet_x9",), (out,))


@case("extract-missing-checkpoint")
def _(w):
    ckpt, out = w / "missing.pt", w / "feats"
    return Bad(["extract", ckpt, "--dataset", w.dataset(), "--out", out], 2, (str(ckpt),), (out,))


@case("extract-foreign-checkpoint")
def _(w):
    ckpt, out = w / "foreign.pt", w / "feats"
    torch.save({"foo": 1}, ckpt)
    return Bad(["extract", ckpt, "--dataset", w.dataset(), "--out", out], 1, (str(ckpt),), (out,))


@case("extract-text-file-as-checkpoint")
def _(w):
    ckpt, out = w.write("model.pt", "not a checkpoint\n"), w / "feats"
    return Bad(["extract", ckpt, "--dataset", w.dataset(), "--out", out], 1, (str(ckpt),), (out,))


@case("extract-missing-weights")
def _(w):
    weights, out = w / "missing.pth", w / "feats"
    argv = ["extract", *EXTRACT, "--weights", weights, "--dataset", w.dataset(), "--out", out]
    return Bad(argv, 2, (str(weights),), (out,))


@case("extract-unknown-dataset")
def _(w):
    out = w / "feats"
    argv = ["extract", *EXTRACT, "--dataset", "market1502", "--root", w.tmp, "--out", out]
    return Bad(argv, 2, ("market1502",), (out,))


@case("extract-missing-dataset-folder")
def _(w):
    folder, out = w / "nowhere" / "ds", w / "feats"
    return Bad(["extract", *EXTRACT, "--dataset", folder, "--out", out], 2, (str(folder),), (out,))


@case("extract-unknown-subset")
def _(w):
    out = w / "feats"
    argv = ["extract", *EXTRACT, "--dataset", w.dataset(), "--subsets", "query,tset", "--out", out]
    return Bad(argv, 2, ("tset",), (out,))


@case("extract-unknown-storage")
def _(w):
    out = w / "feats"
    argv = ["extract", *EXTRACT, "--dataset", w.dataset(), "--storage", "float64", "--out", out]
    return Bad(argv, 2, ("float64",), (out,))


@case("extract-unknown-amp")
def _(w):
    out = w / "feats"
    argv = ["extract", *EXTRACT, "--dataset", w.dataset(), "--amp", "fp8", "--out", out]
    return Bad(argv, 2, ("fp8",), (out,))


@case("extract-batch-size-zero")
def _(w):
    out = w / "feats"
    argv = ["extract", *EXTRACT, "--dataset", w.dataset(), "--batch-size", "0", "--out", out]
    return Bad(argv, 2, ("--batch-size",), (out,))


@case("extract-images-folder-without-images")
def _(w):
    folder, out = w / "crops", w / "feats"
    w.write("crops/readme.txt", "no images here\n")
    return Bad(["extract", *EXTRACT, "--images", folder, "--out", out], 2, (str(folder),), (out,))


@case("extract-unwritable-out")
def _(w):
    out = w.unwritable("feats")
    argv = ["extract", *EXTRACT, "--dataset", w.dataset(), "--out", out]
    return Bad(argv, 1, ((str(out), "--out"),))


# evaluate: feature files -------------------------------------------------------------------


def _evaluate_query_case(make_query: Callable[[Workspace], Path], code: int = 1):
    """evaluate BAD_QUERY GOOD_GALLERY: the error names the query file."""

    def build(w: Workspace) -> Bad:
        _, gallery = w.pair()
        query = make_query(w)
        return Bad(["evaluate", query, gallery], code, (str(query),))

    return build


BAD_FEATURE_FILES: dict[str, tuple[Callable[[Workspace], Path], int]] = {
    "no-features-dataset": (
        lambda w: w.h5("query.h5", feats=np.zeros((3, 8), np.float32), pids=[1, 2, 3]),
        1,
    ),
    "truncated": (lambda w: w.truncated(w.features("whole.h5"), "query.h5"), 1),
    "text-file": (lambda w: w.write("query.h5", "pid,camid\n1,0\n"), 1),
    "nan-features": (lambda w: w.features("query.h5", nan_row=1), 1),
    "zero-rows": (
        lambda w: w.h5(
            "query.h5",
            features=np.zeros((0, 8), np.float32),
            pids=np.zeros(0, np.int64),
            camids=np.zeros(0, np.int64),
        ),
        1,
    ),
    "rows-differ": (
        lambda w: w.h5(
            "query.h5", features=np.zeros((3, 8), np.float32), pids=[1, 2], camids=[0, 0, 0]
        ),
        1,
    ),
    "one-dimensional-features": (
        lambda w: w.h5(
            "query.h5", features=np.zeros(3, np.float32), pids=[1, 2, 3], camids=[0] * 3
        ),
        1,
    ),
    "empty-file": (lambda w: w.write("query.h5", b""), 1),
    "missing": (lambda w: w / "missing.h5", 2),
}
for _name, (_make, _code) in BAD_FEATURE_FILES.items():
    case(f"evaluate-{_name}")(_evaluate_query_case(_make, _code))


@case("evaluate-incomplete-file")
def _(w):
    _, gallery = w.pair()
    query = w.features("query.h5")
    with h5py.File(query, "a") as f:
        f.attrs["complete"] = False
    return Bad(["evaluate", query, gallery], 1, (str(query),))


@case("evaluate-dimension-mismatch")
def _(w):
    query = w.features("query.h5", dim=8)
    gallery = w.features("gallery.h5", GALLERY_LABELS, dim=16)
    return Bad(["evaluate", query, gallery], 2, (str(query), str(gallery)))


@case("evaluate-folder-as-query")
def _(w):
    _, gallery = w.pair()
    folder = w / "folder.h5"
    folder.mkdir()
    return Bad(["evaluate", folder, gallery], 2, (("QUERY", str(folder)),))


@case("evaluate-unknown-metric")
def _(w):
    return Bad(["evaluate", *w.pair(), "--metric", "manhattan"], 2, ("manhattan",))


@case("evaluate-unknown-protocol")
def _(w):
    return Bad(["evaluate", *w.pair(), "--protocol", "duke"], 2, ("duke",))


@case("evaluate-bad-ranks")
def _(w):
    return Bad(["evaluate", *w.pair(), "--ranks", "1,five"], 2, ("--ranks",))


@case("evaluate-rerank-k2-above-k1")
def _(w):
    return Bad(["evaluate", *w.pair(), "--rerank", "--k1", "3", "--k2", "9"], 2, ("--k2",))


@case("evaluate-unknown-device")
def _(w):
    return Bad(["evaluate", *w.pair(), "--device", "tpu"], 2, ("tpu",))


@case("evaluate-every-query-skipped")
def _(w):
    # the only matches are on the queries' own camera: the market protocol drops them all
    query = w.features("query.h5")
    gallery = w.features("gallery.h5", ([1, 2, 3], [0, 0, 0]), seed=1)
    return Bad(["evaluate", query, gallery], 1, ("protocol",))


@case("evaluate-unwritable-per-query")
def _(w):
    csv = w.unwritable("per_query.csv")
    return Bad(["evaluate", *w.pair(), "--per-query", csv], 1, ((str(csv), "--per-query"),), (csv,))


# visrank -------------------------------------------------------------------------------------


@case("visrank-nan-features")
def _(w):
    _, gallery = w.pair()
    query, out = w.features("nan.h5", nan_row=0), w / "vis"
    return Bad(["visrank", query, gallery, "--out", out], 1, (str(query),), (out,))


@case("visrank-truncated-gallery")
def _(w):
    query, whole = w.pair()
    gallery, out = w.truncated(whole, "cut.h5"), w / "vis"
    return Bad(["visrank", query, gallery, "--out", out], 1, (str(gallery),), (out,))


@case("visrank-missing-gallery")
def _(w):
    query, _ = w.pair()
    gallery, out = w / "missing.h5", w / "vis"
    return Bad(["visrank", query, gallery, "--out", out], 2, (str(gallery),), (out,))


@case("visrank-queries-bad-line")
def _(w):
    listing, out = w.write("queries.txt", "0\nnot-a-query.jpg\n"), w / "vis"
    argv = ["visrank", *w.pair(), "--out", out, "--queries", listing]
    return Bad(argv, 2, (f"{listing}:2",), (out,))


@case("visrank-queries-index-out-of-range")
def _(w):
    listing, out = w.write("queries.txt", "# worst ones\n1\n3\n"), w / "vis"
    argv = ["visrank", *w.pair(), "--out", out, "--queries", listing]
    return Bad(argv, 2, (f"{listing}:3",), (out,))


@case("visrank-queries-missing-file")
def _(w):
    listing, out = w / "queries.txt", w / "vis"
    argv = ["visrank", *w.pair(), "--out", out, "--queries", listing]
    return Bad(argv, 2, (str(listing),), (out,))


@case("visrank-queries-empty-file")
def _(w):
    listing, out = w.write("queries.txt", "\n# nothing\n"), w / "vis"
    argv = ["visrank", *w.pair(), "--out", out, "--queries", listing]
    return Bad(argv, 2, (str(listing),), (out,))


@case("visrank-out-is-a-file")
def _(w):
    out = w.write("vis", "a file\n")
    return Bad(["visrank", *w.pair(), "--out", out], 2, (str(out),))


@case("visrank-out-is-a-foreign-folder")
def _(w):
    out, photo = w / "photos", w.write("photos/holiday.jpg", b"keep me")
    argv = ["visrank", *w.pair(), "--out", out]
    return Bad(argv, 2, (str(out),), (w / ".photos.partial",), kept=(photo,))


@case("visrank-unwritable-out")
def _(w):
    out = w.unwritable("vis")
    return Bad(["visrank", *w.pair(), "--out", out, "--no-images"], 1, ((str(out), "--out"),))


@case("visrank-unknown-order")
def _(w):
    out = w / "vis"
    return Bad(["visrank", *w.pair(), "--out", out, "--order", "worse"], 2, ("worse",), (out,))


@case("visrank-unknown-image-format")
def _(w):
    out = w / "vis"
    argv = ["visrank", *w.pair(), "--out", out, "--image-format", "gif"]
    return Bad(argv, 2, ("gif",), (out,))


@case("visrank-topk-zero")
def _(w):
    out = w / "vis"
    return Bad(["visrank", *w.pair(), "--out", out, "--topk", "0"], 2, ("--topk",), (out,))


# compare -------------------------------------------------------------------------------------

RESULT = {"mAP": 0.5, "mINP": 0.2, "cmc": {"1": 0.6, "5": 0.9}}


@case("compare-not-json")
def _(w):
    good, bad = w.write("a.json", json.dumps(RESULT)), w.write("b.json", "mAP: 0.5\n")
    return Bad(["compare", good, bad], 1, (str(bad),))


@case("compare-json-without-metrics")
def _(w):
    good, bad = w.write("a.json", json.dumps(RESULT)), w.write("b.json", '{"loss": 0.1}')
    return Bad(["compare", good, bad], 1, (str(bad),))


@case("compare-missing-file")
def _(w):
    good, missing = w.write("a.json", json.dumps(RESULT)), w / "b.json"
    return Bad(["compare", good, missing], 2, (str(missing),))


@case("compare-label-count")
def _(w):
    a, b = w.write("a.json", json.dumps(RESULT)), w.write("b.json", json.dumps(RESULT))
    return Bad(["compare", a, b, "--label", "only-one"], 2, ("--label",))


@case("compare-unwritable-plot")
def _(w):
    a, plot = w.write("a.json", json.dumps(RESULT)), w.unwritable("cmc.png")
    return Bad(["compare", a, "--plot", plot], 1, ((str(plot), "--plot"),), (plot,))


# datasets ------------------------------------------------------------------------------------


@case("datasets-list-root-is-a-file")
def _(w):
    return Bad(["datasets", "list", "--root", w.write("data", "a file\n")], 2, ("--root",))


@case("datasets-summary-unknown-name")
def _(w):
    return Bad(["datasets", "summary", "market1502", "--root", w.tmp], 2, ("market1502",))


@case("datasets-summary-missing-path")
def _(w):
    folder = w / "nowhere" / "ds"
    return Bad(["datasets", "summary", folder], 2, (str(folder),))


@case("datasets-summary-folder-without-subsets")
def _(w):
    folder = w / "holiday"
    write_image(folder / "beach.jpg")
    return Bad(["datasets", "summary", folder], 2, (str(folder),))


MANIFEST_HEAD = "path,pid,camid,subset\nq/0001.jpg,1,0,query\n"


@case("datasets-summary-manifest-bad-pid")
def _(w):
    manifest = w.write("m.csv", MANIFEST_HEAD + "g/0001.jpg,one,1,gallery\n")
    return Bad(["datasets", "summary", manifest], 2, (f"{manifest}:3",))


@case("datasets-summary-manifest-missing-column")
def _(w):
    manifest = w.write("m.csv", MANIFEST_HEAD + "g/0001.jpg,1,gallery\n")
    return Bad(["datasets", "summary", manifest], 2, (f"{manifest}:3",))


@case("datasets-summary-manifest-unknown-subset")
def _(w):
    manifest = w.write("m.csv", MANIFEST_HEAD + "g/0001.jpg,1,1,galery\n")
    return Bad(["datasets", "summary", manifest], 2, (f"{manifest}:3",))


@case("datasets-summary-manifest-without-rows")
def _(w):
    manifest = w.write("m.csv", "path,pid,camid,subset\n# nothing yet\n")
    return Bad(["datasets", "summary", manifest], 2, (str(manifest),))


@case("datasets-download-unknown-name")
def _(w):
    root = w / "data"
    return Bad(["datasets", "download", "market1502", "--root", root], 2, ("market1502",), (root,))


@case("datasets-download-missing-archive")
def _(w):
    root, archive = w / "data", w / "Market-1501-v15.09.15.zip"
    argv = ["datasets", "download", "market1501", "--root", root, "--archive", archive]
    return Bad(argv, 2, (str(archive),), (root / "market1501",))


@case("datasets-download-corrupt-archive")
def _(w):
    root = w / "data"
    archive = w.write("Market-1501-v15.09.15.zip", b"PK\x03\x04" + corrupt_bytes())
    argv = ["datasets", "download", "market1501", "--root", root, "--archive", archive]
    absent = (root / "market1501", root / ".market1501.partial")
    return Bad(argv, 1, (str(archive),), absent)


@case("datasets-combine-unknown-dataset")
def _(w):
    out = w / "combined.csv"
    argv = ["datasets", "combine", w.dataset(), "market1502", "--root", w.tmp, "--out", out]
    return Bad(argv, 2, ("market1502",), (out,))


@case("datasets-combine-same-dataset-twice")
def _(w):
    base, out = w.dataset(), w / "combined.csv"
    return Bad(["datasets", "combine", base, base, "--out", out], 2, ("ds",), (out,))


@case("datasets-combine-unwritable-out")
def _(w):
    out = w.unwritable("combined.csv")
    argv = ["datasets", "combine", w.dataset(), "--out", out]
    return Bad(argv, 1, ((str(out), "--out"),), (out,))


@case("datasets-synth-unknown-preset")
def _(w):
    root = w / "data"
    argv = ["datasets", "synth", "--root", root, "--preset", "huge"]
    return Bad(argv, 2, ("huge",), (root / "synthreid",))


@case("datasets-synth-unwritable-root")
def _(w):
    root = w.unwritable("data")
    return Bad(
        ["datasets", "synth", "--root", root, "--preset", "tiny"], 1, ((str(root), "--root"),)
    )


# train ---------------------------------------------------------------------------------------


def train_case(w: Workspace, *extra, code: int = 2, names=()) -> Bad:
    """``train`` on the workspace's dataset into w/run, which must not be left behind."""
    run = w / "run"
    argv = ["train", "--dataset", w.dataset(), "--run", run, *TRAIN, *extra]
    return Bad(argv, code, tuple(names), (run,))


@case("train-unknown-model")
def _(w):
    return train_case(w, "--model", "resnet5O", names=["resnet5O"])


@case("train-option-the-model-does-not-have")
def _(w):
    return train_case(w, "model.bnneck=true", names=["osnet_x0_25", "bnneck"])


@case("train-pretrained-file-missing")
def _(w):
    missing = w / "imagenet.pth"
    return train_case(w, f"model.pretrained={missing}", names=[str(missing)])


@case("train-pretrained-weights-of-another-width")
def _(w):
    weights = w / "x1_0.pth"
    torch.save(create_model("osnet_x1_0", 4).state_dict(), weights)
    return train_case(w, f"model.pretrained={weights}", code=1, names=[str(weights), "unloaded"])


@case("train-unknown-dataset")
def _(w):
    run = w / "run"
    argv = ["train", *TRAIN, "--dataset", "market1502", "--root", w.tmp, "--run", run]
    return Bad(argv, 2, ("market1502",), (run,))


@case("train-missing-config")
def _(w):
    config = w / "missing.yaml"
    return train_case(w, "--config", config, names=[str(config)])


@case("train-malformed-yaml")
def _(w):
    config = w.write("cfg.yaml", "optim:\n  lr: 0.1\ndata: [height: 64\n")
    return train_case(w, "--config", config, names=[str(config)])


@case("train-config-not-a-mapping")
def _(w):
    config = w.write("cfg.yaml", "- optim.lr=0.1\n")
    return train_case(w, "--config", config, names=[str(config)])


@case("train-config-file-unknown-key")
def _(w):
    config = w.write("cfg.yaml", "optim:\n  lrr: 0.1\n")
    return train_case(w, "--config", config, names=["optim.lrr"])


@case("train-unknown-override-key")
def _(w):
    return train_case(w, "optim.lrr=1", names=["optim.lrr"])


@case("train-override-wrong-type")
def _(w):
    return train_case(w, "optim.lr=fast", names=["optim.lr", "fast"])


@case("train-override-without-value")
def _(w):
    return train_case(w, "optim.lr", names=["optim.lr"])


@case("train-batch-size-zero")
def _(w):
    return train_case(w, "--batch-size", "0", names=["--batch-size"])


@case("train-epochs-zero")
def _(w):
    return train_case(w, "--epochs", "0", names=["--epochs"])


@case("train-negative-height")
def _(w):
    return train_case(w, "data.height=-1", names=["data.height"])


@case("train-override-batch-size-zero")
def _(w):
    # a batch of zero identities could loop forever: see TIME_LIMIT
    return train_case(w, "data.batch_size=0", names=["data.batch_size"])


@case("train-batch-size-not-multiple-of-instances")
def _(w):
    return train_case(w, "data.num_instances=3", names=[("data.num_instances", "data.batch_size")])


@case("train-unknown-optimizer")
def _(w):
    return train_case(w, "optim.name=adamw", names=["adamw"])


@case("train-unknown-schedule")
def _(w):
    return train_case(w, "schedule.name=linear", names=["linear"])


@case("train-unknown-sampler")
def _(w):
    return train_case(w, "data.sampler=balanced", names=["balanced"])


@case("train-unknown-amp")
def _(w):
    return train_case(w, "train.amp=fp8", names=["fp8"])


@case("train-unknown-device")
def _(w):
    return train_case(w, "train.device=tpu", names=["tpu"])


@case("train-existing-run")
def _(w):
    run, notes = w / "run", w.write("run/notes.txt", "an earlier run\n")
    argv = ["train", "--dataset", w.dataset(), "--run", run, *TRAIN]
    return Bad(argv, 2, (str(run),), (run / "config.yaml",), kept=(notes,))


@case("train-unwritable-run")
def _(w):
    run = w.unwritable("run")
    argv = ["train", "--dataset", w.dataset(), "--run", run, *TRAIN]
    return Bad(argv, 1, ((str(run), "--run"),))


# resume --------------------------------------------------------------------------------------


@case("resume-folder-that-is-not-a-run")
def _(w):
    folder = w / "photos"
    w.write("photos/holiday.jpg", b"keep me")
    return Bad(["resume", folder], 2, (str(folder),))


@case("resume-missing-folder")
def _(w):
    return Bad(["resume", w / "nowhere"], 2, (str(w / "nowhere"),))


@case("resume-run-with-bad-config")
def _(w):
    # (a run without a checkpoint is resumed by starting it over: tests/reliability)
    run = w.run_dir()
    config = (run / "config.yaml").read_text(encoding="utf-8")
    assert "height: 256" in config
    (run / "config.yaml").write_text(config.replace("height: 256", "height: -1"))
    return Bad(["resume", run], 2, ("data.height",))


@case("resume-text-file-as-checkpoint")
def _(w):
    run = w.run_dir()
    last = w.write("run/weights/last.pt", "not a checkpoint\n")
    return Bad(["resume", run], 1, (str(last),))


@case("resume-foreign-checkpoint")
def _(w):
    run = w.run_dir()
    torch.save({"foo": 1}, run / "weights" / "last.pt")
    return Bad(["resume", run], 1, (str(run / "weights" / "last.pt"),))


@case("resume-max-epoch-zero")
def _(w):
    return Bad(["resume", w.run_dir(), "--max-epoch", "0"], 2, ("--max-epoch",))


# models, demo, completion, options -------------------------------------------------------------


@case("demo-epochs-zero")
def _(w):
    out = w / "demo"
    return Bad(["demo", "--out", out, "--epochs", "0"], 2, ("--epochs",), (out,))


@case("demo-unwritable-out")
def _(w):
    out = w.unwritable("demo")
    return Bad(["demo", "--out", out, "--epochs", "1"], 1, ((str(out), "--out"),))


@case("completion-unknown-shell")
def _(w):
    return Bad(["completion", "tcsh"], 2, ("tcsh",))


@case("evaluate-unknown-option")
def _(w):
    return Bad(["evaluate", *w.pair(), "--metrc", "cosine"], 2, ("--metrc",))


# -- checking -----------------------------------------------------------------------------------


def problems_with(bad: Bad, code: int, out: str, err: str) -> list[str]:
    """Every way the failure differs from the contract (empty: it holds)."""
    found = []
    if code != bad.code:
        found.append(f"exit code {code}, expected {bad.code}")
    if "Traceback" in err:
        found.append("a traceback on stderr")
    if out:
        found.append(f"stdout is not empty: {out[:300]!r}")
    lines = err.splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
    if len(errors) != 1:
        found.append(f"{len(errors)} lines start with 'error:', expected exactly one")
    else:
        first = errors[0]
        after = lines[first + 1 :]
        if len(after) > 1 or (after and not after[0].startswith("hint:")):
            found.append(f"after the error line, expected at most one 'hint:' line: {after!r}")
        line = lines[first]
        if line.startswith("error: unexpected "):
            found.append("reidkit did not handle the error (it reports an unexpected exception)")
        for name in bad.names:
            choices = (name,) if isinstance(name, str) else name
            if not any(str(choice) in line for choice in choices):
                found.append(f"the error line does not name {' or '.join(map(repr, choices))}")
    for path in bad.absent:
        if path.exists():
            inside = sorted(p.name for p in path.iterdir()) if path.is_dir() else None
            found.append(f"{path} was left behind" + (f" holding {inside}" if inside else ""))
    for path in bad.kept:
        if not path.exists():
            found.append(f"{path} was removed")
    return found


@pytest.fixture
def w(tmp_path):
    workspace = Workspace(tmp_path)
    yield workspace
    for folder in workspace.locked:
        folder.chmod(0o755)


TIME_LIMIT = 10  # seconds; every case fails within 3 s when it fails as it should
SUBPROCESS_TIMEOUT = 30


class TimeLimit(BaseException):
    """Raised in a command that runs past TIME_LIMIT (not an Exception: reidkit's error
    boundary must not turn it into an error message)."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(signum, frame):
        raise TimeLimit

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("case_id", list(CASES))
def test_bad_input(case_id, w, cli, capsys):
    bad = CASES[case_id](w)
    argv = [str(a) for a in bad.argv]
    command = shlex.join(["reidkit", *argv])
    try:
        with time_limit(TIME_LIMIT):
            code, out, err = cli(*argv)
    except TimeLimit:
        code = None
    if code is None:
        err = capsys.readouterr().err
        pytest.fail(f"still running after {TIME_LIMIT} s: {command}\nstderr:\n{err}", False)
    problems = problems_with(bad, code, out, err)
    assert not problems, "\n".join(
        [*problems, f"command: {command}", f"exit code: {code}", "stderr:", err]
    )


@pytest.mark.parametrize(
    "case_id", ["extract-corrupt-image", "evaluate-truncated", "train-malformed-yaml"]
)
def test_same_in_a_separate_process(case_id, w):
    """A real process prints the same single error line, and nothing else goes to stderr
    behind Python's back (HDF5's or torch's own diagnostics, warnings)."""
    bad = CASES[case_id](w)
    done = run_reidkit(*bad.argv, timeout=SUBPROCESS_TIMEOUT)
    problems = problems_with(bad, done.returncode, done.stdout, done.stderr)
    assert not problems, "\n".join([*problems, "stderr:", done.stderr])


# -- valid but unusual images, and --skip-bad --------------------------------------------------


def _extract_query(w: Workspace, base: Path, cli, *extra):
    out = w / "feats"
    argv = ["extract", *EXTRACT, "--dataset", base, "--subsets", "query", "--out", out, "--json"]
    code, stdout, err = cli(*argv, *extra)
    return code, stdout, err, out


@pytest.mark.parametrize("kind", list(ODD_IMAGES))
def test_valid_unusual_image_is_extracted(kind, w, cli):
    filename, make = ODD_IMAGES[kind]
    base = w.dataset_with(filename, make)
    code, out, err, _ = _extract_query(w, base, cli)
    assert code == 0, err
    assert "Traceback" not in err and "error:" not in err
    (result,) = json.loads(out)["files"]
    assert result["rows"] == len(SPEC["query"]) + 1 and result["skipped"] == []
    with h5py.File(result["file"]) as f:
        assert np.isfinite(f["features"][()]).all()
        assert f"query/{filename}" in [p.decode() for p in f["paths"][()]]


@pytest.mark.parametrize("kind", list(BAD_IMAGES))
def test_skip_bad_leaves_the_unreadable_image_out_and_reports_it(kind, w, cli):
    filename, content = BAD_IMAGES[kind]
    base = w.dataset_with(filename, content)
    bad = str(base / "query" / filename)
    code, out, err, _ = _extract_query(w, base, cli, "--skip-bad")
    assert code == 0, err
    assert "Traceback" not in err and "error:" not in err
    (result,) = json.loads(out)["files"]
    assert result["rows"] == len(SPEC["query"]) and result["skipped"] == [bad]
    assert bad in err  # the warning names it
    with h5py.File(result["file"]) as f:
        assert json.loads(f.attrs["skipped"]) == [f"query/{filename}"]
