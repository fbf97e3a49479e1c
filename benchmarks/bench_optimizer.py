"""The optimiser's step: torch's fused kernel (what reidkit builds) against the best of its
unfused forms (one loop over the tensors, or torch's "foreach" lists), in the same run.

Usage::

    python benchmarks/bench_optimizer.py [--models resnet18,resnet50] [--steps 20]

For each model and optimiser (the run's Adam, and SGD with Nesterov momentum), the time of
``optimizer.step()`` alone over the model's gradients, and of a whole training step
(forward, the default losses, backward, step) at the demo's 64x32 with a batch of 16 as PK
4x4. Medians over ``--steps`` steps after 3 warm-up steps; ratio = the best unfused time
over the fused one.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from machine import describe

from reidkit.config import Config, apply_overrides
from reidkit.engine.optim import build_optimizer
from reidkit.losses import ReIDLoss
from reidkit.models import create_model, model_cfg

FORMS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {}}


def timings(model, loss_fn, config: Config, form: str, steps: int) -> tuple[float, float]:
    """Median seconds of a step of the optimiser alone, and of a whole training step."""
    optimizer = build_optimizer(
        model, config, tuple(f"{n}." for n in model_cfg(config.model.name).head)
    )
    if form != "fused":  # the same optimiser and groups, unfused
        groups = [{k: v for k, v in g.items() if k != "fused"} for g in optimizer.param_groups]
        defaults = {k: v for k, v in optimizer.defaults.items() if k not in ("fused", "foreach")}
        optimizer = type(optimizer)(groups, **defaults, **FORMS[form])
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(16, 3, 64, 32, generator=generator)
    labels = torch.arange(4).repeat_interleave(4)
    alone, whole = [], []
    for step in range(steps + 3):
        start = time.perf_counter()
        logits, features = model(images)
        loss, _ = loss_fn(logits, features, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        before = time.perf_counter()
        optimizer.step()
        end = time.perf_counter()
        if step >= 3:
            alone.append(end - before)
            whole.append(end - start)
    return statistics.median(alone), statistics.median(whole)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,resnet50")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    print(describe(), f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in args.models.split(","):
        for optim in ("adam", "sgd"):
            config = apply_overrides(
                Config(), [f"model.name={name}", f"optim.name={optim}", "optim.nesterov=true"]
            )
            torch.manual_seed(0)
            model = create_model(name, num_classes=4).train()
            loss_fn = ReIDLoss.from_config(config.loss, 4, model.feature_dim)
            found = {form: timings(model, loss_fn, config, form, args.steps) for form in FORMS}
            best = min(("loop", "foreach"), key=lambda form: found[form][0])
            fused = found["fused"]
            print(
                f"{name:9s} {optim:4s} step alone: "
                + "  ".join(f"{f} {found[f][0] * 1e3:6.1f} ms" for f in FORMS)
                + f"  ratio {found[best][0] / fused[0]:5.2f}   training step: "
                + "  ".join(f"{f} {found[f][1] * 1e3:6.1f} ms" for f in FORMS)
                + f"  ratio {found[best][1] / fused[1]:4.2f}"
            )


if __name__ == "__main__":
    main()
