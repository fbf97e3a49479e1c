"""Distances between query and gallery features, computed in blocks of query rows.

Metrics: ``euclidean`` (true L2), ``sqeuclidean`` (squared L2) and ``cosine`` (1 - cos),
optionally after L2-normalising the features. A full Q x G matrix is never required: callers
ask for one block of query rows at a time. On the CPU the matrix products run in numpy
(BLAS, all cores) so no torch import is paid; on CUDA they run in torch.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator

import numpy as np

from reidkit.errors import UsageError

METRICS = ("euclidean", "sqeuclidean", "cosine")
BLOCK_BYTES = 128 * 2**20  # distance block size; masks and temporaries add about 2x


def check_metric(metric: str) -> str:
    """Return ``metric`` if known, else raise a UsageError with a suggestion."""
    if metric not in METRICS:
        import difflib

        close = difflib.get_close_matches(metric, METRICS, n=1)
        suggestion = f"; did you mean '{close[0]}'?" if close else ""
        raise UsageError(
            f"unknown metric '{metric}'{suggestion}", hint=f"metrics: {', '.join(METRICS)}"
        )
    return metric


def l2_normalize(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32 (written to ``out`` if
    given)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, np.maximum(norms, np.float32(1e-12)), out=out)


# arrays made by rows_with_room, by id: only those are extended in place (a caller's own
# wider array is never written to)
_ROOMY: weakref.WeakValueDictionary[int, np.ndarray] = weakref.WeakValueDictionary()


def rows_with_room(n: int, d: int, spare: int) -> np.ndarray:
    """An uninitialised (n, d) float32 array that is the leading columns of an (n, d +
    spare) one, which :class:`GalleryDistances` may extend in place (what
    :func:`reidkit.features.store.read_features` reads features into, with
    ``spare_columns``)."""
    base = np.empty((n, d + spare), dtype=np.float32)
    _ROOMY[id(base)] = base
    return base[:, :d]


def _with_room(g: np.ndarray, extra: int, normalize: bool, spare: int) -> np.ndarray:
    """An (N, D + extra) float32 array whose first D columns are the rows of ``g`` (L2-
    normalised if asked). ``g`` made by :func:`rows_with_room` is extended in place,
    unless it must be normalised; otherwise the rows are written once into a new array."""
    n, d = g.shape
    base = g.base
    if (
        not normalize
        and base is not None
        and _ROOMY.get(id(base)) is base
        and base.shape == (n, d + spare)
        and g.ctypes.data == base.ctypes.data
        and g.strides == base.strides
    ):
        return base[:, : d + extra]
    room = np.empty((n, d + extra), dtype=np.float32)
    if normalize:
        l2_normalize(g, out=room[:, :d])
    else:
        room[:, :d] = g
    return room


def nonzero_2d(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.nonzero of a 2-D C-contiguous mask, several times faster on large sparse masks."""
    flat = np.flatnonzero(mask)
    return np.divmod(flat, mask.shape[1])


def row_blocks(rows: int, cols: int, budget: int | None = None) -> Iterator[tuple[int, int]]:
    """(start, stop) ranges of rows so that a float32 rows x cols block fits ``budget``
    (default: BLOCK_BYTES)."""
    budget = BLOCK_BYTES if budget is None else budget
    step = max(1, min(rows, budget // max(1, 4 * cols)))
    for start in range(0, rows, step):
        yield start, min(rows, start + step)


class GalleryDistances:
    """A gallery prepared once, then distances from any block of query rows to it.

    Args:
        gallery: (G, D) features.
        metric: one of METRICS.
        normalize: L2-normalise features first (cosine always does).
        device: "cpu" or "cuda" (resolve "auto" with :func:`resolve_device` first).
    """

    EXTRA_COLUMNS = 2  # the most the augmented gallery adds: [1, |g|^2]

    def __init__(
        self,
        gallery: np.ndarray,
        metric: str = "euclidean",
        *,
        normalize: bool = False,
        device: str = "cpu",
    ) -> None:
        self.metric = check_metric(metric)
        self.normalize = normalize or metric == "cosine"
        self.device = device
        self.size, self.dim = np.shape(gallery)
        if device == "cuda":
            import torch

            g = l2_normalize(gallery) if self.normalize else np.asarray(gallery, np.float32)
            self.features = g  # the gallery as prepared, on the CPU
            self._g = torch.from_numpy(np.ascontiguousarray(g)).cuda()
            self._gg = (self._g * self._g).sum(1)
        else:
            # One matrix product gives the distances: the gallery is stored augmented as
            # [g, 1, |g|^2] (cosine: [g, 1]) and each query block as [-2q, |q|^2, 1] ([-q, 1]).
            extra = 1 if self.metric == "cosine" else 2
            g = np.asarray(gallery, dtype=np.float32)
            self._g = _with_room(g, extra, self.normalize, self.EXTRA_COLUMNS)
            self.features = self._g[:, : self.dim]  # the gallery as prepared, on the CPU
            self._g[:, self.dim] = 1.0
            if extra == 2:
                self._g[:, self.dim + 1] = np.einsum("ij,ij->i", self.features, self.features)

    def prepare(self, query: np.ndarray) -> np.ndarray:
        """Query features as this gallery expects them (normalised if needed), float32."""
        return l2_normalize(query) if self.normalize else np.asarray(query, dtype=np.float32)

    def block(
        self, query: np.ndarray, cols: slice = slice(None), out: np.ndarray | None = None
    ) -> np.ndarray:
        """(len(query), G) float32 distances, never negative, for prepared ``query`` rows
        (to the gallery columns ``cols`` only, if given).

        ``out``: a C-contiguous float32 array of that shape to write them into (see
        :class:`BlockBuffer`); a new array otherwise."""
        if self.device == "cuda":
            m = self._block_cuda(query, cols)
            if out is None:
                return m
            np.copyto(out, m)
            return out
        if self.metric == "cosine":
            augmented = np.concatenate([-query, np.ones((len(query), 1), np.float32)], axis=1)
        else:
            augmented = np.concatenate(
                [
                    -2.0 * query,
                    np.einsum("ij,ij->i", query, query)[:, None],
                    np.ones((len(query), 1), np.float32),
                ],
                axis=1,
            )
        m = np.matmul(augmented, self._g[cols].T, out=out)
        np.maximum(m, 0.0, out=m)
        if self.metric == "euclidean":
            np.sqrt(m, out=m)
        m += 0.0  # turn -0.0 into +0.0 so that the bit patterns of distances sort like values
        return m

    def _block_cuda(self, query: np.ndarray, cols: slice) -> np.ndarray:
        import torch

        q = torch.from_numpy(np.ascontiguousarray(query)).cuda()
        m = q @ self._g[cols].T
        if self.metric == "cosine":
            m = 1.0 - m
        else:
            m = (q * q).sum(1, keepdim=True) + self._gg[None, cols] - 2.0 * m
        m = m.clamp_(min=0.0)
        if self.metric == "euclidean":
            m = m.sqrt_()
        return (m + 0.0).cpu().numpy()


def pairwise_distance(
    a: np.ndarray,
    b: np.ndarray,
    metric: str = "euclidean",
    *,
    normalize: bool = False,
    device: str = "cpu",
) -> np.ndarray:
    """The full (len(a), len(b)) float32 distance matrix (for small sets and tests)."""
    gallery = GalleryDistances(b, metric, normalize=normalize, device=device)
    query = gallery.prepare(a)
    out = np.empty((len(a), len(b)), dtype=np.float32)
    for start, stop in row_blocks(len(a), len(b)):
        gallery.block(query[start:stop], out=out[start:stop])
    return out


class BlockBuffer:
    """One float32 buffer that successive distance blocks are written into.

    A process's fresh memory is slow to touch: the kernel maps it page by page, and with
    numpy's transparent-huge-page advice it may first compact memory (measured here: 0.02 to
    0.3 s for a first 130 MB array, depending on the hour; 0.015 s for memory used before).
    Blocks of one buffer touch it once. Each block is overwritten by the next: copy what you
    keep.
    """

    def __init__(self) -> None:
        self._flat = np.empty(0, dtype=np.float32)

    def get(self, rows: int, cols: int) -> np.ndarray:
        """A C-contiguous (rows, cols) view of the buffer, grown if needed."""
        if rows * cols > self._flat.size:
            self._flat = np.empty(rows * cols, dtype=np.float32)
        return self._flat[: rows * cols].reshape(rows, cols)
