"""Device resolution (reidkit.device) where the machine's files and torch disagree: WSL2
and some container runtimes show a GPU to torch without NVIDIA's /dev/nvidiactl."""

from __future__ import annotations

import pytest
import torch

from reidkit import device


def files(monkeypatch, *present: str) -> None:
    monkeypatch.setattr(device.os.path, "exists", lambda path: path in present)


def test_cuda_asked_for_asks_torch_whatever_the_files_say(monkeypatch):
    files(monkeypatch)  # no driver node at all
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.resolve_device("cuda") == "cuda"


@pytest.mark.parametrize("marker", ["/dev/dxg", "/dev/nvidia0", "/proc/driver/nvidia"])
def test_auto_finds_a_gpu_behind_other_markers(monkeypatch, marker):
    files(monkeypatch, marker)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.resolve_device("auto") == "cuda"


def test_auto_without_any_marker_is_the_cpu_without_asking_torch(monkeypatch):
    files(monkeypatch)

    def asked():
        raise AssertionError("torch was asked on a machine without a GPU marker")

    monkeypatch.setattr(torch.cuda, "is_available", asked)
    assert device.resolve_device("auto") == "cpu"
