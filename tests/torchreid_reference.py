"""torchreid's OSNet written down from the facts of its model code (torchreid/models/
osnet.py, K. Zhou, deep-person-reid): the tensors its state dicts hold (names, shapes) and a
functional forward pass over those names. torchreid cannot run here; this is the reference
reidkit's OSNet is checked against, independent of reidkit's module code.
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


def torchreid_osnet_state(channels, num_classes=751, seed=0) -> dict[str, torch.Tensor]:
    """A state dict with torchreid's OSNet names and shapes, random trained-looking values."""
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

    def conv_layer(prefix, cin, cout, k):  # ConvLayer / Conv1x1 / Conv1x1Linear
        state[f"{prefix}.conv.weight"] = rand(cout, cin, k, k, scale=(2 / (cin * k * k)) ** 0.5)
        bn(f"{prefix}.bn", cout)

    def light(prefix, c):  # LightConv3x3
        state[f"{prefix}.conv1.weight"] = rand(c, c, 1, 1, scale=(2 / c) ** 0.5)
        state[f"{prefix}.conv2.weight"] = rand(c, 1, 3, 3, scale=0.3)
        bn(f"{prefix}.bn", c)

    def block(prefix, cin, cout):  # OSBlock
        mid = cout // 4
        conv_layer(f"{prefix}.conv1", cin, mid, 1)
        for name, depth in STREAMS.items():
            if depth == 1:
                light(f"{prefix}.{name}", mid)
            else:
                for i in range(depth):
                    light(f"{prefix}.{name}.{i}", mid)
        hidden = mid // 16
        state[f"{prefix}.gate.fc1.weight"] = rand(hidden, mid, 1, 1)
        state[f"{prefix}.gate.fc1.bias"] = rand(hidden)
        state[f"{prefix}.gate.fc2.weight"] = rand(mid, hidden, 1, 1)
        state[f"{prefix}.gate.fc2.bias"] = rand(mid)
        conv_layer(f"{prefix}.conv3", mid, cout, 1)
        if cin != cout:
            conv_layer(f"{prefix}.downsample", cin, cout, 1)

    c0, c1, c2, c3 = channels
    conv_layer("conv1", 3, c0, 7)
    for stage, (cin, cout) in zip((2, 3, 4), ((c0, c1), (c1, c2), (c2, c3)), strict=True):
        block(f"conv{stage}.0", cin, cout)
        block(f"conv{stage}.1", cout, cout)
        if stage < 4:
            conv_layer(f"conv{stage}.2.0", cout, cout, 1)  # transition, then 2x2 avg pool
    conv_layer("conv5", c3, c3, 1)
    state["fc.0.weight"] = rand(512, c3, scale=c3**-0.5)
    state["fc.0.bias"] = rand(512)
    bn("fc.1", 512)
    state["classifier.weight"] = rand(num_classes, 512)
    state["classifier.bias"] = rand(num_classes)
    return state


def torchreid_osnet_forward(state, x):
    """torchreid's OSNet in evaluation mode, as functions of its state dict's names."""

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

    def conv_layer(x, p, stride=1, padding=0, relu=True):
        x = bn(F.conv2d(x, state[f"{p}.conv.weight"], stride=stride, padding=padding), f"{p}.bn")
        return F.relu(x) if relu else x

    def light(x, p):
        x = F.conv2d(x, state[f"{p}.conv1.weight"])
        x = F.conv2d(x, state[f"{p}.conv2.weight"], padding=1, groups=x.shape[1])
        return F.relu(bn(x, f"{p}.bn"))

    def gate(x, p):
        w = F.adaptive_avg_pool2d(x, 1)
        w = F.relu(F.conv2d(w, state[f"{p}.fc1.weight"], state[f"{p}.fc1.bias"]))
        return x * torch.sigmoid(F.conv2d(w, state[f"{p}.fc2.weight"], state[f"{p}.fc2.bias"]))

    def block(x, p):
        x1 = conv_layer(x, f"{p}.conv1")
        fused = 0
        for name, depth in STREAMS.items():
            y = x1
            for i in range(depth):
                y = light(y, f"{p}.{name}" if depth == 1 else f"{p}.{name}.{i}")
            fused = fused + gate(y, f"{p}.gate")
        out = conv_layer(fused, f"{p}.conv3", relu=False)
        identity = (
            conv_layer(x, f"{p}.downsample", relu=False)
            if f"{p}.downsample.conv.weight" in state
            else x
        )
        return F.relu(out + identity)

    x = F.max_pool2d(conv_layer(x, "conv1", stride=2, padding=3), 3, stride=2, padding=1)
    for stage in (2, 3, 4):
        x = block(block(x, f"conv{stage}.0"), f"conv{stage}.1")
        if stage < 4:
            x = F.avg_pool2d(conv_layer(x, f"conv{stage}.2.0"), 2, stride=2)
    x = conv_layer(x, "conv5")
    v = F.adaptive_avg_pool2d(x, 1).flatten(1)
    v = F.linear(v, state["fc.0.weight"], state["fc.0.bias"])
    return F.relu(bn(v, "fc.1"))
