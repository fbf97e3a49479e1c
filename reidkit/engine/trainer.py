"""The training loop: one run directory, exact resume, optional DDP (``train`` and
``resume`` in :mod:`reidkit.engine.run` start it).

    runs/<name>/config.yaml   train.log   metrics.csv   env.json
                weights/last.pt (every epoch)   weights/best.pt (best mAP of the
                validation split, else of the first target: engine/evaluation.py)

``last.pt`` holds everything needed to continue exactly: model, optimiser, schedule, grad
scaler, the center loss's centers and optimiser, epoch, step, best metric, RNG states and
the position inside the epoch. Batches
are a deterministic function of (seed, epoch), so an epoch-boundary resume on the CPU with
``train.deterministic`` gives the same weights as an uninterrupted run. SIGINT and SIGTERM
finish the current step, save ``last.pt`` and stop with exit code 130.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from pathlib import Path
from typing import Any

from reidkit.config import Config
from reidkit.data.clips import frame_count
from reidkit.device import barrier
from reidkit.engine.records import TRAIN_FIELDS, MetricsLog
from reidkit.engine.rng import gather_rng_states, rng_state, set_rng_state
from reidkit.engine.rundir import (
    LAST,
    write_progress_note,
)
from reidkit.errors import DataError, Interrupted, ReidkitError, UsageError
from reidkit.progress import ProgressFn, no_progress
from reidkit.threads import rebalance as rebalance_threads

log = logging.getLogger(__name__)
EVAL_FIELDS = ("mAP", "rank1")
LOSS_PARTS = ("ce", "triplet", "center", "feat_norm", "d_ap", "d_an", "active")


def model_kwargs(config: Config) -> dict[str, Any]:
    """What builds the config's model: its options, and the input size of a model built
    for one size."""
    from reidkit.models import model_cfg, model_options

    m = config.model
    given = {"last_stride": m.last_stride, "bnneck": m.bnneck, "classifier": m.classifier}
    kwargs = model_options(m.name, given)
    if model_cfg(m.name).sized:
        kwargs["image_size"] = [config.data.height, config.data.width]
    return kwargs


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

        from reidkit.device import (
            distributed_rank,
            init_distributed,
            make_deterministic,
            resolve_device,
            tune_convolutions,
        )
        from reidkit.engine.evaluation import eval_sets, load_training_data
        from reidkit.engine.loaders import check_video_keys, seed_augmentation, seed_everything
        from reidkit.engine.optim import build_optimizer, build_scheduler
        from reidkit.losses import ReIDLoss
        from reidkit.models import create_model, model_cfg
        from reidkit.models.pretrained import load_pretrained

        self.config, self.run, self.progress = config, Path(run), progress
        c = config
        self.device = init_distributed(resolve_device(c.train.device))
        self.rank, self.world = distributed_rank()
        if c.train.deterministic:
            make_deterministic(self.device)
        train, sources = load_training_data(c)
        # the training set (less a validation split), and what to evaluate, best.pt's first
        self.dataset, self.eval_sets = eval_sets(c, train, sources)
        if not self.dataset.train:
            raise UsageError(f"dataset {self.dataset.name} has no training images")
        check_video_keys(c, self.dataset.kind, self.dataset.name)
        packed = self.dataset.kind == "tracklet" and c.data.sample == "all"
        if not c.train.deterministic and not packed:  # batches of one shape
            tune_convolutions(self.device)
        check_batch_fits(c, self.dataset.num_train_pids)
        self.left_out: list[str] = []  # unreadable images data.skip_bad leaves out
        self._check_images()
        self.num_classes = self.dataset.num_train_pids
        seed_everything(c.train.seed)  # the same initial weights on every process
        self.model = create_model(c.model.name, self.num_classes, **model_kwargs(c))
        self.model.temporal = c.model.temporal  # how clips pool over time (video datasets)
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
        if not c.loss.softmax:  # nothing reaches the classifier, nor the BNNeck's scale
            self._freeze_unused_head()
        self.loss = ReIDLoss.from_config(c.loss, self.num_classes, self.model.feature_dim)
        self.loss.to(self.device)
        seed_augmentation(c.train.seed, self.rank)  # each process its own augmentations
        self.net, self.frozen = self.model, None  # the DDP wrapper is made by _freeze
        self.optimizer = build_optimizer(self.model, c, self.new_layers)
        self.scheduler = build_scheduler(self.optimizer, c)
        # the centers: their own SGD, stepped at the model's pace (BoT); None without them
        self.center_optimizer = None
        if self.loss.center is not None:
            self.center_optimizer = torch.optim.SGD(self.loss.parameters(), lr=c.loss.center_lr)
        self.scaler = torch.amp.GradScaler(self.device.split(":")[0], enabled=c.train.amp == "fp16")
        self.epoch = self.step = self.batch_in_epoch = 0
        self.best = -1.0
        # the row of an epoch whose weights are saved but whose evaluation has not finished
        self.pending: dict[str, Any] | None = None
        self.rng_ranks: list[dict[str, Any]] | None = None  # every process's, under torchrun
        per_set = tuple(f for s in self.eval_sets for f in s.fields())
        self.metrics = MetricsLog(self.run, TRAIN_FIELDS + EVAL_FIELDS + per_set)

    # -- set-up -------------------------------------------------------------------------
    def _check_images(self) -> None:
        """Decode every image the run will read, once, before training: a bad one stops
        the run now (naming it) instead of in some epoch or at its evaluation, or with
        data.skip_bad is left out of every subset. Under torchrun each process decodes
        its share and all learn every finding, so that they leave out the same images."""
        import dataclasses

        from reidkit.data.images import find_unreadable
        from reidkit.data.sample import frame_paths, without_paths
        from reidkit.device import gather

        ds, c = self.dataset, self.config
        evaluated = [(s.query, s.gallery) for s in self.eval_sets] if c.eval.every else []
        paths = frame_paths(ds.train) + [
            p for pair in evaluated for y in pair for p in frame_paths(y)
        ]
        share = list(dict.fromkeys(paths))[self.rank :: self.world]
        found = gather(find_unreadable(share))
        bad = sorted((exc for part in found for exc in part), key=lambda e: (e.path, e.reason))
        if not bad:
            return
        if not c.data.skip_bad:
            raise DataError(
                f"{len(bad)} image(s) of {ds.name} cannot be read; the first: {bad[0].message}",
                hint="--skip-bad leaves them out (and lists them in train.log)",
            )
        self.left_out = [exc.message for exc in bad]  # logged once train.log is open
        unreadable = {exc.path for exc in bad}

        def readable(items):
            return without_paths(items, unreadable)

        self.dataset = dataclasses.replace(ds, train=readable(ds.train))
        self.eval_sets = [
            dataclasses.replace(s, query=readable(s.query), gallery=readable(s.gallery))
            for s in self.eval_sets
        ]
        if not self.dataset.train:
            raise DataError(f"no training image of {ds.name} can be read")

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
            "rng": rng_state(self.device),
            "rng_ranks": self.rng_ranks,  # every process's, when saved at an epoch's end
            "loss": self.loss.state_dict(),
            "center_optimizer": self.center_optimizer.state_dict()
            if self.center_optimizer
            else None,
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
        if self.center_optimizer is not None:
            self.loss.load_state_dict(checkpoint["loss"])
            self.center_optimizer.load_state_dict(checkpoint["center_optimizer"])
        ranks = checkpoint.get("rng_ranks")
        if ranks and len(ranks) == self.world:
            set_rng_state(ranks[self.rank], self.device)
            return
        set_rng_state(checkpoint["rng"], self.device)
        if self.world > 1:  # saved mid-epoch, or by another number of processes
            from reidkit.engine.loaders import seed_augmentation

            seed_augmentation(self.config.train.seed + 1000 * self.epoch, self.rank)
            log.warning(
                "the checkpoint does not hold the generator states of %d processes: each "
                "process draws new augmentations of its own from here",
                self.world,
            )

    # -- the loop -----------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train until ``train.epochs``; returns the final metrics."""
        from reidkit.engine.loaders import train_loader
        from reidkit.engine.optim import triplet_factor

        c = self.config
        sampler, loader = train_loader(
            self.dataset.train, c, rank=self.rank, world=self.world, device=self.device
        )
        last_row: dict[str, Any] = {}
        for message in self.left_out:
            log.warning("left out: %s", message)
        if self.pending is not None:  # resumed after its evaluation failed: evaluate it now
            last_row = self._end_epoch(self.pending, evaluate=True)
        with StopRequest() as stop:
            while self.epoch < c.train.epochs:
                rebalance_threads()  # share the cores with commands started meanwhile
                self._freeze(self.epoch < c.train.freeze_base_epochs)
                self.loss.triplet = c.loss.triplet * triplet_factor(self.epoch, c)
                sampler.set_epoch(self.epoch)
                sampler.skip = self.batch_in_epoch  # resumed inside this epoch: skip, not load
                sums = dict.fromkeys(("loss", *LOSS_PARTS, "acc"), 0.0)
                seen, frames, start, total = 0, 0, time.perf_counter(), len(sampler)
                for b, (images, labels) in enumerate(loader, start=self.batch_in_epoch):
                    loss, parts, correct = self._step(images, labels)
                    self.batch_in_epoch = b + 1
                    n = len(labels)
                    seen += n
                    frames += frame_count(images)
                    sums["loss"] += loss * n
                    for key in LOSS_PARTS:
                        sums[key] += parts.get(key, 0.0) * n
                    sums["acc"] += correct
                    # one bar over the run (its ETA is the run's), the epoch and loss beside it
                    note = f"epoch {self.epoch + 1}/{c.train.epochs} loss {sums['loss'] / seen:.3f}"
                    self.progress(self.epoch * total + b + 1, c.train.epochs * total, note)
                    if stop.signal is not None:
                        self.rng_ranks = None  # the others' states now: not gathered
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
                    "w_triplet": self.loss.triplet,
                    "seconds": round(seconds, 2),
                    # images (of clips, frames) per second
                    "images_per_s": round(frames * self.world / seconds, 1) if seconds else 0,
                    **{k: round(v / max(seen, 1), 5) for k, v in sums.items()},
                }
                evaluate = bool(c.eval.every) and (
                    self.epoch % c.eval.every == 0 or self.epoch == c.train.epochs
                )
                last_row = self._end_epoch(row, evaluate=evaluate)
        return last_row

    def _step(self, images, labels) -> tuple[float, dict[str, float], float]:
        """One optimisation step; returns the loss, its parts and the correct predictions.
        The host waits for the device once, after the backward pass, to read them all (and
        to stop before a non-finite loss reaches the weights)."""
        import torch

        c = self.config
        images = images.to(self.device, non_blocking=True)  # pinned, on CUDA: asynchronous
        labels = labels.to(self.device, non_blocking=True)
        if c.train.channels_last and isinstance(images, torch.Tensor) and images.dim() == 4:
            # clips go in flat, inside the model
            images = images.contiguous(memory_format=torch.channels_last)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(c.train.amp)
        with torch.autocast(self.device.split(":")[0], dtype=dtype, enabled=dtype is not None):
            logits, features = self.net(images)
            loss, parts = self.loss(logits, features, labels)
        optimizers = [o for o in (self.optimizer, self.center_optimizer) if o is not None]
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        correct = (logits.detach().argmax(1) == labels).sum()
        read = [loss.detach(), correct, *parts.values()]
        values = torch.stack([t.double() for t in read]).tolist()  # the one wait
        if not math.isfinite(values[0]):
            raise ReidkitError(
                f"training diverged at epoch {self.epoch + 1}, step "
                f"{self.step}: the loss is {values[0]}",
                hint="lower optim.lr or try train.amp=off",
            )
        if self.center_optimizer is not None:
            self._center_gradients()
        if c.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.optim.grad_clip)
        for optimizer in optimizers:
            self.scaler.step(optimizer)
        self.scaler.update()
        self.step += 1
        return values[0], dict(zip(parts, values[2:], strict=True)), values[1]

    def _center_gradients(self) -> None:
        """The centers step as if their loss had weight 1 (BoT), averaged over processes
        as DDP averages the model's gradients (the centers are not inside DDP)."""
        import torch

        grad = self.loss.center.centers.grad
        grad /= self.config.loss.center
        if self.world > 1:
            torch.distributed.all_reduce(grad)
            grad /= self.world

    def _end_epoch(self, row: dict[str, Any], *, evaluate: bool) -> dict[str, Any]:
        """Evaluate (if due), record and save an epoch. The trained weights are saved
        before the evaluation starts: an evaluation that fails costs no training, and
        ``resume`` evaluates the epoch before it goes on."""
        c = self.config
        self._check_replicas()
        self.rng_ranks = gather_rng_states(self.device)  # for this epoch's checkpoints
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
        barrier()
        return row

    def _freeze(self, frozen: bool) -> None:
        """Put the model in training mode with its base frozen or not. Frozen base layers
        neither learn nor move their BatchNorm statistics (they run in eval mode, as in
        torchreid). DDP wraps the model after each change of what requires a gradient,
        since it registers only those parameters when it is made."""
        import torch

        if frozen != self.frozen:
            for name, p in self.model.named_parameters():
                if not name.startswith(self.new_layers):
                    p.requires_grad_(not frozen)
            self.frozen = frozen
            if self.world > 1:
                self.net = None  # the old wrapper's hooks go with it
                self.net = torch.nn.parallel.DistributedDataParallel(self.model)
        self.model.train()
        if frozen:
            for module in self._base_modules():
                module.training = False

    def _freeze_unused_head(self) -> None:
        """With loss.softmax=0 the classifier's logits feed no loss: the classifier and the
        BNNeck before it get no gradient, which DDP refuses (it expects a gradient for every
        parameter that requires one). They are frozen instead; the BNNeck's statistics still
        follow the features."""
        frozen = [
            name
            for module in ("classifier", "bnneck")
            if getattr(self.model, module, None) is not None
            for name, p in getattr(self.model, module).named_parameters(prefix=module)
            if p.requires_grad and not p.requires_grad_(False).requires_grad
        ]
        log.info("loss.softmax=0: nothing trains %s; frozen", ", ".join(frozen) or "the head")

    def _base_modules(self):
        """The modules outside the new layers that hold no new layer."""
        for name, module in self.model.named_modules():
            prefix = f"{name}."
            holds_new = any(new.startswith(prefix) for new in self.new_layers)
            if name and not prefix.startswith(self.new_layers) and not holds_new:
                yield module

    def _check_replicas(self) -> None:
        """Under DDP every process must hold the same weights after each epoch (its
        gradients are averaged); a difference is a bug, never a result to save."""
        import torch

        if self.world == 1:
            return
        sums = torch.stack([p.detach().double().sum() for p in self.model.parameters()])
        sums = sums.to(self.device)
        every = [torch.zeros_like(sums) for _ in range(self.world)]
        torch.distributed.all_gather(every, sums)
        differ = [r for r in range(1, self.world) if not torch.equal(every[0], every[r])]
        if differ:
            raise ReidkitError(
                f"after epoch {self.epoch} the weights of process {differ[0]} differ from "
                "process 0's: the processes are not training one model"
            )

    def evaluate(self) -> dict[str, float]:
        """mAP and rank-1 on each evaluation set (see :mod:`reidkit.engine.evaluation`),
        and as ``mAP`` / ``rank1`` those of the first, which chooses best.pt."""
        import torch

        from reidkit.engine.evaluation import evaluate_set

        if self.rank != 0 or not self.eval_sets:
            return {}
        self.model.eval()
        rng = torch.get_rng_state()  # evaluation must not change the training's randomness
        row: dict[str, float] = {}
        for s in self.eval_sets:
            row.update(evaluate_set(self.model, s, self.config, self.device))
            mAP_key, rank1_key = s.fields()
            log.info(
                "epoch %d: %s mAP %.2f%%, rank-1 %.2f%%",
                self.epoch, s.name, 100 * row[mAP_key], 100 * row[rank1_key],
            )  # fmt: skip
        torch.set_rng_state(rng)
        self.model.train()
        mAP_key, rank1_key = self.eval_sets[0].fields()
        return {"mAP": row[mAP_key], "rank1": row[rank1_key], **row}

    def _record(self, row: dict[str, Any]) -> None:
        self.metrics.record(row)
        log.info(
            "epoch %d/%d: loss %.4f, acc %.3f, lr %.2e, %.0f images/s",
            row["epoch"],
            self.config.train.epochs,
            row["loss"],
            row["acc"],
            row["lr"],
            row["images_per_s"],
        )


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
    held = (
        f" ({identities + d.val_ids} less the {d.val_ids} that data.val_ids holds out)"
        if d.val_ids
        else ""
    )
    raise UsageError(
        f"data.batch_size={d.batch_size} with data.num_instances={d.num_instances} needs "
        f"{d.batch_size // d.num_instances} training identities per batch, but "
        f"{d.dataset} has {identities}{held}",
        hint=f"use --batch-size {fits} (or less), or data.num_instances={instances}"
        + (", or hold out fewer identities" if d.val_ids else ""),
    )
