"""The training loop: one run directory, exact resume, optional DDP.

    runs/<name>/config.yaml   train.log   metrics.csv   env.json
                weights/last.pt (every epoch)   weights/best.pt (best mAP)

``last.pt`` holds everything needed to continue exactly: model, optimiser, schedule, grad
scaler, epoch, step, best metric, RNG states and the position inside the epoch. Batches
are a deterministic function of (seed, epoch), so an epoch-boundary resume on the CPU with
``train.deterministic`` gives the same weights as an uninterrupted run. SIGINT and SIGTERM
finish the current step, save ``last.pt`` and stop with exit code 130.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import platform
import random
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np

from reidkit.config import Config, dump_config
from reidkit.errors import DataError, Interrupted, ReidkitError, UsageError
from reidkit.fileio import atomic_open, file_lock, write_text_atomic
from reidkit.progress import ProgressFn, no_progress
from reidkit.threads import rebalance as rebalance_threads

log = logging.getLogger(__name__)
METRIC_FIELDS = (
    "epoch",
    "loss",
    "ce",
    "triplet",
    "acc",
    "lr",
    "images_per_s",
    "seconds",
    "mAP",
    "rank1",
)


def model_kwargs(config: Config) -> dict[str, Any]:
    """What builds the config's model: its options, and the input size of a model built
    for one size."""
    from reidkit.models import model_cfg, model_options

    m = config.model
    kwargs = model_options(m.name, {"last_stride": m.last_stride, "bnneck": m.bnneck})
    if model_cfg(m.name).sized:
        kwargs["image_size"] = [config.data.height, config.data.width]
    return kwargs


def lr_factor(epoch: int, schedule) -> float:
    """Multiplier of the base learning rate at ``epoch``: linear warmup, then decay."""
    if epoch < schedule.warmup_epochs:
        alpha = epoch / max(1, schedule.warmup_epochs)
        return schedule.warmup_factor * (1 - alpha) + alpha
    if schedule.name == "step":
        return schedule.gamma ** (epoch // max(1, schedule.step_size))
    if schedule.name == "multistep":
        return schedule.gamma ** sum(epoch >= m for m in schedule.milestones)
    if schedule.name == "cosine":
        return float("nan")  # resolved by the caller, which knows the total epochs
    raise UsageError(f"unknown schedule '{schedule.name}'", hint="step, multistep or cosine")


def _rng_state() -> dict[str, Any]:
    import torch

    version, state, gauss = random.getstate()
    return {
        "python": [version, list(state), gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch

    version, values, gauss = state["python"]
    random.setstate((version, tuple(values), gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signal = signum
        log.warning("stopping after this step (signal %d); send it again to stop at once", signum)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


class Trainer:
    """Trains one run directory. Use :func:`train` or :func:`resume`."""

    def __init__(
        self,
        config: Config,
        run: Path,
        *,
        progress: ProgressFn = no_progress,
        pretrained: dict[str, Any] | bool | None = True,
    ) -> None:
        """``pretrained``: True loads ``model.pretrained`` (a new run); a resumed run passes
        the record of what its start loaded (None: nothing), as its weights come from its
        checkpoint."""
        import torch

        from reidkit.data import load_dataset
        from reidkit.features.extractor import init_distributed
        from reidkit.metrics.distance import resolve_device
        from reidkit.models import create_model, model_cfg
        from reidkit.models.pretrained import load_pretrained

        self.config, self.run, self.progress = config, Path(run), progress
        c = config
        self.device = init_distributed(resolve_device(c.train.device))
        self.rank, self.world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            self.rank, self.world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        self._seed(c.train.seed + self.rank)
        if c.train.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=self.device != "cpu")
        self.dataset = load_dataset(c.data.dataset, c.data.root)
        if not self.dataset.train:
            raise UsageError(f"dataset {c.data.dataset} has no training images")
        check_batch_fits(c, self.dataset.num_train_pids)
        self.left_out: list[str] = []  # unreadable images data.skip_bad leaves out
        self._check_images()
        self.num_classes = self.dataset.num_train_pids
        torch.manual_seed(c.train.seed)  # the same initial weights on every process
        self.model = create_model(c.model.name, self.num_classes, **model_kwargs(c))
        # trained from scratch even when the rest is pretrained; everything else is "base"
        self.new_layers = tuple(f"{name}." for name in model_cfg(c.model.name).head)
        if pretrained is True:
            pretrained = load_pretrained(
                self.model, c.model.name, c.model.pretrained, allow_partial=c.model.allow_partial
            )
        self.pretrained = pretrained  # what the run started from, for env.json and config.yaml
        self.model.to(self.device)
        if c.train.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.net = self.model
        if self.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(self.model)
        self.optimizer = self._optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._factor)
        self.scaler = torch.amp.GradScaler(self.device.split(":")[0], enabled=c.train.amp == "fp16")
        from reidkit.losses import ReIDLoss

        self.loss = ReIDLoss(
            c.loss.softmax,
            c.loss.label_smoothing,
            c.loss.triplet,
            c.loss.margin,
            c.loss.soft_margin,
        )
        self.epoch = self.step = self.batch_in_epoch = 0
        self.best = -1.0
        # the row of an epoch whose weights are saved but whose evaluation has not finished
        self.pending: dict[str, Any] | None = None
        self._tb: Any = None  # a SummaryWriter once made; False when TensorBoard is absent

    # -- set-up -------------------------------------------------------------------------
    def _check_images(self) -> None:
        """Decode every image the run will read, once, before training: a bad one stops
        the run now (naming it) instead of in some epoch or at its evaluation, or with
        data.skip_bad is left out of every subset."""
        import dataclasses

        from reidkit.data.images import find_unreadable

        ds, c = self.dataset, self.config
        subsets = ("train", "query", "gallery") if c.eval.every else ("train",)
        bad = find_unreadable([s.path for name in subsets for s in ds.subset(name)])
        if not bad:
            return
        if not c.data.skip_bad:
            raise DataError(
                f"{len(bad)} image(s) of {ds.name} cannot be read; the first: {bad[0].message}",
                hint="--skip-bad leaves them out (and lists them in train.log)",
            )
        self.left_out = [exc.message for exc in bad]  # logged once train.log is open
        paths = {exc.path for exc in bad}
        self.dataset = dataclasses.replace(
            ds, **{name: [s for s in ds.subset(name) if s.path not in paths] for name in subsets}
        )
        if not self.dataset.train:
            raise DataError(f"no training image of {ds.name} can be read")

    def _seed(self, seed: int) -> None:
        import torch

        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

    def _factor(self, epoch: int) -> float:
        s = self.config.schedule
        if s.name == "cosine" and epoch >= s.warmup_epochs:
            span = max(1, self.config.train.epochs - s.warmup_epochs)
            progress = (epoch - s.warmup_epochs) / span
            floor = s.min_lr / self.config.optim.lr
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        return lr_factor(epoch, s)

    def _optimizer(self):
        import torch

        o = self.config.optim
        new = [p for n, p in self.model.named_parameters() if n.startswith(self.new_layers)]
        base = [p for n, p in self.model.named_parameters() if not n.startswith(self.new_layers)]
        groups = [{"params": base, "lr": o.lr * o.base_lr_mult}, {"params": new, "lr": o.lr}]
        groups = [g for g in groups if g["params"]]
        if o.name in ("adam", "amsgrad"):
            return torch.optim.Adam(
                groups, lr=o.lr, weight_decay=o.weight_decay, amsgrad=o.name == "amsgrad"
            )
        if o.name == "sgd":
            return torch.optim.SGD(
                groups,
                lr=o.lr,
                momentum=o.momentum,
                weight_decay=o.weight_decay,
                nesterov=o.nesterov,
            )
        raise UsageError(f"unknown optimizer '{o.name}'", hint="adam, amsgrad or sgd")

    def _loader(self):
        import torch

        from reidkit.data.samplers import PKSampler, RandomBatchSampler
        from reidkit.data.transforms import TrainImages, train_transform

        d = self.config.data
        labels = [s.pid for s in self.dataset.train]
        seed = self.config.train.seed
        if d.sampler == "pk":
            sampler = PKSampler(
                labels, d.batch_size, d.num_instances, seed=seed, rank=self.rank, world=self.world
            )
        elif d.sampler == "random":
            sampler = RandomBatchSampler(
                len(labels), d.batch_size, seed=seed, rank=self.rank, world=self.world
            )
        else:
            raise UsageError(f"unknown sampler '{d.sampler}'", hint="pk or random")
        workers = d.workers if d.workers >= 0 else (0 if self.device == "cpu" else 8)
        images = TrainImages(self.dataset.train, train_transform(d))
        loader = torch.utils.data.DataLoader(
            images,
            batch_sampler=sampler,
            num_workers=workers,
            pin_memory=self.device.startswith("cuda"),
        )
        return sampler, loader

    # -- state --------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "batch_in_epoch": self.batch_in_epoch,
            "best": self.best,
            "pending": self.pending,
            "pretrained": self.pretrained,
            "rng": _rng_state(),
        }

    def save(self, name: str) -> Path:
        from reidkit.engine.checkpoint import model_spec, save_checkpoint

        c = self.config
        spec = model_spec(c.model.name, self.model, self.num_classes, **model_kwargs(c))
        path = save_checkpoint(
            self.run / "weights" / name, self.model, spec, config=c.to_dict(), **self.state()
        )
        if name == LAST:
            write_progress_note(
                path, self.epoch, self.step, self.batch_in_epoch, self.best, bool(self.pending)
            )
        return path

    def load(self, checkpoint: dict[str, Any]) -> None:
        self.model.load_state_dict(checkpoint["state_dict"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.epoch, self.step = checkpoint["epoch"], checkpoint["step"]
        self.batch_in_epoch, self.best = checkpoint["batch_in_epoch"], checkpoint["best"]
        self.pending = checkpoint.get("pending")
        _set_rng_state(checkpoint["rng"])

    # -- the loop -----------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train until ``train.epochs``; returns the final metrics."""
        import torch

        c = self.config
        sampler, loader = self._loader()
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(c.train.amp)
        device_type = self.device.split(":")[0]
        last_row: dict[str, Any] = {}
        for message in self.left_out:
            log.warning("left out: %s", message)
        if self.pending is not None:  # resumed after its evaluation failed: evaluate it now
            last_row = self._end_epoch(self.pending, evaluate=True)
        with StopRequest() as stop:
            while self.epoch < c.train.epochs:
                rebalance_threads()  # share the cores with commands started meanwhile
                self._freeze(self.epoch < c.train.freeze_base_epochs)
                sampler.set_epoch(self.epoch)
                sampler.skip = self.batch_in_epoch  # resumed inside this epoch: skip, not load
                self.net.train()
                sums = {"loss": 0.0, "ce": 0.0, "triplet": 0.0, "acc": 0.0}
                seen, start, total = 0, time.perf_counter(), len(sampler)
                for b, (images, labels) in enumerate(loader, start=self.batch_in_epoch):
                    images, labels = images.to(self.device), labels.to(self.device)
                    if c.train.channels_last:
                        images = images.contiguous(memory_format=torch.channels_last)
                    with torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
                        logits, features = self.net(images)
                        loss, parts = self.loss(logits, features, labels)
                    if not torch.isfinite(loss):
                        from reidkit.errors import ReidkitError

                        raise ReidkitError(
                            f"training diverged at epoch {self.epoch + 1}, step "
                            f"{self.step}: the loss is {float(loss)}",
                            hint="lower optim.lr or try train.amp=off",
                        )
                    self.optimizer.zero_grad(set_to_none=True)
                    self.scaler.scale(loss).backward()
                    if c.optim.grad_clip > 0:
                        self.scaler.unscale_(self.optimizer)
                        torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.optim.grad_clip)
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                    self.step += 1
                    self.batch_in_epoch = b + 1
                    n = len(labels)
                    seen += n
                    sums["loss"] += float(loss.detach()) * n
                    sums["ce"] += parts.get("ce", 0.0) * n
                    sums["triplet"] += parts.get("triplet", 0.0) * n
                    sums["acc"] += float((logits.argmax(1) == labels).float().sum())
                    # one bar over the run (its ETA is the run's), the epoch and loss beside it
                    note = f"epoch {self.epoch + 1}/{c.train.epochs} loss {sums['loss'] / seen:.3f}"
                    self.progress(self.epoch * total + b + 1, c.train.epochs * total, note)
                    if stop.signal is not None:
                        if self.rank == 0:
                            self.save(LAST)
                        raise Interrupted(
                            f"stopped by signal {stop.signal} at epoch "
                            f"{self.epoch + 1}, step {self.step}; "
                            f"'reidkit resume {self.run}' continues"
                        )
                seconds = time.perf_counter() - start
                lr = self.optimizer.param_groups[-1]["lr"]
                self.epoch += 1
                self.batch_in_epoch = 0
                self.scheduler.step()
                row = {
                    "epoch": self.epoch,
                    "lr": lr,
                    "seconds": round(seconds, 2),
                    "images_per_s": round(seen * self.world / seconds, 1) if seconds else 0,
                    **{k: round(v / max(seen, 1), 5) for k, v in sums.items()},
                }
                evaluate = bool(c.eval.every) and (
                    self.epoch % c.eval.every == 0 or self.epoch == c.train.epochs
                )
                last_row = self._end_epoch(row, evaluate=evaluate)
        return last_row

    def _end_epoch(self, row: dict[str, Any], *, evaluate: bool) -> dict[str, Any]:
        """Evaluate (if due), record and save an epoch. The trained weights are saved
        before the evaluation starts: an evaluation that fails costs no training, and
        ``resume`` evaluates the epoch before it goes on."""
        c = self.config
        if evaluate:
            self.pending = row
            if self.rank == 0:
                self.save(LAST)
            row = {**row, **self.evaluate()}
            self.pending = None
        if self.rank == 0:
            self._record(row)
            self.save(LAST)
            if "mAP" in row and row["mAP"] > self.best:
                self.best = row["mAP"]
                self.save("best.pt")
            if c.train.save_every and self.epoch % c.train.save_every == 0:
                self.save(f"epoch-{self.epoch:03d}.pt")
        self._barrier()
        return row

    def _freeze(self, frozen: bool) -> None:
        for name, p in self.model.named_parameters():
            if not name.startswith(self.new_layers):
                p.requires_grad_(not frozen)

    def _barrier(self) -> None:
        import torch

        if self.world > 1:
            torch.distributed.barrier()

    def evaluate(self) -> dict[str, float]:
        """mAP and rank-1 on the dataset's query/gallery with the library's evaluation."""
        import torch

        from reidkit.features.extractor import ExtractOptions, compute_features
        from reidkit.features.store import FeatureSet
        from reidkit.metrics.rank import RankAccumulator
        from reidkit.metrics.ranking import Ranking
        from reidkit.models import model_distance

        if self.rank != 0 or not (self.dataset.query and self.dataset.gallery):
            return {}
        c = self.config
        options = ExtractOptions(
            height=c.data.height,
            width=c.data.width,
            mean=c.data.mean,
            std=c.data.std,
            flip=c.eval.flip,
        )
        self.model.eval()
        rng = torch.get_rng_state()  # evaluation must not change the training's randomness
        sets = []
        for samples in (self.dataset.query, self.dataset.gallery):
            features = compute_features(self.model, samples, options, device=self.device)
            attrs = {"distance": model_distance(c.model.name), "dataset": self.dataset.name}
            pids, camids = (np.array([getattr(s, k) for s in samples]) for k in ("pid", "camid"))
            sets.append(FeatureSet(features, pids, camids, attrs=attrs))
        torch.set_rng_state(rng)
        self.model.train()
        ranking = Ranking(
            metric=None if c.eval.metric == "auto" else c.eval.metric,
            normalize=c.eval.normalize,
            protocol=None if c.eval.protocol == "auto" else c.eval.protocol,
            ranks=(1,),
            device="cpu",
        ).resolve(*sets)
        query, gallery = sets
        acc = RankAccumulator(
            query.pids, query.camids, gallery.pids, gallery.camids, protocol=ranking.protocol,
            ranks=(1,),
        )  # fmt: skip
        for start, _, dist in ranking.blocks(query, gallery):
            acc.add(start, dist)
        result = acc.result()
        log.info(
            "epoch %d: mAP %.2f%%, rank-1 %.2f%%", self.epoch, 100 * result.mAP, 100 * result.cmc[1]
        )
        return {"mAP": round(result.mAP, 5), "rank1": round(result.cmc[1], 5)}

    def _tensorboard(self, row: dict[str, Any]) -> None:
        """Scalars under RUN/tb when TensorBoard is installed (the ``tb`` extra)."""
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.warning(
                    "no TensorBoard scalars for this run: tensorboard is not installed "
                    "(pip install tensorboard; metrics.csv has the same figures)"
                )
                self._tb = False
                return
            self._tb = SummaryWriter(str(self.run / "tb"))
        if self._tb:
            for key in METRIC_FIELDS[1:]:
                if isinstance(row.get(key), (int, float)):
                    self._tb.add_scalar(key, row[key], row["epoch"])
            self._tb.flush()

    def _record(self, row: dict[str, Any]) -> None:
        self._tensorboard(row)
        path = self.run / "metrics.csv"
        rows = []
        if path.exists():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < row["epoch"]]
        rows.append({k: row.get(k, "") for k in METRIC_FIELDS})
        with atomic_open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=METRIC_FIELDS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        log.info(
            "epoch %d/%d: loss %.4f, acc %.3f, lr %.2e, %.0f images/s",
            row["epoch"],
            self.config.train.epochs,
            row["loss"],
            row["acc"],
            row["lr"],
            row["images_per_s"],
        )


def _started_from(trainer: Trainer) -> str:
    """The comment config.yaml keeps of the weights a run started from."""
    p = trainer.pretrained
    if not p:
        return "initial weights: none (trained from scratch)"
    return f"initial weights: {p['file']} ({p['source']}, sha256 {p['sha256']})"


def _env(device: str) -> dict[str, Any]:
    import subprocess

    import torch

    from reidkit import __version__

    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).parent,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "reidkit": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": device,
        "cuda": torch.version.cuda,
        "platform": platform.platform(),
        "git_commit": commit,
    }


def _log_to_file(run: Path) -> logging.Handler:
    handler = logging.FileHandler(run / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger("reidkit").addHandler(handler)
    return handler


def _fit(trainer: Trainer) -> dict[str, Any]:
    handler = _log_to_file(trainer.run) if trainer.rank == 0 else None
    try:
        result = trainer.fit()
    finally:
        if handler:
            logging.getLogger("reidkit").removeHandler(handler)
            handler.close()
    return {
        "run": str(trainer.run),
        "epochs": trainer.epoch,
        "steps": trainer.step,
        "best_mAP": trainer.best if trainer.best >= 0 else None,
        "last": result,
    }


def _run_lock(run: Path):
    """The run directory's lock, held by the first process only (torchrun starts several)."""
    import contextlib

    return file_lock(run) if os.environ.get("RANK", "0") == "0" else contextlib.nullcontext()


LAST = "last.pt"


def write_progress_note(
    last: Path, epoch: int, step: int, batch_in_epoch: int, best: float, pending: bool
):
    """``last.json`` beside ``last.pt``: where the run stands, readable without torch; it
    names the size and mtime of the checkpoint it describes, so a stale note is ignored."""
    stat = last.stat()
    note = {
        "epoch": epoch,
        "step": step,
        "batch_in_epoch": batch_in_epoch,
        "best": best,
        "pending": pending,
        "checkpoint": {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns},
    }
    write_text_atomic(last.with_suffix(".json"), json.dumps(note) + "\n")


def read_progress_note(last: Path) -> dict[str, Any] | None:
    """The note of :func:`write_progress_note` if it describes ``last`` as it is now."""
    try:
        note = json.loads(last.with_suffix(".json").read_text(encoding="utf-8"))
        stat = last.stat()
        if note["checkpoint"] == {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}:
            return note
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def check_batch_fits(config: Config, identities: int) -> None:
    """A PK batch takes batch_size / num_instances identities: refuse, before anything is
    written, a batch that needs more than the training set has, saying what would fit."""
    d = config.data
    if d.sampler != "pk" or d.batch_size // d.num_instances <= identities:
        return
    fits = identities * d.num_instances
    instances = -(-d.batch_size // identities)
    while d.batch_size % instances:
        instances += 1
    raise UsageError(
        f"data.batch_size={d.batch_size} with data.num_instances={d.num_instances} needs "
        f"{d.batch_size // d.num_instances} training identities per batch, but "
        f"{d.dataset} has {identities}",
        hint=f"use --batch-size {fits} (or less), or data.num_instances={instances}",
    )


def train(
    config: Config,
    run: str | os.PathLike[str],
    *,
    exist_ok: bool = False,
    progress: ProgressFn = no_progress,
) -> dict[str, Any]:
    """Start a new run in ``run`` (which must not exist unless ``exist_ok``)."""
    from reidkit.config import check_config

    check_config(config)
    run = Path(run)
    main_process = os.environ.get("RANK", "0") == "0"
    # other ranks may find the folder rank 0 has just begun; they follow its decision
    if main_process and run.exists() and any(run.iterdir()) and not exist_ok:
        raise UsageError(
            f"run directory {run} already exists",
            hint=f"'reidkit resume {run}' continues it; --exist-ok overwrites it",
        )
    with _run_lock(run):
        created = not run.exists()
        if main_process:
            # written first, so a run stopped before its first checkpoint can be resumed
            (run / "weights").mkdir(parents=True, exist_ok=True)
            (run / "metrics.csv").unlink(missing_ok=True)
            write_text_atomic(run / "config.yaml", dump_config(config))
        try:
            trainer = Trainer(config, run, progress=progress)
            if main_process:
                write_text_atomic(run / "config.yaml", dump_config(config, _started_from(trainer)))
        except ReidkitError:
            # an unknown model or dataset: the run never started, so it leaves nothing
            if main_process and created:
                shutil.rmtree(run, ignore_errors=True)
            raise
        if trainer.rank == 0:
            env = {**_env(trainer.device), "pretrained": trainer.pretrained}
            write_text_atomic(run / "env.json", json.dumps(env, indent=2))
        return _fit(trainer)


def resume(
    run: str | os.PathLike[str],
    overrides: dict[str, Any] | None = None,
    *,
    progress: ProgressFn = no_progress,
) -> dict[str, Any]:
    """Continue ``run`` from weights/last.pt with its saved config (plus the whitelisted
    ``overrides``: train.device, data.workers, data.batch_size, data.skip_bad,
    train.epochs)."""
    from reidkit.config import check_config, load_config, set_value
    from reidkit.engine.checkpoint import load_checkpoint
    from reidkit.errors import MissingInputError

    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise MissingInputError(f"{run} is not a run directory (no config.yaml)")
    last = run / "weights" / "last.pt"

    def saved_config() -> Config:
        config = load_config(run / "config.yaml")
        for key, value in (overrides or {}).items():
            if value is not None:
                set_value(config, key, value)
        return check_config(config)

    if not last.is_file():
        # stopped before its first checkpoint: nothing to continue, so start it over
        config = saved_config()
        log.info("%s has no checkpoint yet: training it from the start", run)
        return {**train(config, run, exist_ok=True, progress=progress), "finished": False}
    with _run_lock(run):
        config = saved_config()
        # a finished run is recognised from the note beside last.pt, without loading torch
        checkpoint = read_progress_note(last) or load_checkpoint(last)
        if (
            checkpoint["epoch"] >= config.train.epochs
            and not checkpoint["batch_in_epoch"]
            and not checkpoint.get("pending")
        ):
            return {
                "run": str(run),
                "epochs": checkpoint["epoch"],
                "steps": checkpoint["step"],
                "best_mAP": checkpoint["best"] if checkpoint["best"] >= 0 else None,
                "last": {},
                "finished": True,
            }
        if "state_dict" not in checkpoint:
            checkpoint = load_checkpoint(last)
        trainer = Trainer(config, run, progress=progress, pretrained=checkpoint.get("pretrained"))
        trainer.load(checkpoint)
        if trainer.rank == 0:
            write_text_atomic(run / "config.yaml", dump_config(config, _started_from(trainer)))
        return {**_fit(trainer), "finished": False}
