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


@pytest.mark.parametrize(("variable", "seconds"), [(None, 6 * 3600.0), ("90", 90.0)])
def test_the_process_group_waits_longer_than_rank_0s_evaluation(monkeypatch, variable, seconds):
    import torch.distributed as dist

    joined = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    if variable is not None:
        monkeypatch.setenv("REIDKIT_DIST_TIMEOUT", variable)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: joined.update(kw))
    assert device.init_distributed("cpu") == "cpu"
    assert joined["timeout"].total_seconds() == seconds  # torch's default is 600


def test_a_bad_timeout_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("REIDKIT_DIST_TIMEOUT", "soon")
    with pytest.raises(device.UsageError, match="REIDKIT_DIST_TIMEOUT='soon' must be"):
        device.dist_timeout()


def test_deterministic_on_cuda_fixes_cublas_and_says_what_stays_loose(monkeypatch, caplog):
    calls = []
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda *a, **k: calls.append(k))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    device.make_deterministic("cpu")
    assert calls == [{"warn_only": False}] and "CUBLAS_WORKSPACE_CONFIG" not in device.os.environ
    device.make_deterministic("cuda:1")
    assert calls[-1] == {"warn_only": True}
    assert device.os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert torch.backends.cudnn.benchmark is False and torch.backends.cudnn.deterministic
    assert "two runs are close, not bit-identical" in caplog.text


def test_cudnn_autotuning_is_for_cuda(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    device.tune_convolutions("cpu")
    assert torch.backends.cudnn.benchmark is False
    device.tune_convolutions("cuda:0")
    assert torch.backends.cudnn.benchmark is True


def test_a_process_group_is_left_before_the_interpreter_exits(monkeypatch):
    """torchrun's processes destroy their group at exit (left to the interpreter's teardown,
    gloo aborted a finished run now and then: "terminate called without an active
    exception")."""
    import torch.distributed as dist

    registered, joined, left = [], [], []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(device.atexit, "register", registered.append)
    monkeypatch.setattr(dist, "is_initialized", lambda: bool(joined) and not left)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: joined.append(backend))
    monkeypatch.setattr(dist, "destroy_process_group", lambda: left.append(True))
    assert device.init_distributed("cpu") == "cpu" and joined == ["gloo"]
    assert registered == [device._leave_group]
    registered[0]()
    assert left == [True]
    registered[0]()  # once only: the group is gone
    assert left == [True]
