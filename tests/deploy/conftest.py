"""A checkpoint to export, and its export, shared by the deploy tests."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from helpers import command_state_restored

from reidkit.cli.app import run
from reidkit.models import create_model
from reidkit.models.checkpoint import model_spec, save_checkpoint

SIZE = (64, 32)


@pytest.fixture(scope="session")
def checkpoint(synth_tiny, tmp_path_factory) -> Path:
    """A resnet18 run directory (weights/last.pt) trained, as its config says, on synth_tiny."""
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=16, image_size=SIZE)
    with torch.no_grad():  # BatchNorm statistics of real images, not the initial 0 and 1
        model.train()(torch.randn(8, 3, *SIZE))
    run = tmp_path_factory.mktemp("run")
    config = {"data": {"dataset": "synthreid", "root": str(synth_tiny), "height": 64, "width": 32}}
    save_checkpoint(
        run / "weights" / "last.pt",
        model.eval(),
        model_spec("resnet18", model, 16, image_size=list(SIZE)),
        config=config,
    )
    return run


@dataclass(frozen=True)
class Exported:
    """``reidkit export CHECKPOINT --out model.onnx --json`` with the defaults: the file
    (read-only: copy it to change it) and what the command printed."""

    path: Path
    result: dict


@pytest.fixture(scope="session")
def exported_by_cli(checkpoint, tmp_path_factory) -> Exported:
    """The checkpoint's export with the defaults, made once per session by the command line
    (each export traces the model, 3-10 s); tests that need such a file share this one."""
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    stdout, stderr = io.StringIO(), io.StringIO()
    with (
        command_state_restored(),
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        code = run(["export", str(checkpoint), "--out", str(out), "--json"])
    assert code == 0, stderr.getvalue()
    return Exported(out, json.loads(stdout.getvalue()))


@pytest.fixture(scope="session")
def exported(exported_by_cli) -> Path:
    """The checkpoint exported with the defaults (read-only: copy it to change it)."""
    return exported_by_cli.path
