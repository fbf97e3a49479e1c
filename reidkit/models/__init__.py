"""Models: a registry of re-ID networks (ResNets with a BNNeck head, OSNet, timm trunks),
each declaring what it supports, and loading the weights people have."""

from __future__ import annotations

from reidkit.models.factory import (
    create_model,
    list_models,
    model_cfg,
    model_distance,
    model_options,
)
from reidkit.models.info import model_info
from reidkit.models.spec import MODELS, ModelCfg, Pretrained, register_model
from reidkit.models.weights import load_weights, read_state_dict

__all__ = [
    "MODELS",
    "ModelCfg",
    "Pretrained",
    "create_model",
    "list_models",
    "load_weights",
    "model_cfg",
    "model_distance",
    "model_info",
    "model_options",
    "read_state_dict",
    "register_model",
]
