"""torchreid's OSNet written down from the facts of its model code (torchreid/models/
osnet.py and osnet_ain.py, K. Zhou, deep-person-reid): the tensors its state dicts hold
(names, shapes) and a functional forward pass over those names. torchreid cannot run here;
this is the reference reidkit's OSNet is checked against, independent of reidkit's module
code.

The instance-norm models, from the same files: ``osnet_ibn_x1_0`` is osnet.py's OSNet with
``IN=True``: the stem's ConvLayer normalises with an affine InstanceNorm2d (still named
``conv1.bn``) and both conv2 blocks apply an affine InstanceNorm2d ``IN`` to the residual sum
before the ReLU. ``osnet_ain_*`` is osnet_ain.py's own OSNet: the stem as IBN's; blocks
``[[OSBlockINin, OSBlockINin], [OSBlock, OSBlockINin], [OSBlockINin, OSBlock]]``, where an
OSBlockINin's conv3 has no batch norm and its ``IN`` normalises conv3's output before the
sum; the streams are a ModuleList ``conv2`` of LightConvStream (``conv2.T.layers.i``), and
the transitions are separate modules ``pool2`` / ``pool3`` (Conv1x1, then 2x2 avg pool).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# conv1, conv2, conv3 and conv4 output channels of torchreid's osnet_x1_0 ... osnet_x0_25
TORCHREID_CHANNELS = {
    "osnet_x1_0": (64, 256, 384, 512),
    "osnet_x0_75": (48, 192, 288, 384),
    "osnet_x0_5": (32, 128, 192, 256),
    "osnet_x0_25": (16, 64, 96, 128),
}
STREAMS = {"conv2a": 1, "conv2b": 2, "conv2c": 3, "conv2d": 4}  # LightConv3x3 layers each
# the instance-norm models: name -> (design, channels)
TORCHREID_IN_MODELS = {
    "osnet_ibn_x1_0": ("ibn", TORCHREID_CHANNELS["osnet_x1_0"]),
    **{
        f"osnet_ain_{w}": ("ain", TORCHREID_CHANNELS[f"osnet_{w}"])
        for w in ("x1_0", "x0_75", "x0_5", "x0_25")
    },
}
# osnet_ain's block types per stage (True: OSBlockINin)
AIN_BLOCKS = ((True, True), (False, True), (True, False))


def _in_block(design, stage, index):
    """Where a block's instance norm is: "sum" (IBN), "branch" (OSBlockINin) or None."""
    if design == "ibn":
        return "sum" if stage == 2 else None
    if design == "ain":
        return "branch" if AIN_BLOCKS[stage - 2][index] else None
    return None


def _stream_name(design, prefix, depth, i):
    if design == "ain":
        return f"{prefix}.conv2.{depth - 1}.layers.{i}"
    name = "conv2" + "abcd"[depth - 1]
    return f"{prefix}.{name}" if depth == 1 else f"{prefix}.{name}.{i}"


def _transition_name(design, stage):
    return f"pool{stage}.0" if design == "ain" else f"conv{stage}.2.0"


def torchreid_osnet_state(
    channels, num_classes=751, seed=0, design=None
) -> dict[str, torch.Tensor]:
    """A state dict with torchreid's OSNet names and shapes, random trained-looking values;
    ``design`` "ibn" or "ain" for the instance-norm models."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def rand(*shape, scale=0.1):
        return torch.randn(*shape, generator=g) * scale

    def bn(prefix, c):
        state[f"{prefix}.weight"] = 1 + rand(c)
        state[f"{prefix}.bias"] = rand(c)
        state[f"{prefix}.running_mean"] = rand(c)
        state[f"{prefix}.running_var"] = 0.5 + torch.rand(c, generator=g)
        state[f"{prefix}.num_batches_tracked"] = torch.tensor(1000)

    def affine(prefix, c):  # InstanceNorm2d(affine=True): no running statistics
        state[f"{prefix}.weight"] = 1 + rand(c)
        state[f"{prefix}.bias"] = rand(c)

    def conv_layer(prefix, cin, cout, k, norm="bn"):  # ConvLayer / Conv1x1 / Conv1x1Linear
        state[f"{prefix}.conv.weight"] = rand(cout, cin, k, k, scale=(2 / (cin * k * k)) ** 0.5)
        if norm == "bn":
            bn(f"{prefix}.bn", cout)
        elif norm == "in":
            affine(f"{prefix}.bn", cout)

    def light(prefix, c):  # LightConv3x3
        state[f"{prefix}.conv1.weight"] = rand(c, c, 1, 1, scale=(2 / c) ** 0.5)
        state[f"{prefix}.conv2.weight"] = rand(c, 1, 3, 3, scale=0.3)
        bn(f"{prefix}.bn", c)

    def block(prefix, cin, cout, instance_norm):  # OSBlock / OSBlockINin
        mid = cout // 4
        conv_layer(f"{prefix}.conv1", cin, mid, 1)
        for depth in STREAMS.values():
            for i in range(depth):
                light(_stream_name(design, prefix, depth, i), mid)
        hidden = mid // 16
        state[f"{prefix}.gate.fc1.weight"] = rand(hidden, mid, 1, 1)
        state[f"{prefix}.gate.fc1.bias"] = rand(hidden)
        state[f"{prefix}.gate.fc2.weight"] = rand(mid, hidden, 1, 1)
        state[f"{prefix}.gate.fc2.bias"] = rand(mid)
        conv_layer(
            f"{prefix}.conv3", mid, cout, 1, norm=None if instance_norm == "branch" else "bn"
        )
        if cin != cout:
            conv_layer(f"{prefix}.downsample", cin, cout, 1)
        if instance_norm:
            affine(f"{prefix}.IN", cout)

    c0, c1, c2, c3 = channels
    conv_layer("conv1", 3, c0, 7, norm="in" if design else "bn")
    for stage, (cin, cout) in zip((2, 3, 4), ((c0, c1), (c1, c2), (c2, c3)), strict=True):
        block(f"conv{stage}.0", cin, cout, _in_block(design, stage, 0))
        block(f"conv{stage}.1", cout, cout, _in_block(design, stage, 1))
        if stage < 4:  # transition, then 2x2 avg pool
            conv_layer(_transition_name(design, stage), cout, cout, 1)
    conv_layer("conv5", c3, c3, 1)
    state["fc.0.weight"] = rand(512, c3, scale=c3**-0.5)
    state["fc.0.bias"] = rand(512)
    bn("fc.1", 512)
    state["classifier.weight"] = rand(num_classes, 512)
    state["classifier.bias"] = rand(num_classes)
    return state


def torchreid_osnet_forward(state, x, design=None):
    """torchreid's OSNet in evaluation mode, as functions of its state dict's names."""

    def instance(x, p):
        return F.instance_norm(x, weight=state[f"{p}.weight"], bias=state[f"{p}.bias"], eps=1e-5)

    def bn(x, p):
        fn = F.batch_norm
        return fn(
            x,
            state[f"{p}.running_mean"],
            state[f"{p}.running_var"],
            state[f"{p}.weight"],
            state[f"{p}.bias"],
            False,
            0.0,
            1e-5,
        )

    def conv_layer(x, p, stride=1, padding=0, relu=True, norm="bn"):
        x = F.conv2d(x, state[f"{p}.conv.weight"], stride=stride, padding=padding)
        if norm == "bn":
            x = bn(x, f"{p}.bn")
        elif norm == "in":
            x = instance(x, f"{p}.bn")
        return F.relu(x) if relu else x

    def light(x, p):
        x = F.conv2d(x, state[f"{p}.conv1.weight"])
        x = F.conv2d(x, state[f"{p}.conv2.weight"], padding=1, groups=x.shape[1])
        return F.relu(bn(x, f"{p}.bn"))

    def gate(x, p):
        w = F.adaptive_avg_pool2d(x, 1)
        w = F.relu(F.conv2d(w, state[f"{p}.fc1.weight"], state[f"{p}.fc1.bias"]))
        return x * torch.sigmoid(F.conv2d(w, state[f"{p}.fc2.weight"], state[f"{p}.fc2.bias"]))

    def block(x, p, instance_norm):
        x1 = conv_layer(x, f"{p}.conv1")
        fused = 0
        for depth in STREAMS.values():
            y = x1
            for i in range(depth):
                y = light(y, _stream_name(design, p, depth, i))
            fused = fused + gate(y, f"{p}.gate")
        branch = instance_norm == "branch"
        out = conv_layer(fused, f"{p}.conv3", relu=False, norm=None if branch else "bn")
        if branch:
            out = instance(out, f"{p}.IN")
        identity = (
            conv_layer(x, f"{p}.downsample", relu=False)
            if f"{p}.downsample.conv.weight" in state
            else x
        )
        out = out + identity
        if instance_norm == "sum":
            out = instance(out, f"{p}.IN")
        return F.relu(out)

    stem_norm = "in" if design else "bn"
    x = conv_layer(x, "conv1", stride=2, padding=3, norm=stem_norm)
    x = F.max_pool2d(x, 3, stride=2, padding=1)
    for stage in (2, 3, 4):
        x = block(x, f"conv{stage}.0", _in_block(design, stage, 0))
        x = block(x, f"conv{stage}.1", _in_block(design, stage, 1))
        if stage < 4:
            x = F.avg_pool2d(conv_layer(x, _transition_name(design, stage)), 2, stride=2)
    x = conv_layer(x, "conv5")
    v = F.adaptive_avg_pool2d(x, 1).flatten(1)
    v = F.linear(v, state["fc.0.weight"], state["fc.0.bias"])
    return F.relu(bn(v, "fc.1"))
