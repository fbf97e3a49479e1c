"""Per-epoch figures of a run: metrics.csv (rewritten atomically each epoch) and, when
TensorBoard is installed, the same scalars under RUN/tb."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

from reidkit.fileio import atomic_open

log = logging.getLogger(__name__)

# what every epoch records; the loss parts come from ReIDLoss (see reidkit.losses)
TRAIN_FIELDS = (
    "epoch",
    "loss",
    "ce",
    "triplet",
    "center",
    "acc",
    "feat_norm",
    "d_ap",
    "d_an",
    "active",
    "w_triplet",
    "lr",
    "images_per_s",
    "seconds",
)


class MetricsLog:
    """metrics.csv with ``fields`` as its columns, plus TensorBoard scalars."""

    def __init__(self, run: Path, fields: tuple[str, ...]) -> None:
        self.path, self.fields = Path(run) / "metrics.csv", fields
        self.tb_dir = Path(run) / "tb"
        self._tb: Any = None  # a SummaryWriter once made; False when TensorBoard is absent

    def record(self, row: dict[str, Any]) -> None:
        """Write ``row`` as the line of its epoch (dropping lines of later epochs, which a
        resumed run trains again)."""
        self._tensorboard(row)
        rows = []
        if self.path.exists():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < row["epoch"]]
        rows.append({k: row.get(k, "") for k in self.fields})
        with atomic_open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(
                f, fieldnames=self.fields, lineterminator="\n", extrasaction="ignore"
            )
            writer.writeheader()
            writer.writerows(rows)

    def _tensorboard(self, row: dict[str, Any]) -> None:
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.warning(
                    "no TensorBoard scalars for this run: tensorboard is not installed "
                    "(pip install tensorboard; metrics.csv has the same figures)"
                )
                self._tb = False
                return
            self._tb = SummaryWriter(str(self.tb_dir))
        if self._tb:
            for key in self.fields[1:]:
                if isinstance(row.get(key), (int, float)):
                    self._tb.add_scalar(key, row[key], row["epoch"])
            self._tb.flush()
