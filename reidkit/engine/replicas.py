"""One model on every process under DDP: the head no loss reaches is frozen (DDP refuses
parameters without a gradient), and after each epoch the processes compare their weights."""

from __future__ import annotations

import logging

from reidkit.errors import ReidkitError

log = logging.getLogger(__name__)


def freeze_unused_head(model) -> None:
    """With loss.softmax=0 the classifier's logits feed no loss: the parameters only they
    train (the model's ``identity_only``: the classifier, and the BNNeck before it) get no
    gradient, which DDP refuses (it expects a gradient for every parameter that requires
    one). They are frozen instead; BatchNorm statistics still follow the features."""
    frozen = freeze_parameters(model, model.identity_only)
    log.info("loss.softmax=0: nothing trains %s; frozen", ", ".join(frozen) or "the head")


def freeze_parameters(model, prefixes: tuple[str, ...]) -> list[str]:
    """Freeze the parameters whose names start with one of ``prefixes``; returns the names
    of those this call froze."""
    return [
        name
        for name, p in model.named_parameters()
        if name.startswith(prefixes)
        and p.requires_grad
        and not p.requires_grad_(False).requires_grad
    ]


def check_replicas(model, epoch: int, world: int, device: str, extra=()) -> None:
    """Under DDP every process must hold the same weights after each epoch (its gradients
    are averaged), and the same ``extra`` tensors (adaptation's cluster memory); a
    difference is a bug, never a result to save."""
    import torch

    if world == 1:
        return
    tensors = [*model.parameters(), *extra]
    sums = torch.stack([t.detach().double().sum() for t in tensors])
    sums = sums.to(device)
    every = [torch.zeros_like(sums) for _ in range(world)]
    torch.distributed.all_gather(every, sums)
    differ = [r for r in range(1, world) if not torch.equal(every[0], every[r])]
    if differ:
        r, weights = differ[0], len(tensors) - len(extra)
        what = "weights" if not torch.equal(every[0][:weights], every[r][:weights]) else "memory"
        verb = "differ" if what == "weights" else "differs"
        raise ReidkitError(
            f"after epoch {epoch} the {what} of process {r} {verb} from "
            "process 0's: the processes are not training one model"
        )
