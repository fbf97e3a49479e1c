"""A validation split held out from the training identities (``data.val_ids``).

Model selection on the test query/gallery reports a tuned figure: best.pt is then chosen
on the very images it is judged on. Holding out N training identities gives a split of
their own: they leave the training set, and each becomes one query (an image from one
camera) against a gallery of all its other images, the Market protocol then ignoring the
same-camera ones. Identities seen by one camera only cannot be queried that way and join
the gallery as distractors of the others.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import numpy as np

from reidkit.data.sample import Dataset, Sample
from reidkit.errors import UsageError


def hold_out(dataset: Dataset, identities: int, seed: int) -> tuple[Dataset, list, list]:
    """``(train, query, gallery)``: ``identities`` training identities drawn with
    ``seed`` leave ``dataset``'s train subset (the rest relabelled 0..K-N-1) and form the
    validation query and gallery (their labels as pids)."""
    labels = sorted({s.pid for s in dataset.train})
    if identities >= len(labels):
        raise UsageError(
            f"data.val_ids={identities} would hold out every training identity of "
            f"{dataset.name} ({len(labels)})",
            hint=f"hold out fewer than {len(labels)}",
        )
    rng = np.random.default_rng([seed, 7])
    held = set(rng.choice(labels, size=identities, replace=False).tolist())
    by_identity: dict[int, list[Sample]] = defaultdict(list)
    for s in dataset.train:
        if s.pid in held:
            by_identity[s.pid].append(s)
    query, gallery = [], []
    for pid in sorted(by_identity):
        samples = sorted(by_identity[pid], key=lambda s: s.path)
        if len({s.camid for s in samples}) > 1:
            pick = int(rng.integers(len(samples)))
            query.append(samples[pick])
            samples = samples[:pick] + samples[pick + 1 :]
        gallery += samples
    kept = sorted(set(labels) - held)
    relabel = {old: new for new, old in enumerate(kept)}
    train = [s._replace(pid=relabel[s.pid]) for s in dataset.train if s.pid not in held]
    pid_map = {key: relabel[old] for key, old in dataset.pid_map.items() if old in relabel}
    return dataclasses.replace(dataset, train=train, pid_map=pid_map), query, gallery
