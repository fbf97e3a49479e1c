"""The trainer's parts, in process on the tiny preset: what the options do to the step,
frozen layers, the augmentation stream of each process, the checkpoint's RNG states."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import FAST_TRAIN, log_item_processes

from reidkit.config import Config, apply_overrides, check_config
from reidkit.data import load_dataset
from reidkit.engine.loaders import train_loader
from reidkit.engine.trainer import Trainer
from reidkit.errors import ReidkitError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from reidkit.data.synth import generate

    root = tmp_path_factory.mktemp("units")
    generate(root, "tiny", seed=0, workers=2)
    return root


def make_trainer(tiny, tmp_path, *overrides, model="osnet_x0_25", rank=None, monkeypatch=None):
    settings = [*FAST_TRAIN, f"data.root={tiny}", f"model.name={model}", *overrides]
    config = check_config(apply_overrides(Config(), settings))
    if rank is not None:  # this process plays rank `rank` of a one-process world
        monkeypatch.setattr("reidkit.device.distributed_rank", lambda: (rank, 1))
    (tmp_path / "run").mkdir(exist_ok=True)
    return Trainer(config, tmp_path / "run")


def first_batch(trainer):
    _, loader = train_loader(trainer.dataset.train, trainer.config, rank=0, world=1, device="cpu")
    return next(iter(loader))


def test_bf16_and_channels_last_reach_the_step(tiny, tmp_path):
    trainer = make_trainer(tiny, tmp_path, "train.amp=bf16", "train.channels_last=true")
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    seen = {}

    def look(module, inputs, output):
        seen["input_channels_last"] = inputs[0].is_contiguous(memory_format=torch.channels_last)
        seen["output_dtype"] = output.dtype

    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    conv.register_forward_hook(look)
    trainer.model.train()
    images, labels = first_batch(trainer)
    trainer._step(images, labels)
    assert seen == {"input_channels_last": True, "output_dtype": torch.bfloat16}
    plain = make_trainer(tiny, tmp_path)
    conv = next(m for m in plain.model.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(look)
    plain._step(*first_batch(plain))
    assert seen == {"input_channels_last": False, "output_dtype": torch.float32}


def test_frozen_base_keeps_its_batchnorm_statistics(tiny, tmp_path):
    trainer = make_trainer(tiny, tmp_path, "train.freeze_base_epochs=1", model="resnet18")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer._freeze(True)
    for _ in range(2):
        trainer._step(*first_batch(trainer))
    after = trainer.model.state_dict()
    base = [k for k in before if not k.startswith(("bnneck.", "classifier."))]
    assert any(k.endswith("running_mean") for k in base)
    for key in base:
        assert torch.equal(before[key], after[key]), key  # weights and statistics alike
    assert not torch.equal(before["bnneck.running_mean"], after["bnneck.running_mean"])
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])
    trainer._freeze(False)
    assert trainer.model.layer1[0].bn1.training and trainer.model.conv1.weight.requires_grad
    trainer._step(*first_batch(trainer))
    assert not torch.equal(before["layer1.0.bn1.running_mean"], after["layer1.0.bn1.running_mean"])


def test_each_process_draws_its_own_augmentations(tiny, tmp_path, monkeypatch):
    """Same weights, same batch of images, different flips/crops on rank 0 and rank 1;
    the same rank twice draws the same ones."""
    batches, weights = [], []
    for rank in (0, 1, 0):
        trainer = make_trainer(tiny, tmp_path, rank=rank, monkeypatch=monkeypatch)
        images, labels = first_batch(trainer)
        batches.append((images, labels))
        weights.append(trainer.model.conv1[0].weight.clone())
    assert torch.equal(weights[0], weights[1])
    assert torch.equal(batches[0][1], batches[1][1])  # the same images
    assert not torch.equal(batches[0][0], batches[1][0])  # augmented differently
    assert torch.equal(batches[0][0], batches[2][0])


def test_checkpoint_restores_numpy_python_and_torch_generators(tiny, tmp_path):
    import random

    trainer = make_trainer(tiny, tmp_path)
    state = trainer.state()
    expected = (np.random.rand(3), random.random(), torch.rand(3))
    np.random.seed(123), random.seed(123), torch.manual_seed(123)
    trainer.load({**state, "state_dict": trainer.model.state_dict()})
    got = (np.random.rand(3), random.random(), torch.rand(3))
    assert np.array_equal(expected[0], got[0]) and expected[1] == got[1]
    assert torch.equal(expected[2], got[2])


class HostReads:
    """The reads of a device value by reidkit's own code (each one a wait for the GPU):
    scalar reads, boolean-mask indexing, and ``tolist``. torch's own (the optimiser's step
    counters live on the CPU; the grad scaler's check is its own) are not counted."""

    SCALAR_OPS = ("aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select")

    def __init__(self, monkeypatch) -> None:
        import traceback

        from torch.utils._python_dispatch import TorchDispatchMode

        self.reads: list[str] = []
        reads = self.reads

        plumbing = ("/torch/_tensor.py", "/torch/_ops.py", "/torch/_compile.py")
        plumbing_dirs = ("/torch/_dynamo/", "/torch/utils/_python_dispatch")

        def caller() -> str | None:
            """The code that asked for the value, if it is reidkit's."""
            for frame in reversed(traceback.extract_stack()[:-2]):
                name = frame.filename
                if name.endswith(plumbing) or any(d in name for d in plumbing_dirs):
                    continue
                inside = "/reidkit/" in frame.filename and "/tests/" not in frame.filename
                return f"{frame.filename}:{frame.lineno}" if inside else None
            return None

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                name = func._schema.name
                masked = name == "aten::index" and any(
                    t is not None and t.dtype == torch.bool for t in args[1]
                )
                if (name in HostReads.SCALAR_OPS or masked) and (where := caller()):
                    reads.append(f"{name} at {where}")
                return func(*args, **(kwargs or {}))

        self.mode = Mode()
        tolist = torch.Tensor.tolist

        def counted(tensor):
            if where := caller():
                reads.append(f"tolist at {where}")
            return tolist(tensor)

        monkeypatch.setattr(torch.Tensor, "tolist", counted)


def test_a_step_reads_from_the_device_once(tiny, tmp_path, monkeypatch):
    """One wait for the GPU a step (after the backward pass), not one per logged number
    and one inside the loss; the numbers are those of the loss computed apart."""
    import copy

    trainer = make_trainer(tiny, tmp_path, "loss.center=0.0005", model="resnet18")
    trainer._freeze(False)
    images, labels = first_batch(trainer)
    model, loss_fn = copy.deepcopy(trainer.model), copy.deepcopy(trainer.loss)
    state = torch.get_rng_state()
    logits, features = model(images)
    expected, parts = loss_fn(logits, features, labels)
    torch.set_rng_state(state)
    reads = HostReads(monkeypatch)
    with reads.mode:
        loss, got, correct = trainer._step(images, labels)
    assert reads.reads == [reads.reads[0]] and reads.reads[0].startswith("tolist at ")
    assert loss == pytest.approx(float(expected.detach()), rel=1e-5)
    assert set(got) == {"ce", "triplet", "center", "feat_norm", "d_ap", "d_an", "active"}
    for key, value in parts.items():
        assert got[key] == pytest.approx(float(value), rel=1e-5, abs=1e-7), key
    assert correct == float((logits.argmax(1) == labels).sum())


def test_a_diverged_step_stops_before_the_weights_change(tiny, tmp_path):
    trainer = make_trainer(tiny, tmp_path, model="resnet18")
    trainer._freeze(False)
    images, labels = first_batch(trainer)
    before = {k: v.clone() for k, v in trainer.model.named_parameters()}
    images[0] = float("nan")
    with pytest.raises(ReidkitError, match="training diverged at epoch 1, step 0: the loss is nan"):
        trainer._step(images, labels)
    assert all(torch.equal(before[k], v) for k, v in trainer.model.named_parameters())


def test_convolutions_are_tuned_unless_the_run_is_deterministic(tiny, tmp_path, monkeypatch):
    tuned = []
    monkeypatch.setattr("reidkit.device.tune_convolutions", tuned.append)
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda *a, **k: None)
    make_trainer(tiny, tmp_path)
    assert tuned == ["cpu"]  # (a no-op on the CPU; cuDNN's autotuner on CUDA)
    make_trainer(tiny, tmp_path, "train.deterministic=true")
    assert tuned == ["cpu"]


def test_evaluation_during_training_runs_as_the_training_does(tiny, tmp_path, monkeypatch):
    """The training's workers decode the evaluation's images, and its autocast and memory
    format run the model; with workers the numbers are those decoded in process."""
    import os

    from reidkit.features.batches import ImageList

    log = tmp_path / "decoded.log"
    log_item_processes(monkeypatch, ImageList, log)
    mixed = ("train.amp=bf16", "train.channels_last=true", "data.workers=2")
    trainer = make_trainer(tiny, tmp_path, *mixed, model="resnet18")
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    seen = set()
    conv.register_forward_hook(
        lambda m, i, o: seen.add((i[0].is_contiguous(memory_format=torch.channels_last), o.dtype))
    )
    assert trainer.evaluate()["mAP"] > 0
    assert seen == {(True, torch.bfloat16)}
    pids = log.read_text().split()
    assert str(os.getpid()) not in pids, pids
    assert len(set(pids)) >= 2
    rows = []
    for workers in (2, 0):
        plain = make_trainer(tiny, tmp_path, f"data.workers={workers}", model="resnet18")
        rows.append(plain.evaluate())
    assert rows[0] == rows[1]


def test_each_process_checks_its_share_of_the_images_and_learns_all_findings(
    tiny, tmp_path, monkeypatch
):
    """Process 1 of 2 decodes every other image; a bad image process 0 found stops it too
    (with data.skip_bad both would leave it out: one dataset for every process)."""
    from reidkit.data import images
    from reidkit.errors import DataError

    checked = []

    def find(paths, workers=None):
        checked.extend(paths)
        return []

    def gather(mine):  # what process 0 found, then this process's own
        return [[images.UnreadableImage("/elsewhere/0001_c1s1_000001_00.jpg", "truncated")], mine]

    monkeypatch.setattr(images, "find_unreadable", find)
    monkeypatch.setattr("reidkit.device.distributed_rank", lambda: (1, 2))
    monkeypatch.setattr("reidkit.device.gather", gather)
    found = "cannot read image /elsewhere/0001_c1s1_000001_00.jpg: truncated"
    with pytest.raises(DataError) as caught:
        make_trainer(tiny, tmp_path)
    assert caught.value.message == f"1 image(s) of synthreid cannot be read; the first: {found}"
    every = [s.path for s in load_dataset("synthreid", tiny).train]
    assert checked == every[1::2]


def test_a_signal_during_an_epochs_evaluation_stops_after_it(tiny, tmp_path, monkeypatch):
    """The graceful stop is read after the epoch's evaluation and saving too: a signal that
    comes then (after the epoch's last step) is no longer lost, ending the run with exit 0."""
    import os
    import signal

    from reidkit.errors import Interrupted
    from reidkit.models.checkpoint import load_checkpoint

    trainer = make_trainer(tiny, tmp_path, "train.epochs=2", "eval.every=1")

    def evaluate():
        os.kill(os.getpid(), signal.SIGTERM)  # the graceful stop's handler only takes note
        return {"mAP": 0.5, "rank1": 0.5}

    monkeypatch.setattr(trainer, "evaluate", evaluate)
    with pytest.raises(Interrupted) as stopped:
        trainer.fit()
    message = f"stopped by signal {int(signal.SIGTERM)} after epoch 1 (saved); 'reidkit resume"
    assert stopped.value.message.startswith(message)
    saved = load_checkpoint(tmp_path / "run" / "weights" / "last.pt")
    assert (saved["epoch"], trainer.epoch) == (1, 1)
