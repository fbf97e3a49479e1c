"""Losses: cross-entropy with label smoothing, batch-hard triplet, center loss, and their
weighted sum."""

from __future__ import annotations

from reidkit.losses.center import CenterLoss
from reidkit.losses.total import ReIDLoss
from reidkit.losses.triplet import batch_hard_triplet

__all__ = ["CenterLoss", "ReIDLoss", "batch_hard_triplet"]
