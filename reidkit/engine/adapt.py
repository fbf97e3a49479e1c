"""Clustering-based adaptation inside the training loop (``adapt.enabled``, which the
recipes configs/adapt_*.yaml set): Cluster Contrast (Dai et al., ACCV 2022) on the
unlabelled training images of ``data.dataset``.

At the start of each epoch the trainer asks :meth:`Adapter.begin_epoch` for that epoch's
training samples: the features of every training image (as ``extract`` computes them),
DBSCAN pseudo-labels on their Jaccard distances (:mod:`reidkit.engine.pseudo_labels`), the
outliers left out, and the cluster memory reset to the clusters' centroids. The memory's
logits replace the classifier's; after every step each sample's centroid moves towards it
(:meth:`Adapter.after_step`). The dataset's own identities are never trained on: they only
score the pseudo-labels (NMI, ARI, pairwise precision and recall in metrics.csv).

Under torchrun each process extracts its share of the images, rank 0 clusters the
gathered features and broadcasts the labels, and every process applies every process's
samples to its memory in rank order, so the memories stay equal.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from reidkit.config import Config
from reidkit.data.sample import cameras_of
from reidkit.errors import ReidkitError

log = logging.getLogger(__name__)
# what each epoch records of its pseudo-labels (agreement's keys; blank without identities)
ADAPT_FIELDS = ("clusters", "outliers", "nmi", "ari", "pair_precision", "pair_recall")


def check_adaptable(model, name: str) -> None:
    """The memory holds the features ``extract`` writes (after a BNNeck) and the loss
    compares the training's metric features with it: they must be the same features, one
    per image.

    Raises:
        UsageError: a model that trains several features (MGN's branches) or, with a
            BNNeck, trains on the feature before it.
    """
    from reidkit.errors import UsageError

    if model.metric_features > 1:
        raise UsageError(
            f"adapt.enabled needs one feature per image; {name} trains {model.metric_features}",
            hint="adapt a model with one embedding (a ResNet, OSNet, a timm model)",
        )
    if getattr(model, "bnneck", None) is not None and getattr(model, "neck_feat", "") != "after":
        raise UsageError(
            f"adapt.enabled: {name} trains on its feature before the BNNeck, and the cluster "
            "memory holds the feature after it (what extract writes)",
            hint="model.neck_feat=after where the model has it, or model.bnneck=false",
        )


class Adapter:
    """Pseudo-labels and the cluster memory of one run.

    Args:
        config: the run's config (``adapt`` section enabled).
        samples: the target's training images; their pids only score the pseudo-labels.
        feature_dim: the model's feature length.
        device, rank, world: where the memory lives, and this process's place.
    """

    def __init__(
        self, config: Config, samples, feature_dim: int, device: str, rank: int, world: int
    ):
        from reidkit.engine.pseudo_labels import Clustering
        from reidkit.losses.memory import ClusterMemory

        a = config.adapt
        self.config, self.samples = config, list(samples)
        self.device, self.rank, self.world = device, rank, world
        self.clustering = Clustering(a.eps, a.min_samples, a.k1, a.k2, a.variant)
        self.memory = ClusterMemory(feature_dim, a.temperature, a.momentum).to(device)
        self.cameras = np.array(cameras_of(self.samples))
        truth = np.array([s.pid for s in self.samples])
        # identities to score against: a dataset whose images carry them (not all -1/0)
        self.truth = truth if len(np.unique(truth)) > 1 else None
        self.labels: np.ndarray | None = None  # this epoch's pseudo-labels
        self.epoch = -1  # the epoch they were made for
        self.row: dict[str, Any] = {}  # what they were, for metrics.csv

    def begin_epoch(self, model, epoch: int) -> list:
        """This epoch's training samples, labelled with their clusters (made now unless
        this epoch's were restored from a checkpoint)."""
        import torch

        if self.epoch != epoch:
            features = self._features(model)
            labels = self._cluster(features)
            # the centroids go to the memory's device (ClusterMemory.reset)
            self.memory.reset(torch.from_numpy(features), torch.from_numpy(labels))
            self.labels, self.epoch = labels, epoch
            self.row = self._describe(labels)
            log.info(
                "epoch %d: %d clusters, %d outliers of %d images%s",
                epoch + 1, self.row["clusters"], self.row["outliers"], len(labels),
                "" if self.truth is None else
                f"; against the true identities NMI {self.row['nmi']:.3f}, ARI "
                f"{self.row['ari']:.3f}, pairs P {self.row['pair_precision']:.3f} R "
                f"{self.row['pair_recall']:.3f}",
            )  # fmt: skip
        p = self.config.data.batch_size // self.config.data.num_instances
        if self.row["clusters"] < p:
            raise ReidkitError(
                f"epoch {epoch + 1}: DBSCAN found {self.row['clusters']} clusters, and a batch "
                f"takes {p} (data.batch_size / data.num_instances)",
                hint="raise adapt.eps (or lower adapt.min_samples), or take fewer "
                "identities per batch",
            )
        return [
            s._replace(pid=int(y)) for s, y in zip(self.samples, self.labels, strict=True) if y >= 0
        ]

    def logits(self, features):
        """The memory's logits for the features of a batch."""
        return self.memory(features)

    def after_step(self, features, labels) -> None:
        """Move the centroids towards the batch's samples (every process's, in rank order)."""
        import torch

        features, labels = features.detach().float(), labels.detach()
        if self.world > 1:
            gathered = [torch.empty_like(features) for _ in range(self.world)]
            torch.distributed.all_gather(gathered, features.contiguous())
            ids = [torch.empty_like(labels) for _ in range(self.world)]
            torch.distributed.all_gather(ids, labels.contiguous())
            features, labels = torch.cat(gathered), torch.cat(ids)
        self.memory.update(features, labels)

    def replicated(self) -> tuple:
        """What every process must hold alike after an epoch: the memory."""
        return (self.memory.centroids,)

    def state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "labels": None if self.labels is None else self.labels.tolist(),
            "centroids": self.memory.centroids.detach().cpu(),
            "row": self.row,
        }

    def load(self, state: dict[str, Any] | None) -> None:
        if not state or state.get("labels") is None:
            return
        self.epoch, self.row = state["epoch"], state["row"]
        self.labels = np.asarray(state["labels"], dtype=np.int64)
        self.memory.centroids = state["centroids"].to(self.device)

    # -- the epoch's pseudo-labels ------------------------------------------------------
    def _features(self, model) -> np.ndarray:
        """Every training image's features: each process computes its share, and all of
        them are gathered on every process."""
        import torch

        from reidkit.engine.evaluation import features_during_training

        model.eval()
        share = self.samples[self.rank :: self.world]
        features = features_during_training(model, share, self.config, self.device)
        model.train()
        if self.world == 1:
            return features
        parts: list = [None] * self.world
        torch.distributed.all_gather_object(parts, features)
        out = np.empty((len(self.samples), features.shape[1]), dtype=np.float32)
        for r, part in enumerate(parts):
            out[r :: self.world] = part
        return out

    def _cluster(self, features: np.ndarray) -> np.ndarray:
        """DBSCAN on rank 0 (of the camera-centred features if asked), its labels sent to
        every process."""
        from reidkit.engine.pseudo_labels import camera_centred, pseudo_labels

        labels = None
        if self.rank == 0:
            device = "cuda" if self.device.startswith("cuda") else "cpu"
            if self.config.adapt.camera_centre:
                features = camera_centred(features, self.cameras)
            labels = pseudo_labels(features, self.clustering, device=device)
        if self.world > 1:
            import torch

            box = [labels]
            torch.distributed.broadcast_object_list(box, src=0)
            labels = box[0]
        return labels

    def _describe(self, labels: np.ndarray) -> dict[str, Any]:
        from reidkit.engine.pseudo_labels import agreement

        if self.truth is not None:  # rounded as metrics.csv's other figures
            return {k: round(v, 5) for k, v in agreement(labels, self.truth).items()}
        clusters = int(labels.max(initial=-1) + 1)
        return {"clusters": clusters, "outliers": int((labels < 0).sum())}
