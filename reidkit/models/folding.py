"""A model for inference: each BatchNorm that follows a convolution folded into it.

In eval mode a BatchNorm is an affine map per channel, so the convolution before it can
absorb it (its weight scaled, a bias added) and the BatchNorm becomes the identity: one
pass over the activations fewer per layer. The convolution-BatchNorm pairs are found on
the image path's graph (``head(features(x))``, traced by torch.fx): a BatchNorm is folded
only when its input is a convolution's output that nothing else uses, and each module of
the pair runs once. fx sees only torch's own modules as modules: a subclass from
elsewhere is traced through (timm's BatchNormAct2d, which also applies an activation, and
its StdConv2d, which standardises its weight in ``forward``), so it is never folded.

The pairs are folded in a copy of the model, module by module, so the copy keeps
everything the extraction uses (``features``, ``head``, ``feature_dim``); the model passed
in, and the file it came from, are unchanged.
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class _ImagePath(nn.Module):
    """The path images take through a re-ID network, for tracing: its ``forward`` also
    takes clips, a branch on the input that fx cannot trace."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor):
        return self.net.head(self.net.features(x))


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """The (convolution, BatchNorm) module names whose BatchNorm can be folded."""
    return [
        (conv.removeprefix("net."), bn.removeprefix("net."))
        for conv, bn in _pairs(_ImagePath(model), "")
    ]


def _pairs(root: nn.Module, prefix: str) -> list[tuple[str, str]]:
    """The foldable pairs of ``root``'s graph; where fx cannot trace it (control flow on
    the input, as MGN's check of the image height), those of each of its children."""
    try:
        graph = fx.Tracer().trace(root)
    except Exception:
        return [
            pair
            for name, child in root.named_children()
            for pair in _pairs(child, f"{prefix}{name}.")
        ]
    modules = dict(root.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], BATCHNORMS):
            continue
        source = node.args[0]
        if (
            isinstance(source, fx.Node)
            and source.op == "call_module"
            and isinstance(modules[source.target], CONVOLUTIONS)
            and len(source.users) == 1
            and calls[source.target] == calls[node.target] == 1
            and modules[node.target].track_running_stats
        ):
            pairs.append((f"{prefix}{source.target}", f"{prefix}{node.target}"))
    return pairs


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, int]:
    """A copy of ``model`` in eval mode with its foldable BatchNorms folded into the
    convolutions before them (each then the identity); returns it and how many were."""
    folded = copy.deepcopy(model).eval()
    pairs = conv_bn_pairs(folded)
    for conv_name, bn_name in pairs:
        conv, bn = folded.get_submodule(conv_name), folded.get_submodule(bn_name)
        weight, bias = fuse_conv_bn_weights(
            conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
        )
        conv.weight, conv.bias = weight, bias
        parent, _, name = bn_name.rpartition(".")
        setattr(folded.get_submodule(parent), name, nn.Identity())
    return folded, len(pairs)
