"""Evaluation: distances, ranking metrics (CMC, mAP, mINP) and k-reciprocal re-ranking."""
