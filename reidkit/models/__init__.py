"""Models: a registry of re-ID networks (ResNets with a BNNeck head, OSNet)."""

from __future__ import annotations

from reidkit.models.factory import (
    MODELS,
    create_model,
    list_models,
    load_weights,
    model_distance,
    model_info,
)

__all__ = ["MODELS", "create_model", "list_models", "load_weights", "model_distance", "model_info"]
