"""Losses: cross-entropy with label smoothing, batch-hard triplet, and their weighted sum."""

from __future__ import annotations

from reidkit.losses.total import ReIDLoss
from reidkit.losses.triplet import batch_hard_triplet

__all__ = ["ReIDLoss", "batch_hard_triplet"]
