"""Training machinery: checkpoints (and, later, the trainer, optimisers and schedules)."""
