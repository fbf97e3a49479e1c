"""Samples, tracklets and datasets: the common form every dataset parser returns."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from reidkit.errors import UsageError

SUBSETS = ("train", "query", "gallery")
JUNK_PID = -1


class Sample(NamedTuple):
    """One image: absolute path, identity, camera and source dataset index.

    ``pid`` is -1 for junk (ignored by every protocol). In Market-style sets pid 0 is a
    distractor: a valid gallery negative. In a dataset's train subset, pids are the
    relabelled class indices 0..K-1.
    """

    path: str
    pid: int
    camid: int
    dsetid: int = 0


class Tracklet(NamedTuple):
    """One tracklet of a video dataset: its frames' absolute paths in time order, identity,
    camera and source dataset index (pids as for :class:`Sample`).

    ``path`` is the first frame: where an image-only stage (a ranked-list picture, a feature
    file's ``/paths``) needs one picture of the tracklet, it takes that one.
    """

    paths: tuple[str, ...]
    pid: int
    camid: int
    dsetid: int = 0

    @property
    def path(self) -> str:
        return self.paths[0]

    @property
    def frames(self) -> int:
        return len(self.paths)


Item = Sample | Tracklet


def frame_paths(items: Iterable[Item]) -> list[str]:
    """Every image file of ``items``: a sample's path, all of a tracklet's frames."""
    return [p for s in items for p in (s.paths if isinstance(s, Tracklet) else (s.path,))]


def without_paths(items: list[Item], unreadable: set[str]) -> list[Item]:
    """``items`` less the files in ``unreadable``: such samples are left out, such frames
    are left out of their tracklet (and a tracklet with no frame left, out)."""
    kept: list[Item] = []
    for s in items:
        if isinstance(s, Tracklet):
            frames = tuple(p for p in s.paths if p not in unreadable)
            if frames:
                kept.append(s._replace(paths=frames))
        elif s.path not in unreadable:
            kept.append(s)
    return kept


def cameras_of(items: Iterable[Item]) -> list[int]:
    """Each item's camera as one number, counting a camera of each source dataset apart
    (camids of different sources may coincide): what samplers and camera-aware
    clustering group by."""
    numbers: dict[tuple[int, int], int] = {}
    return [numbers.setdefault((s.dsetid, s.camid), len(numbers)) for s in items]


def kind_of(items: Iterable[Item]) -> str:
    """ "tracklet" when the items are tracklets, else "image"."""
    return "tracklet" if isinstance(next(iter(items), None), Tracklet) else "image"


@dataclass
class Dataset:
    """A parsed dataset.

    Attributes:
        name: registry name, or the folder / manifest name for a path.
        root: the folder that sample paths are stored relative to in feature files.
        train, query, gallery: samples (or, in a video dataset, tracklets) without junk;
            train pids relabelled 0..K-1.
        pid_map: (dsetid, original pid) -> train label, for the train subset.
        junk: junk samples (pid -1) per subset, kept apart from the subsets.
        unparsed: image files that did not match the naming rule.
        sources: dataset names by dsetid.
        zero_is_distractor: pid 0 marks distractors (Market-style sets), not a person.
        camera_base: what to add to a camid to get the camera as the dataset names it (1
            for file names with cameras c1, c2, ...; 0 for manifests, whose camids are
            the user's own).
        kind: "image", or "tracklet" for a video dataset (its subsets hold Tracklets).
    """

    name: str
    root: Path
    train: list[Item]
    query: list[Item]
    gallery: list[Item]
    pid_map: dict[tuple[int, int], int] = field(default_factory=dict)
    junk: dict[str, list[Item]] = field(default_factory=dict)
    unparsed: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    zero_is_distractor: bool = False
    camera_base: int = 0
    kind: str = "image"

    def subset(self, name: str) -> list[Item]:
        """The samples of subset ``name`` (train, query or gallery)."""
        if name not in SUBSETS:
            raise ValueError(f"unknown subset {name!r}; expected one of {', '.join(SUBSETS)}")
        return getattr(self, name)

    @property
    def num_train_pids(self) -> int:
        return len(self.pid_map)

    def summary(self) -> dict:
        """Counts per subset, in the JSON form of ``reidkit datasets summary``.

        A video dataset's subsets count tracklets and frames (and the frames per tracklet:
        min, median, max) instead of images; its junk is counted in tracklets.
        """
        summary = {
            "dataset": self.name,
            "root": str(self.root),
            "kind": self.kind,
            "subsets": {name: count_subset(self.subset(name), self.kind) for name in SUBSETS},
            "unparsed_files": len(self.unparsed),
        }
        junk = sum(len(v) for v in self.junk.values())
        summary["junk_tracklets" if self.kind == "tracklet" else "junk_images"] = junk
        return summary


def count_subset(items: Iterable[Item], kind: str = "image") -> dict[str, int]:
    """Identities, images and cameras of a subset (per source, so sources never merge);
    for tracklets: identities, tracklets, frames, frames per tracklet (min, median, max)
    and cameras."""
    ids: set[tuple[int, int]] = set()
    cams: set[tuple[int, int]] = set()
    lengths: list[int] = []
    for s in items:
        lengths.append(s.frames if kind == "tracklet" else 1)
        ids.add((s.dsetid, s.pid))
        cams.add((s.dsetid, s.camid))
    counts = {"ids": len(ids)}
    if kind == "tracklet":
        lengths.sort()
        counts |= {
            "tracklets": len(lengths),
            "frames": sum(lengths),
            "min_frames": lengths[0] if lengths else 0,
            "median_frames": lengths[len(lengths) // 2] if lengths else 0,
            "max_frames": lengths[-1] if lengths else 0,
        }
    else:
        counts["images"] = len(lengths)
    counts["cameras"] = len(cams)
    return counts


def make_dataset(
    name: str,
    root: Path,
    subsets: dict[str, list[Item]],
    *,
    unparsed: Iterable[str] = (),
    sources: list[str] | None = None,
    zero_is_distractor: bool = False,
    camera_base: int = 0,
) -> Dataset:
    """Build a Dataset from raw parsed samples: split junk off, relabel train pids.

    Train pids are relabelled 0..K-1 in sorted (dsetid, pid) order, so the labels are
    deterministic whatever order the files were listed in. The subsets hold Samples or, for
    a video dataset, Tracklets (never both).
    """
    unparsed = list(unparsed)
    if not any(subsets.get(subset) for subset in SUBSETS):
        bad = f"; {len(unparsed)} file(s) there do not follow its naming rule" if unparsed else ""
        raise UsageError(f"{name}: no images in {root}{bad}", hint="is it the right folder?")
    kinds = {kind_of(items) for items in subsets.values() if items}
    if len(kinds) > 1:
        raise UsageError(f"{name}: some subsets hold images and others tracklets")
    clean: dict[str, list[Item]] = {}
    junk: dict[str, list[Item]] = {}
    for subset in SUBSETS:
        samples = subsets.get(subset, [])
        clean[subset] = [s for s in samples if s.pid != JUNK_PID]
        junk[subset] = [s for s in samples if s.pid == JUNK_PID]
    pid_map = {
        key: label for label, key in enumerate(sorted({(s.dsetid, s.pid) for s in clean["train"]}))
    }
    clean["train"] = [s._replace(pid=pid_map[(s.dsetid, s.pid)]) for s in clean["train"]]
    return Dataset(
        name=name,
        root=root,
        train=clean["train"],
        query=clean["query"],
        gallery=clean["gallery"],
        pid_map=pid_map,
        junk=junk,
        unparsed=list(unparsed),
        sources=sources or [name],
        zero_is_distractor=zero_is_distractor,
        camera_base=camera_base,
        kind=kinds.pop(),
    )


@dataclass(frozen=True)
class DatasetSpec:
    """A known dataset: where it lives under the data root and how to parse it.

    Attributes:
        name: registry name.
        folder: the dataset's folder under the data root.
        description: one line for ``datasets list``.
        obtain: how to get it; ``{root}`` is replaced by the data root.
        parse: reads the dataset from its folder (with ``split=N`` when splits > 1).
        splits: how many train/test splits the dataset defines; ``NAME@N`` picks split N.
        protocol: the evaluation protocol its results are reported under (see
            reidkit.metrics.rank): ``market`` for most, ``cuhk03`` for the classic splits.
    """

    name: str
    folder: str
    description: str
    obtain: str
    parse: Callable[..., Dataset]
    splits: int = 1
    protocol: str = "market"

    def path(self, root: Path) -> Path:
        return Path(root) / self.folder

    def is_present(self, root: Path) -> bool:
        return self.path(root).is_dir()

    def how_to_obtain(self, root: Path) -> str:
        return self.obtain.format(root=root)
