"""Margin-based identity losses on cosine logits (a model with ``classifier=cosine``):

- CosFace / AM-softmax (Wang et al., "CosFace", CVPR 2018; "Additive Margin Softmax",
  2018): the target logit is ``s * (cos - m)``, the others ``s * cos``.
- Circle loss, its classification form (Sun et al., "Circle Loss", CVPR 2020): with
  optima ``O_p = 1 + m``, ``O_n = -m`` and margins ``D_p = 1 - m``, ``D_n = m``, the
  target logit is ``s * a_p * (cos - D_p)`` with ``a_p = max(O_p - cos, 0)`` and the others
  ``s * a_n * (cos - D_n)`` with ``a_n = max(cos - O_n, 0)``; the weights ``a`` are not
  differentiated (the paper treats them as constants).

Both end in cross-entropy (with label smoothing) over the modified logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# loss: (scale, margin) by default: AM-softmax's s=30, m=0.35; Circle's m=0.25 (the
# paper's choice) with fast-reid's scale 64
DEFAULTS = {"cosface": (30.0, 0.35), "circle": (64.0, 0.25)}
MARGIN_LOSSES = tuple(DEFAULTS)


def margin_logits(
    cosine: torch.Tensor, labels: torch.Tensor, kind: str, scale: float, margin: float
):
    """The logits CosFace or Circle loss feeds to cross-entropy."""
    target = F.one_hot(labels, cosine.shape[1]).bool()
    cosine = cosine.float()
    if kind == "cosface":
        return scale * torch.where(target, cosine - margin, cosine)
    if kind == "circle":
        alpha_p = (1 + margin - cosine.detach()).clamp_min(0)
        alpha_n = (cosine.detach() + margin).clamp_min(0)
        positive = alpha_p * (cosine - (1 - margin))
        negative = alpha_n * (cosine - margin)
        return scale * torch.where(target, positive, negative)
    raise ValueError(f"unknown margin loss {kind!r}")
