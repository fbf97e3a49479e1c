"""Training throughput of the engine against a bare training loop, in the same run.

Usage::

    python benchmarks/bench_train.py [--models osnet_x0_25,resnet50] [--images 256]
        [--batch 32] [--repeats 2]

The engine trains one epoch on synthreid images (decoding, augmentation, PK sampler, loss,
optimiser, checkpoint of the epoch). The bare loop runs forward + the same loss + backward
+ optimiser step on tensors preloaded in memory (same model, batch and dtype). Target on
the CPU: engine >= 0.85 of the bare rate.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from machine import describe

from reidkit.config import Config, apply_overrides
from reidkit.data import load_dataset
from reidkit.data.manifest import write_manifest
from reidkit.data.synth import generate
from reidkit.engine.trainer import Trainer


def bare_rate(trainer: Trainer, images: torch.Tensor, labels: torch.Tensor, batch: int) -> float:
    """Images/s of forward + loss + backward + step on preloaded tensors."""
    model, optimizer, loss_fn = trainer.model, trainer.optimizer, trainer.loss
    model.train()
    start = time.perf_counter()
    for s in range(0, len(images) - batch + 1, batch):
        logits, features = model(images[s : s + batch])
        loss, _ = loss_fn(logits, features, labels[s : s + batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (len(images) // batch * batch) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="osnet_x0_25,resnet50")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(describe(), f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate(tmp / "data", "small", seed=0)
        train = load_dataset("synthreid", tmp / "data").train[: args.images]
        manifest = tmp / "subset.csv"
        write_manifest(manifest, [(s.path, s.pid, s.camid, "train", "synthreid") for s in train])
        print(f"{len(train)} training images, batch {args.batch} (PK 8x4), 256x128, fp32")
        for name in args.models.split(","):
            config = apply_overrides(
                Config(),
                [
                    f"data.dataset={manifest}",
                    f"data.batch_size={args.batch}",
                    "eval.every=0",
                    f"model.name={name}",
                    "train.epochs=1",
                    "train.device=cpu",
                    "schedule.warmup_epochs=0",
                ],
            )
            pairs = []
            for r in range(args.repeats):
                trainer = Trainer(config, tmp / f"run-{name}-{r}")
                (tmp / f"run-{name}-{r}" / "weights").mkdir(parents=True)
                engine = trainer.fit()["images_per_s"]
                x = torch.randn(len(train), 3, 256, 128)
                y = torch.tensor([s.pid for s in trainer.dataset.train])
                bare = bare_rate(trainer, x, y, args.batch)
                pairs.append((engine, bare))
            ratio = statistics.median(a / b for a, b in pairs)
            print(
                f"{name:12s} engine {statistics.median(p[0] for p in pairs):7.1f} img/s   "
                f"bare loop {statistics.median(p[1] for p in pairs):7.1f} img/s   "
                f"ratio {ratio:.2f}   runs " + " ".join(f"{a:.1f}/{b:.1f}" for a, b in pairs)
            )


if __name__ == "__main__":
    main()
