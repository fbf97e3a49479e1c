"""The generator states a checkpoint keeps (reidkit.engine.rng), with CUDA faked: a CPU run
never asks the GPUs, and a resume restores the GPUs the machine has."""

from __future__ import annotations

import random

import numpy as np
import torch

from reidkit.engine.rng import rng_state, set_rng_state


def fake_gpus(monkeypatch, count: int) -> list:
    """count GPUs for torch.cuda; returns the (index, state) pairs set on them."""
    restored = []

    def no_cuda(*args, **kwargs):
        raise AssertionError("CUDA was initialised")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [torch.ones(4)] * count)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, i: restored.append((i, s)))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", no_cuda)
    return restored


def test_a_cpu_run_never_asks_the_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def no_cuda():
        raise AssertionError("CUDA was initialised by a CPU run")

    monkeypatch.setattr(torch.cuda, "get_rng_state_all", no_cuda)
    state = rng_state("cpu")
    assert state["cuda"] == []
    set_rng_state({**state, "cuda": [torch.ones(4)]}, "cpu")  # a GPU run resumed on the CPU


def test_a_resume_on_fewer_gpus_restores_those_it_has(monkeypatch, caplog):
    fake_gpus(monkeypatch, 2)
    state = rng_state("cuda:0")
    assert len(state["cuda"]) == 2
    saved = {**state, "cuda": [torch.full((4,), float(i)) for i in range(4)]}  # 4 at save
    restored = fake_gpus(monkeypatch, 1)
    set_rng_state(saved, "cuda:0")
    assert [(i, s.tolist()) for i, s in restored] == [(0, [0.0] * 4)]
    assert "holds the generator states of 4 GPUs and this machine has 1" in caplog.text


def test_the_cpu_generators_come_back(monkeypatch):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = rng_state("cpu")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(state, "cpu")
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
