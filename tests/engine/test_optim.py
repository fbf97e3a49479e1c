"""The run's optimiser runs torch's fused kernel and takes the steps of torch's plain
(one loop over the tensors) optimiser with the same groups: the reference is torch's
unfused implementation, not reidkit's."""

from __future__ import annotations

import copy

import pytest
import torch

from reidkit.config import Config, apply_overrides
from reidkit.engine.optim import build_optimizer

NEW = ("classifier.",)


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.base = torch.nn.Linear(8, 6)
        self.classifier = torch.nn.Linear(6, 3)

    def forward(self, x):
        return self.classifier(torch.relu(self.base(x)))


def steps(model, optimizer, n: int = 5) -> None:
    generator = torch.Generator().manual_seed(1)
    for _ in range(n):
        x = torch.randn(4, 8, generator=generator)
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        optimizer.step()


@pytest.mark.parametrize(
    "options",
    [
        ["optim.name=adam"],
        ["optim.name=amsgrad", "optim.weight_decay=0.01"],
        ["optim.name=sgd", "optim.nesterov=true", "optim.momentum=0.9"],
    ],
)
def test_the_fused_optimiser_steps_as_torchs_plain_one(options):
    config = apply_overrides(Config(), [*options, "optim.lr=0.01", "optim.base_lr_mult=0.1"])
    torch.manual_seed(0)
    model = Net()
    reference, initial = copy.deepcopy(model), copy.deepcopy(model)
    optimizer = build_optimizer(model, config, NEW)
    assert optimizer.defaults["fused"] is True  # on the CPU: torch's fused kernel
    o = config.optim
    groups = [
        {"params": list(reference.base.parameters()), "lr": o.lr * o.base_lr_mult},
        {"params": list(reference.classifier.parameters()), "lr": o.lr},
    ]
    if o.name == "sgd":
        plain = torch.optim.SGD(
            groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
            nesterov=o.nesterov, foreach=False,
        )  # fmt: skip
    else:
        plain = torch.optim.Adam(
            groups, lr=o.lr, weight_decay=o.weight_decay, amsgrad=o.name == "amsgrad",
            foreach=False,
        )  # fmt: skip
    steps(model, optimizer)
    steps(reference, plain)
    pairs = zip(model.parameters(), reference.parameters(), initial.parameters(), strict=True)
    for a, b, before in pairs:
        assert not torch.equal(a, before)  # it moved
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_an_unfused_optimisers_state_continues_in_the_fused_one():
    """A run saved by an earlier reidkit (torch's plain Adam) resumes with the fused one:
    the same state keys, and the steps go on as the plain optimiser's would."""
    config = apply_overrides(Config(), ["optim.lr=0.01"])
    torch.manual_seed(0)
    model = Net()
    groups = [list(model.base.parameters()), list(model.classifier.parameters())]
    plain = torch.optim.Adam(
        [{"params": g} for g in groups],
        lr=0.01, weight_decay=config.optim.weight_decay, foreach=False,
    )  # fmt: skip
    steps(model, plain, 3)
    resumed = copy.deepcopy(model)
    fused = build_optimizer(resumed, config, NEW)
    fused.load_state_dict(copy.deepcopy(plain.state_dict()))  # as read from a checkpoint
    steps(model, plain, 3)
    steps(resumed, fused, 3)
    assert all(int(s["step"]) == 6 for s in fused.state.values())
    for a, b in zip(resumed.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
