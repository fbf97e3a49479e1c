"""A checkpoint to export, and its export, shared by the deploy tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reidkit.deploy.export import ExportOptions, export_model
from reidkit.deploy.verify import verification_images
from reidkit.features.source import load_model_source
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


@pytest.fixture(scope="session")
def exported(checkpoint, synth_tiny, tmp_path_factory) -> Path:
    """The checkpoint exported with the defaults (read-only: copy it to change it)."""
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    source = load_model_source(checkpoint / "weights" / "last.pt")
    paths, _ = verification_images(dataset="synthreid", root=synth_tiny)
    export_model(source, out, ExportOptions(), verify_on=paths)
    return out
