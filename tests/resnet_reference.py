"""The ResNets of the re-ID literature written down from the facts of their authors' code:
the tensors their state dicts hold (names, shapes) and a functional forward pass over those
names. reidkit's ResNet family is checked against this, independently of its module code.

Facts used:

- a torchvision-style ResNet (7x7 stem, stride 2, 3x3 max pool, the stride of a bottleneck
  on its 3x3 conv, downsample = 1x1 conv + BN); the stem's pool pads by one (torchvision,
  torchreid, fast-reid before 2020-11-06) or, in fast-reid's later code, has no padding and
  rounds up (``ceil_mode=True``);
- IBN-Net (XingangPan/IBN-Net ibnnet/resnet_ibn.py and modules.py; torchreid's
  resnet_ibn_a.py / resnet_ibn_b.py build the same trunks under the same names): IBN-a:
  ``bn1`` of every block in layer1-3 splits its channels, the first int(planes / 2) through
  an affine InstanceNorm ``bn1.IN``, the rest through BatchNorm ``bn1.BN``; IBN-b: the
  stem's ``bn1`` is an affine InstanceNorm, and ``IN`` (affine InstanceNorm) normalises the
  sum of the last block of layer1 and of layer2 before its ReLU; the ImageNet classifier is
  ``fc``;
- fast-reid's non-local blocks (fastreid/layers/non_local.py, backbones/resnet.py): in
  stage s a list ``NL_s`` of blocks, R50 (0, 2, 3, 0) per stage and R101 (0, 2, 9, 0), the
  j-th after block ``sorted(blocks - (i + 1) for i in range(count))[j]``; a block holds 1x1
  convolutions ``g``, ``theta``, ``phi`` (C -> 1, with bias: the inner width is
  ``reduc_ratio // reduc_ratio``) and ``W`` = (1x1 conv 1 -> C with bias, BatchNorm C); it
  returns ``W(y) + x`` with y = (theta(x)^T phi(x) / N) g(x) over the N positions;
- GeM pooling (fast-reid layers/pooling.py): clamp to 1e-6, power p, average, power 1/p.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LAYOUTS = {18: (False, (2, 2, 2, 2)), 50: (True, (3, 4, 6, 3)), 101: (True, (3, 4, 23, 3))}
PLANES = (64, 128, 256, 512)
NON_LOCAL = {50: (0, 2, 3, 0), 101: (0, 2, 9, 0)}  # blocks per stage (fast-reid)


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


def non_local_after(depth: int, stage: int) -> list[int]:
    """The blocks of ``stage`` followed by a non-local block, as fast-reid computes them."""
    count, blocks_in_stage = NON_LOCAL[depth][stage], LAYOUTS[depth][1][stage]
    return sorted([blocks_in_stage - (i + 1) for i in range(count)])


def resnet_state(
    depth: int, design: str | None, seed: int = 0, classes: int = 1000, non_local=False
) -> dict:
    """A state dict as IBN-Net's files (``design`` "a" or "b") or torchvision's (None) hold
    it, with ``fc`` and no ``num_batches_tracked`` (the published files have none), and
    fast-reid's non-local blocks when asked; random trained-looking values."""
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
    if non_local:
        for stage, count in enumerate(NON_LOCAL[depth]):
            width = PLANES[stage] * 4
            for j in range(count):
                p = f"NL_{stage + 1}.{j}"
                for name in ("g", "theta", "phi"):
                    conv(f"{p}.{name}.weight", 1, width, 1)
                    state[f"{p}.{name}.bias"] = rand(1)
                conv(f"{p}.W.0.weight", width, 1, 1)
                state[f"{p}.W.0.bias"] = rand(width)
                bn(f"{p}.W.1", width)
                # small scales, as trained blocks have them (they start at zero): the
                # block's output grows with the square of its input, which random scales
                # of 1 make explode over five blocks
                state[f"{p}.W.1.weight"] = 0.2 * torch.rand(width, generator=g)
    state["fc.weight"] = rand(classes, PLANES[-1] * (4 if bottleneck else 1))
    state["fc.bias"] = rand(classes)
    return state


def resnet_features(
    state: dict, x: torch.Tensor, depth: int, design: str | None, gem_p=None, **trunk
) -> torch.Tensor:
    """The trunk's pooled output (average, or GeM with ``gem_p``), in evaluation mode: the
    pooled :func:`resnet_map` (``trunk``: its options)."""
    x = resnet_map(state, x, depth, design, **trunk)
    if gem_p is None:
        return x.mean((2, 3))
    return x.clamp(min=1e-6).pow(gem_p).mean((2, 3)).pow(1.0 / gem_p)


def resnet_map(
    state: dict,
    x: torch.Tensor,
    depth: int,
    design: str | None,
    last_stride: int = 2,
    non_local: bool = False,
    stem_pool: str = "padding",
    calibrate: bool = False,
) -> torch.Tensor:
    """The trunk's final feature map, in evaluation mode; with ``calibrate``, BatchNorm
    normalises by the batch and writes the batch's statistics into
    ``state`` as its running ones (random running statistics let deep trunks' activations
    grow to 1e5, too large for the non-local blocks' products)."""
    bottleneck, _ = LAYOUTS[depth]

    def bn(x, p):
        return F.batch_norm(
            x, state[f"{p}.running_mean"], state[f"{p}.running_var"],
            state[f"{p}.weight"], state[f"{p}.bias"], calibrate, 1.0, 1e-5,
        )  # fmt: skip

    def inorm(x, p):
        return F.instance_norm(x, weight=state[f"{p}.weight"], bias=state[f"{p}.bias"], eps=1e-5)

    def norm1(x, p, stage):
        if design == "a" and stage < 3:
            half = state[f"{p}.bn1.IN.weight"].numel()
            return torch.cat([inorm(x[:, :half], f"{p}.bn1.IN"), bn(x[:, half:], f"{p}.bn1.BN")], 1)
        return bn(x, f"{p}.bn1")

    def conv1x1(x, p):
        return F.conv2d(x, state[f"{p}.weight"], state[f"{p}.bias"])

    def nonlocal_block(x, p):
        n, _, h, w = x.shape
        g_x = conv1x1(x, f"{p}.g").view(n, 1, -1).permute(0, 2, 1)
        theta_x = conv1x1(x, f"{p}.theta").view(n, 1, -1).permute(0, 2, 1)
        phi_x = conv1x1(x, f"{p}.phi").view(n, 1, -1)
        f = torch.matmul(theta_x, phi_x) / (h * w)
        y = torch.matmul(f, g_x).permute(0, 2, 1).contiguous().view(n, 1, h, w)
        return bn(conv1x1(y, f"{p}.W.0"), f"{p}.W.1") + x

    x = F.conv2d(x, state["conv1.weight"], stride=2, padding=3)
    x = F.relu(inorm(x, "bn1") if design == "b" else bn(x, "bn1"))
    ceil = stem_pool == "ceil"  # no padding, rounding up; else torchvision's padding of 1
    x = F.max_pool2d(x, 3, 2, padding=0 if ceil else 1, ceil_mode=ceil)
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
        block = int(p.split(".")[1])
        if non_local and block in non_local_after(depth, stage):
            x = nonlocal_block(x, f"NL_{stage + 1}.{non_local_after(depth, stage).index(block)}")
    return x
