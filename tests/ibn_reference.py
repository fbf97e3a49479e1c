"""IBN-Net's ResNets written down from the facts of its code (XingangPan/IBN-Net,
ibnnet/resnet_ibn.py and modules.py; torchreid's resnet_ibn_a.py / resnet_ibn_b.py build the
same trunks under the same names): the tensors its state dicts hold (names, shapes) and a
functional forward pass over those names. This is the reference reidkit's IBN-Net trunks
are checked against, independent of reidkit's module code.

Facts used: a torchvision-style ResNet (7x7 stem, stride 2, 3x3 max pool with padding 1,
the stride of a bottleneck on its 3x3 conv, downsample = 1x1 conv + BN); IBN-a: ``bn1`` of
every block in layer1-3 splits its channels, the first int(planes / 2) through an affine
InstanceNorm ``bn1.IN``, the rest through BatchNorm ``bn1.BN``; IBN-b: the stem's ``bn1``
is an affine InstanceNorm, and ``IN`` (affine InstanceNorm) normalises the sum of the last
block of layer1 and of layer2 before its ReLU; IBN-Net's ImageNet classifier is ``fc``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LAYOUTS = {18: (False, (2, 2, 2, 2)), 50: (True, (3, 4, 6, 3)), 101: (True, (3, 4, 23, 3))}
PLANES = (64, 128, 256, 512)


def blocks(depth: int):
    """(prefix, in channels, planes, stride, is the stage's last block, stage index)."""
    bottleneck, counts = LAYOUTS[depth]
    expansion = 4 if bottleneck else 1
    inplanes = 64
    for stage, (count, planes) in enumerate(zip(counts, PLANES, strict=True)):
        for b in range(count):
            stride = 2 if stage > 0 and b == 0 else 1
            yield f"layer{stage + 1}.{b}", inplanes, planes, stride, b == count - 1, stage
            inplanes = planes * expansion


def ibn_state(depth: int, design: str, seed: int = 0, classes: int = 1000) -> dict:
    """A state dict as IBN-Net's files hold it (with ``fc``, and no ``num_batches_tracked``:
    its published files have none), with random trained-looking values."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    bottleneck, _ = LAYOUTS[depth]

    def rand(*shape, scale=0.1):
        return torch.randn(*shape, generator=g) * scale

    def conv(key, cout, cin, k):
        state[key] = rand(cout, cin, k, k, scale=(2 / (cin * k * k)) ** 0.5)

    def bn(prefix, c):
        state[f"{prefix}.weight"] = 1 + rand(c)
        state[f"{prefix}.bias"] = rand(c)
        state[f"{prefix}.running_mean"] = rand(c)
        state[f"{prefix}.running_var"] = 0.5 + torch.rand(c, generator=g)

    def inorm(prefix, c):
        state[f"{prefix}.weight"] = 1 + rand(c)
        state[f"{prefix}.bias"] = rand(c)

    conv("conv1.weight", 64, 3, 7)
    (inorm if design == "b" else bn)("bn1", 64)
    for prefix, cin, planes, stride, last, stage in blocks(depth):
        out = planes * (4 if bottleneck else 1)
        conv(f"{prefix}.conv1.weight", planes, cin, 1 if bottleneck else 3)
        if design == "a" and stage < 3:
            inorm(f"{prefix}.bn1.IN", planes // 2)
            bn(f"{prefix}.bn1.BN", planes - planes // 2)
        else:
            bn(f"{prefix}.bn1", planes)
        if bottleneck:
            conv(f"{prefix}.conv2.weight", planes, planes, 3)
            bn(f"{prefix}.bn2", planes)
            conv(f"{prefix}.conv3.weight", out, planes, 1)
            bn(f"{prefix}.bn3", out)
        else:
            conv(f"{prefix}.conv2.weight", planes, planes, 3)
            bn(f"{prefix}.bn2", planes)
        if stride != 1 or cin != out:
            conv(f"{prefix}.downsample.0.weight", out, cin, 1)
            bn(f"{prefix}.downsample.1", out)
        if design == "b" and last and stage < 2:
            inorm(f"{prefix}.IN", out)
    state["fc.weight"] = rand(classes, PLANES[-1] * (4 if bottleneck else 1))
    state["fc.bias"] = rand(classes)
    return state


def ibn_features(state: dict, x: torch.Tensor, depth: int, design: str, last_stride=2):
    """The trunk's globally average-pooled output, in evaluation mode."""
    bottleneck, _ = LAYOUTS[depth]

    def bn(x, p):
        return F.batch_norm(
            x, state[f"{p}.running_mean"], state[f"{p}.running_var"],
            state[f"{p}.weight"], state[f"{p}.bias"], False, 0.0, 1e-5,
        )  # fmt: skip

    def inorm(x, p):
        return F.instance_norm(x, weight=state[f"{p}.weight"], bias=state[f"{p}.bias"], eps=1e-5)

    def norm1(x, p, stage):
        if design == "a" and stage < 3:
            half = state[f"{p}.bn1.IN.weight"].numel()
            return torch.cat([inorm(x[:, :half], f"{p}.bn1.IN"), bn(x[:, half:], f"{p}.bn1.BN")], 1)
        return bn(x, f"{p}.bn1")

    x = F.conv2d(x, state["conv1.weight"], stride=2, padding=3)
    x = inorm(x, "bn1") if design == "b" else bn(x, "bn1")
    x = F.max_pool2d(F.relu(x), 3, 2, 1)
    for p, _, _, stride, _last, stage in blocks(depth):
        if stage == 3 and stride == 2:
            stride = last_stride
        if bottleneck:
            out = F.relu(norm1(F.conv2d(x, state[f"{p}.conv1.weight"]), p, stage))
            out = F.relu(
                bn(F.conv2d(out, state[f"{p}.conv2.weight"], stride=stride, padding=1), f"{p}.bn2")
            )
            out = bn(F.conv2d(out, state[f"{p}.conv3.weight"]), f"{p}.bn3")
        else:
            out = F.relu(
                norm1(F.conv2d(x, state[f"{p}.conv1.weight"], stride=stride, padding=1), p, stage)
            )
            out = bn(F.conv2d(out, state[f"{p}.conv2.weight"], padding=1), f"{p}.bn2")
        if f"{p}.downsample.0.weight" in state:
            x = bn(
                F.conv2d(x, state[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1"
            )
        out = out + x
        if f"{p}.IN.weight" in state:
            out = inorm(out, f"{p}.IN")
        x = F.relu(out)
    return x.mean((2, 3))
