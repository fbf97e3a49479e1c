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
import time
from pathlib import Path
from typing import Any

from reidkit.config import Config
from reidkit.data.clips import frame_count
from reidkit.device import barrier
from reidkit.engine.adapt import ADAPT_FIELDS, Adapter, check_adaptable
from reidkit.engine.prechecks import check_batch_fits, check_images
from reidkit.engine.records import TRAIN_FIELDS, MetricsLog
from reidkit.engine.replicas import check_replicas, freeze_parameters, freeze_unused_head
from reidkit.engine.rng import gather_rng_states, restore_rng_states, rng_state
from reidkit.engine.rundir import LAST, write_progress_note
from reidkit.engine.stop import StopRequest
from reidkit.errors import Interrupted, ReidkitError, UsageError
from reidkit.progress import ProgressFn, no_progress
from reidkit.threads import rebalance as rebalance_threads

log = logging.getLogger(__name__)
EVAL_FIELDS = ("mAP", "rank1")
LOSS_PARTS = ("ce", "triplet", "center", "feat_norm", "d_ap", "d_an", "active")


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
        from reidkit.engine.optim import build_optimizer, build_scheduler, fused_kernel
        from reidkit.losses import ReIDLoss
        from reidkit.models import create_model, model_cfg
        from reidkit.models.factory import run_model_kwargs
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
        adapting = c.adapt.enabled  # identities come from clusters, checked each epoch
        if not adapting:
            check_batch_fits(c, self.dataset.num_train_pids, len(self.dataset.train))
        # unreadable images data.skip_bad leaves out, logged once train.log is open
        self.dataset, self.eval_sets, self.left_out = check_images(
            self.dataset, self.eval_sets, c, self.rank, self.world
        )
        # adapting, the cluster memory replaces the classifier (a frozen row of one class)
        self.num_classes = 1 if adapting else self.dataset.num_train_pids
        seed_everything(c.train.seed)  # the same initial weights on every process
        self.model = create_model(c.model.name, self.num_classes, **run_model_kwargs(c))
        self.model.temporal = c.model.temporal  # how clips pool over time (video datasets)
        self.model.check_input(c.data.height, c.data.width)
        if c.loss.center and self.model.metric_features > 1:
            raise UsageError(
                f"loss.center needs one feature per image; {c.model.name} trains "
                f"{self.model.metric_features}",
                hint="set loss.center=0",
            )
        if adapting:
            check_adaptable(self.model, c.model.name)
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
        self.adapter = None
        if adapting:
            # the memory's logits replace the classifier's
            freeze_parameters(self.model, tuple(f"{n}." for n in self.model.classifier_names))
            self.adapter = Adapter(
                c, self.dataset.train, self.model.feature_dim, self.device, self.rank, self.world
            )
        if not c.loss.softmax:  # nothing reaches the classifier, nor the BNNeck's scale
            freeze_unused_head(self.model)
            trains = any(
                p.requires_grad
                for n, p in self.model.named_parameters()
                if n.startswith(self.new_layers)
            )
            freeze = c.train.freeze_base_epochs or c.train.freeze_base_iters
            if freeze and not trains:
                raise UsageError(
                    f"loss.softmax=0 leaves nothing of {c.model.name}'s new layers to train "
                    "while train.freeze_base_epochs / freeze_base_iters freeze the rest",
                    hint="drop the freeze, or keep the identity loss",
                )
        self.loss = ReIDLoss.from_config(c.loss, self.num_classes, self.model.feature_dim)
        self.loss.to(self.device)
        seed_augmentation(c.train.seed, self.rank)  # each process its own augmentations
        self.net, self.frozen = self.model, None  # the DDP wrapper is made by _freeze
        self.optimizer = build_optimizer(self.model, c, self.new_layers)
        self.scheduler = build_scheduler(self.optimizer, c)
        # the centers: their own SGD, stepped at the model's pace (BoT); None without them
        self.center_optimizer = None
        if self.loss.center is not None:
            centers = list(self.loss.parameters())
            self.center_optimizer = torch.optim.SGD(
                centers, lr=c.loss.center_lr, fused=fused_kernel(centers)
            )
        self.scaler = torch.amp.GradScaler(self.device.split(":")[0], enabled=c.train.amp == "fp16")
        self.epoch = self.step = self.batch_in_epoch = 0
        self.best = -1.0
        # the row of an epoch whose weights are saved but whose evaluation has not finished
        self.pending: dict[str, Any] | None = None
        self.rng_ranks: list[dict[str, Any]] | None = None  # every process's, under torchrun
        per_set = tuple(f for s in self.eval_sets for f in s.fields())
        adapt_fields = ADAPT_FIELDS if adapting else ()
        self.metrics = MetricsLog(self.run, TRAIN_FIELDS + adapt_fields + EVAL_FIELDS + per_set)

    # -- set-up -------------------------------------------------------------------------
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
            "adapt": self.adapter.state() if self.adapter else None,
        }

    def save(self, name: str) -> Path:
        from reidkit.models.checkpoint import model_spec, save_checkpoint
        from reidkit.models.factory import run_model_kwargs

        c = self.config
        spec = model_spec(c.model.name, self.model, self.num_classes, **run_model_kwargs(c))
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
        if self.adapter is not None:
            self.adapter.load(checkpoint.get("adapt"))
        restore_rng_states(checkpoint, self.device, seed=self.config.train.seed + 1000 * self.epoch)

    # -- the loop -----------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train until ``train.epochs``; returns the final metrics."""
        from reidkit.engine.loaders import train_loader
        from reidkit.engine.optim import triplet_factor

        c = self.config
        sampler = loader = None  # adapting: made each epoch, over its clusters
        if self.adapter is None:
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
                if self.adapter is not None:  # this epoch's pseudo-labels
                    samples = self.adapter.begin_epoch(self.model, self.epoch)
                    sampler, loader = train_loader(
                        samples, c, rank=self.rank, world=self.world, device=self.device
                    )
                    if not len(sampler):  # too few clusters to give every process a batch
                        raise ReidkitError(
                            f"epoch {self.epoch + 1}: the clusters fill no batch for each of "
                            f"the {self.world} processes",
                            hint="raise adapt.eps (or lower adapt.min_samples), or take "
                            "fewer identities per batch",
                        )
                self._freeze(self._frozen_now())
                self.loss.triplet = c.loss.triplet * triplet_factor(self.epoch, c)
                sampler.set_epoch(self.epoch)
                sampler.skip = self.batch_in_epoch  # resumed inside this epoch: skip, not load
                sums = dict.fromkeys(("loss", *LOSS_PARTS, "acc"), 0.0)
                seen, frames, start, total = 0, 0, time.perf_counter(), len(sampler)
                for b, (images, labels) in enumerate(loader, start=self.batch_in_epoch):
                    if c.train.freeze_base_iters and self._frozen_now() != self.frozen:
                        self._freeze(self._frozen_now())  # fast-reid's freeze ends mid-epoch
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
                    **(self.adapter.row if self.adapter else {}),
                }
                evaluate = bool(c.eval.every) and (
                    self.epoch % c.eval.every == 0 or self.epoch == c.train.epochs
                )
                last_row = self._end_epoch(row, evaluate=evaluate)
                if stop.signal is not None:  # came during the evaluation or the saving
                    rest = (
                        f"'reidkit resume {self.run}' continues"
                        if self.epoch < c.train.epochs
                        else "the run's training is complete"
                    )
                    raise Interrupted(
                        f"stopped by signal {stop.signal} after epoch {self.epoch} (saved); {rest}"
                    )
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
        if c.schedule.warmup_iters and self.step <= c.schedule.warmup_iters:
            self._warm_up()
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(c.train.amp)
        with torch.autocast(self.device.split(":")[0], dtype=dtype, enabled=dtype is not None):
            logits, features = self.net(images)
            if self.adapter is not None:  # the cluster memory's logits
                logits = self.adapter.logits(features)
            loss, parts = self.loss(logits, features, labels)
        optimizers = [o for o in (self.optimizer, self.center_optimizer) if o is not None]
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        scores = logits.detach().mean(1) if logits.dim() == 3 else logits.detach()  # parts
        correct = (scores.argmax(1) == labels).sum()
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
        if self.adapter is not None:
            self.adapter.after_step(features, labels)
        self.step += 1
        return values[0], dict(zip(parts, values[2:], strict=True)), values[1]

    def _frozen_now(self) -> bool:
        """Whether the base is frozen now: for its first epochs or iterations."""
        t = self.config.train
        return self.epoch < t.freeze_base_epochs or self.step < t.freeze_base_iters

    def _warm_up(self) -> None:
        """The iteration warmup's rate for this step: the epoch's rate times its factor
        (fast-reid's WarmupLR over its epoch scheduler)."""
        from reidkit.engine.optim import lr_factor, warmup_factor

        factor = lr_factor(self.epoch, self.config) * warmup_factor(self.step, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor

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
        memory = self.adapter.replicated() if self.adapter else ()
        check_replicas(self.model, self.epoch, self.world, self.device, memory)
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

    def _base_modules(self):
        """The modules outside the new layers that hold no new layer."""
        for name, module in self.model.named_modules():
            prefix = f"{name}."
            holds_new = any(new.startswith(prefix) for new in self.new_layers)
            if name and not prefix.startswith(self.new_layers) and not holds_new:
                yield module

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
