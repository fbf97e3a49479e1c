"""torchreid's OSNet state dicts in reidkit's module names.

torchreid's OSNet (K. Zhou, deep-person-reid, torchreid/models/osnet.py, also OSNet-IBN)
and reidkit's are the same network with other module names:

    torchreid                            reidkit
    conv1.conv / conv1.bn                conv1.0 / conv1.1            (conv5 likewise)
    convS.B.conv1.conv / .bn             convS.B.reduce.0 / .1
    convS.B.conv2a                       convS.B.streams.0.0
    convS.B.conv2b.i / conv2c.i / 2d.i   convS.B.streams.1.i / 2.i / 3.i
      LightConv3x3 conv1 / conv2 / bn      pointwise / depthwise / bn
    convS.B.conv3.conv / .bn             convS.B.expand.0 / .1
    convS.B.downsample.conv / .bn        convS.B.shortcut.0 / .1
    convS.2.0.conv / .bn (transition)    convS.2.0.0 / .1
    fc.0 (Linear with bias)              fc.0 (no bias), the bias folded into fc.1
    convS.B.IN (instance norm)           unchanged

torchreid's OSNet-AIN (torchreid/models/osnet_ain.py) names its streams and transitions
otherwise:

    convS.B.conv2.T.layers.i             convS.B.streams.T.i
    poolS.0.conv / .bn (transition)      convS.2.0.0 / .1

reidkit's embedding layer has no bias because the batch norm after it subtracts the mean:
BN(Wx + b) with running mean m equals BN(Wx) with running mean m - b, in evaluation and,
since a batch's mean moves by b too, in training. Folding the bias keeps the features
torchreid computes (to float rounding) without a parameter that cannot learn anything.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_BLOCK = r"^(conv[234]\.\d+)\."
RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(pattern), replacement)
    for pattern, replacement in [
        (r"^(conv[15])\.conv\.", r"\1.0."),
        (r"^(conv[15])\.bn\.", r"\1.1."),
        (r"^(conv[23]\.2\.0)\.conv\.", r"\1.0."),  # the transition's 1x1 conv
        (r"^(conv[23]\.2\.0)\.bn\.", r"\1.1."),
        (r"^pool([23])\.0\.conv\.", r"conv\1.2.0.0."),  # OSNet-AIN's transitions
        (r"^pool([23])\.0\.bn\.", r"conv\1.2.0.1."),
        (_BLOCK + r"conv1\.conv\.", r"\1.reduce.0."),
        (_BLOCK + r"conv1\.bn\.", r"\1.reduce.1."),
        (_BLOCK + r"conv2a\.", r"\1.streams.0.0."),
        (_BLOCK + r"conv2b\.(\d+)\.", r"\1.streams.1.\2."),
        (_BLOCK + r"conv2c\.(\d+)\.", r"\1.streams.2.\2."),
        (_BLOCK + r"conv2d\.(\d+)\.", r"\1.streams.3.\2."),
        (_BLOCK + r"conv2\.(\d)\.layers\.(\d+)\.", r"\1.streams.\2.\3."),  # OSNet-AIN
        (_BLOCK + r"conv3\.conv\.", r"\1.expand.0."),
        (_BLOCK + r"conv3\.bn\.", r"\1.expand.1."),
        (_BLOCK + r"downsample\.conv\.", r"\1.shortcut.0."),
        (_BLOCK + r"downsample\.bn\.", r"\1.shortcut.1."),
    ]
]
# inside a stream, after the rules above: LightConv3x3's layers
_LIGHT = re.compile(r"(\.streams\.\d\.\d+)\.conv([12])\.")
_LIGHT_NAMES = {"1": "pointwise", "2": "depthwise"}
_MARK = re.compile(r"^conv[234]\.\d+\.(conv2a|conv2\.\d\.layers)\.")


def is_torchreid_osnet(state: Mapping[str, object]) -> bool:
    """Whether a state dict uses torchreid's OSNet names."""
    return any(_MARK.match(key) for key in state)


def rename(key: str) -> str:
    """One torchreid OSNet key in reidkit's names (other keys unchanged)."""
    for pattern, replacement in RULES:
        new, count = pattern.subn(replacement, key, count=1)
        if count:
            key = new
            break
    return _LIGHT.sub(lambda m: f"{m.group(1)}.{_LIGHT_NAMES[m.group(2)]}.", key)


def from_torchreid_osnet(state: Mapping[str, object]) -> dict[str, object]:
    """A torchreid OSNet state dict in reidkit's names, with the fc bias folded away."""
    out = {rename(key): value for key, value in state.items()}
    bias = out.pop("fc.0.bias", None)
    if bias is not None and "fc.1.running_mean" in out:
        out["fc.1.running_mean"] = out["fc.1.running_mean"] - bias
    elif bias is not None:
        out["fc.0.bias"] = bias  # no batch norm to fold it into: left for the report
    return out
