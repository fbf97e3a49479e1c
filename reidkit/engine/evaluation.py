"""Evaluation during training: the validation split and the target datasets.

``eval.targets`` (default: the training datasets) are evaluated on their own query and
gallery, as torchreid's ``targets`` are, each under its own protocol; ``data.val_ids``
adds a split held out from the training identities. metrics.csv and TensorBoard get
``<name>/mAP`` and ``<name>/rank1`` for each, and ``mAP`` / ``rank1`` for the one that
chooses best.pt: the validation split when there is one, else the first target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reidkit.config import Config
from reidkit.data.sample import Dataset, Sample, kind_of
from reidkit.errors import UsageError

VAL = "val"


@dataclass
class EvalSet:
    """A query and gallery to evaluate; ``dataset`` names its protocol's dataset."""

    name: str
    dataset: str
    query: list[Sample]
    gallery: list[Sample]

    def fields(self) -> tuple[str, str]:
        return f"{self.name}/mAP", f"{self.name}/rank1"


def load_training_data(config: Config) -> tuple[Dataset, list[Dataset]]:
    """The training set (``data.sources`` combined, or ``data.dataset``) and the datasets
    it came from."""
    from reidkit.data import load_dataset
    from reidkit.data.combine import combined_dataset

    d = config.data
    if not d.sources:
        sources = [load_dataset(d.dataset, d.root)]
    else:
        sources = [load_named(name, d.root, "data.sources") for name in d.sources]
    if len(sources) == 1:
        return sources[0], sources
    return combined_dataset(sources), sources


def load_named(name: str, root, key: str):
    """``load_dataset(name, root)`` for a dataset named by config key ``key``: an unknown or
    missing one is an error that names the key."""
    from reidkit.data import load_dataset

    try:
        return load_dataset(name, root)
    except UsageError as exc:
        raise type(exc)(f"{key}: {exc.message}", hint=exc.hint) from None


def eval_sets(config: Config, train: Dataset, sources: list[Dataset]) -> tuple[Dataset, list]:
    """The training set (without held-out identities) and what to evaluate, in order:
    the validation split first when there is one, then the targets."""
    from reidkit.data.holdout import hold_out

    c = config
    sets = []
    if c.data.val_ids:
        train, query, gallery = hold_out(train, c.data.val_ids, c.train.seed)
        sets.append(EvalSet(VAL, train.name, query, gallery))
    given = dict(zip(c.data.sources or [c.data.dataset], sources, strict=True))
    seen = {s.name: "the validation split" for s in sets}
    for target in c.eval.targets or list(given):
        ds = given.get(target) or load_named(target, c.data.root, "eval.targets")
        if ds.name in seen:
            raise UsageError(
                f"eval.targets: {seen[ds.name]} and {target} are both called {ds.name!r}",
                hint="metrics are named after the dataset (a folder after its name, a symlink "
                "after its target's): give each dataset once, or rename a folder",
            )
        seen[ds.name] = target
        sets.append(EvalSet(ds.name, ds.name, ds.query, ds.gallery))
    return train, [s for s in sets if s.query and s.gallery]


def features_during_training(model, samples, config: Config, device: str) -> np.ndarray:
    """Features of ``samples`` by ``model`` (in eval mode) as ``extract`` would compute
    them with the run's settings: its images decoded by the training's ``data.workers``,
    run with its ``train.amp`` and ``train.channels_last``, flipped as ``eval.flip`` says."""
    from reidkit.engine.loaders import worker_count
    from reidkit.features.extractor import compute_features
    from reidkit.features.jobs import video_options
    from reidkit.features.options import ExtractOptions

    c = config
    video = {}
    if kind_of(samples) == "tracklet":  # eval.sample, and the run's seq_len and pooling
        video = video_options(ExtractOptions(sample=c.eval.sample), {"config": c.to_dict()})
    options = ExtractOptions(
        height=c.data.height, width=c.data.width, mean=c.data.mean, std=c.data.std,
        interpolation=c.data.interpolation, flip=c.eval.flip, amp=c.train.amp,
        channels_last=c.train.channels_last, fold_bn=True, **video,
    )  # fmt: skip
    workers = worker_count(c, device)
    return compute_features(model, samples, options, device=device, workers=workers)


def evaluate_set(model, s: EvalSet, config: Config, device: str) -> dict[str, float]:
    """``<name>/mAP`` and ``<name>/rank1`` of ``model`` (in eval mode) on ``s``, its
    images decoded by the training's ``data.workers`` and run with its ``train.amp`` and
    ``train.channels_last``."""
    from reidkit.features.store import FeatureSet
    from reidkit.metrics.rank import RankAccumulator
    from reidkit.metrics.ranking import Ranking
    from reidkit.models import model_distance

    c = config
    features = []
    for samples in (s.query, s.gallery):
        array = features_during_training(model, samples, c, device)
        attrs = {"distance": model_distance(c.model.name), "dataset": s.dataset}
        pids, camids = (np.array([getattr(x, k) for x in samples]) for k in ("pid", "camid"))
        features.append(FeatureSet(array, pids, camids, attrs=attrs))
    ranking = Ranking(
        metric=None if c.eval.metric == "auto" else c.eval.metric,
        normalize=c.eval.normalize,
        protocol=None if c.eval.protocol == "auto" else c.eval.protocol,
        ranks=(1,),
        device="cpu",
    ).resolve(*features)
    query, gallery = features
    acc = RankAccumulator(
        query.pids, query.camids, gallery.pids, gallery.camids, protocol=ranking.protocol,
        ranks=(1,),
    )  # fmt: skip
    for start, _, dist in ranking.blocks(query, gallery):
        acc.add(start, dist)
    result = acc.result()
    mAP_key, rank1_key = s.fields()
    return {mAP_key: round(result.mAP, 5), rank1_key: round(result.cmc[1], 5)}
