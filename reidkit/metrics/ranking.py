"""How a gallery is ranked for each query: one options object, built once at the edge (the
command line, a training config) and passed down to evaluate, visrank and the trainer.

    ranking = Ranking(metric="cosine", protocol="market", rerank=Rerank(k1=20, k2=6, lam=0.3))
    result = evaluate_files("q.h5", "g.h5", ranking)

``metric`` and ``protocol`` may be left to the feature files (None): the distance the model
was trained for (the ``distance`` attribute extract writes) and the protocol of the dataset
they hold (classic CUHK03 splits: ``cuhk03``). :meth:`Ranking.resolve` fills them in and
records where each value came from, so every result can say what it used.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from reidkit.device import resolve_device
from reidkit.errors import UsageError
from reidkit.metrics.distance import BlockBuffer, GalleryDistances, check_metric, row_blocks
from reidkit.metrics.rank import DEFAULT_RANKS, RankResult, check_protocol, parse_ranks
from reidkit.progress import ProgressFn, no_progress

DEFAULT_METRIC = "euclidean"  # when neither the user nor the files say
DEFAULT_PROTOCOL = "market"
POOLS = ("valid", "all")


@dataclass(frozen=True)
class Rerank:
    """k-reciprocal re-ranking (Zhong et al., CVPR 2017) and its parameters.

    Args:
        k1, k2, lam: the paper's k1, k2 and lambda (the weight of the original distance).
        pool: the items whose neighbourhoods are encoded: ``valid`` the queries and the
            gallery without junk (pid -1), as torchreid (which drops junk when it loads a
            dataset); ``all`` the queries and the whole gallery.
    """

    k1: int = 20
    k2: int = 6
    lam: float = 0.3
    pool: str = "valid"

    def __post_init__(self) -> None:
        if self.k1 < 1 or self.k2 < 1:
            raise UsageError(f"--k1 and --k2 must be at least 1 (got k1={self.k1}, k2={self.k2})")
        if self.k2 > self.k1 + 1:
            raise UsageError(f"--k2 ({self.k2}) cannot exceed --k1 + 1 ({self.k1 + 1})")
        if not 0.0 <= self.lam <= 1.0:
            raise UsageError(f"--lambda must be between 0 and 1, got {self.lam}")
        if self.pool not in POOLS:
            raise UsageError(f"unknown --rerank-pool {self.pool!r}", hint="pools: valid, all")


@dataclass
class Ranking:
    """How the gallery is ranked: distance, protocol, CMC ranks, re-ranking, device.

    Validates on creation (UsageError) and resolves ``device="auto"``. ``metric`` and
    ``protocol`` None mean "as the feature files say" (see :meth:`resolve`).
    """

    metric: str | None = None
    normalize: bool = False
    protocol: str | None = None
    ranks: Iterable[int] | str = DEFAULT_RANKS
    rerank: Rerank | None = None
    device: str = "auto"
    sources: dict[str, str] = field(default_factory=dict)  # what decided metric and protocol

    def __post_init__(self) -> None:
        if self.metric is not None:
            check_metric(self.metric)
        if self.protocol is not None:
            check_protocol(self.protocol)
        self.ranks = parse_ranks(self.ranks)
        self.device = resolve_device(self.device)
        self.sources = {
            "metric": "option" if self.metric is not None else "",
            "protocol": "option" if self.protocol is not None else "",
            **self.sources,
        }

    @property
    def stage(self) -> str:
        return "rerank" if self.rerank else "distance"

    def resolve(self, query, gallery) -> Ranking:
        """This ranking with metric and protocol taken from the feature files where they
        were not given: the model's distance and the dataset's protocol, else the defaults."""
        from reidkit.data import protocol_of

        metric, protocol, sources = self.metric, self.protocol, dict(self.sources)
        if metric is None:
            stated = query.attrs.get("distance") or gallery.attrs.get("distance")
            metric = stated or DEFAULT_METRIC
            model = query.attrs.get("model") or "the model"
            sources["metric"] = f"as recommended for {model}" if stated else "default"
        if protocol is None:
            dataset = query.attrs.get("dataset") or ""
            stated = protocol_of(dataset) if dataset else None
            protocol = stated or DEFAULT_PROTOCOL
            sources["protocol"] = f"as for {dataset}" if stated else "default"
        return replace(self, metric=metric, protocol=protocol, sources=sources)

    def blocks(
        self, query, gallery, progress: ProgressFn = no_progress
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """(start, stop, distances) blocks of query rows, plain or re-ranked, for resolved
        FeatureSets. Gallery items left out of the re-ranking pool get distance +inf. Each
        block is valid until the next is asked for (plain distances share one buffer): copy
        what you keep."""
        if self.metric is None or self.protocol is None:
            raise ValueError("resolve() the ranking against its feature files first")
        if self.rerank:
            yield from self._reranked(query.features, gallery.features, gallery.pids, progress)
            return
        distances = GalleryDistances(
            gallery.features, self.metric, normalize=self.normalize, device=self.device
        )
        prepared = distances.prepare(query.features)
        buffer = BlockBuffer()
        for start, stop in row_blocks(len(prepared), len(gallery)):
            out = buffer.get(stop - start, len(gallery))
            yield start, stop, distances.block(prepared[start:stop], out=out)
            progress(stop, len(prepared))

    def _reranked(self, query, gallery, g_pids, progress):
        from reidkit.metrics.rerank import rerank_blocks

        r = self.rerank
        pool = np.flatnonzero(g_pids != -1) if r.pool == "valid" else None
        if pool is not None and len(pool) == len(gallery):
            pool = None  # no junk: the pools are the same
        blocks = rerank_blocks(
            query,
            gallery if pool is None else gallery[pool],
            metric=self.metric,
            normalize=self.normalize,
            k1=r.k1,
            k2=r.k2,
            lambda_value=r.lam,
            device=self.device,
            progress=progress,
        )
        for start, stop, block in blocks:
            if pool is not None:
                full = np.full((stop - start, len(gallery)), np.inf, dtype=np.float32)
                full[:, pool] = block
                block = full
            yield start, stop, block

    def describe(self, result: RankResult, *, num_gallery: int, query, gallery) -> dict:
        """The JSON document of an evaluation (without timings), as evaluate and visrank
        print it."""
        return {
            **result.to_dict(),
            "num_gallery": num_gallery,
            "metric": self.metric,
            "protocol": self.protocol,
            "normalize": self.normalize,
            "chosen_by": {k: v for k, v in self.sources.items() if k in ("metric", "protocol")},
            "rerank": {
                "k1": self.rerank.k1,
                "k2": self.rerank.k2,
                "lambda": self.rerank.lam,
                "pool": self.rerank.pool,
                # the reference algorithm squares what it is given
                "input": f"{self.metric} distances{' of normalised features' * self.normalize}"
                ", squared by the algorithm",
            }
            if self.rerank
            else None,
            "device": self.device,
            "query": str(query),
            "gallery": str(gallery),
            "summary": self.summary(),
        }

    def summary(self) -> str:
        """One line for people: what was ranked how, and who chose it."""
        how = f"{self.metric} distance{' of normalised features' if self.normalize else ''}"
        if self.sources.get("metric") not in ("option", ""):
            how += f" ({self.sources['metric']})"
        how += f", protocol {self.protocol}"
        if self.sources.get("protocol") not in ("option", ""):
            how += f" ({self.sources['protocol']})"
        if self.rerank:
            r = self.rerank
            pool = "queries + gallery without junk" if r.pool == "valid" else "queries + gallery"
            how += f", re-ranked (k1 {r.k1}, k2 {r.k2}, lambda {r.lam}; pool: {pool})"
        return how
