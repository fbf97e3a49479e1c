"""What ``reidkit models`` shows of a model: its size, cost and declaration, and whether
its ImageNet weights are here."""

from __future__ import annotations

from typing import Any

from reidkit.models.factory import create_model, model_cfg


def model_info(name: str, height: int = 256, width: int = 128) -> dict[str, Any]:
    """Parameters (without the classifier), feature dimension, GFLOPs of one image, the
    model's declaration and whether its ImageNet weights are cached.

    GFLOPs count both the multiply and the add of each multiply-accumulate (torch's flop
    counter); papers that quote "FLOPs" for re-ID models usually count multiply-adds, half
    of this.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from reidkit.models.pretrained import is_cached

    cfg = model_cfg(name)
    model = create_model(name, num_classes=1, image_size=(height, width)).eval()
    params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("classifier"))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, height, width))
    return {
        "name": name,
        "params": params,
        "gflops": round(counter.get_total_flops() / 1e9, 3),
        "description": cfg.description,
        **cfg.to_dict(),
        "feature_dim": model.feature_dim,
        "imagenet_cached": is_cached(cfg),
    }
