"""``datasets download``: the catalogue of where each dataset comes from, and installation.

Installing = obtaining an archive (downloaded with :func:`reidkit.data.fetch.download.fetch`, or
given by the user), checking and extracting it into a staging folder, checking the layout
with the dataset's parser (and preparing it, for CUHK03), writing the marker
``.reidkit-install.json`` and renaming the staging folder into place. Locked per dataset
folder; a rerun on an installed dataset reads the marker and touches no network.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

from reidkit.data.fetch.download import DownloadError, Fetched, extract_archive, fetch, verify
from reidkit.errors import DataError, MissingInputError, UnknownNameError, UsageError
from reidkit.fileio import file_lock, replace_folder, write_text_atomic
from reidkit.progress import ProgressFn, no_progress
from reidkit.registry import Registry

log = logging.getLogger(__name__)

MARKER = ".reidkit-install.json"
DOWNLOADS = ".downloads"


@dataclass(frozen=True)
class Source:
    """Where a dataset comes from.

    Attributes:
        name: the name ``datasets download`` takes (its folder's dataset).
        folder: the folder under the data root.
        datasets: registry names read from that folder.
        urls: public archive URLs, official first, then mirrors (empty: manual only).
        sha256, md5: the archive's published checksum, when one is known.
        terms: licence or terms of use, one line.
        manual: how to obtain it by hand ({root} is the data root).
        prepare: run on the extracted folder before it is installed (CUHK03).
    """

    name: str
    folder: str
    datasets: tuple[str, ...]
    terms: str
    manual: str
    urls: tuple[str, ...] = ()
    sha256: str | None = None
    md5: str | None = None
    prepare: Callable[[Path], object] | None = None


def _prepare_cuhk03(folder: Path) -> object:
    from reidkit.data.layouts.cuhk03_release import check_layout, prepare

    check_layout(folder)
    return prepare(folder)


SOURCES: Registry[Source] = Registry("dataset source")
for _source in (
    Source(
        name="market1501",
        folder="market1501",
        datasets=("market1501",),
        # the authors' server; no checksum was ever published, so the one that arrives is
        # recorded in the marker
        urls=("http://188.138.127.15:81/Datasets/Market-1501-v15.09.15.zip",),
        terms="research use; cite Zheng et al., ICCV 2015",
        manual="download Market-1501-v15.09.15.zip from the authors' page "
        "(zheng-lab.cecs.anu.edu.au/Project/project_reid.html)",
    ),
    Source(
        name="dukemtmcreid",
        folder="dukemtmc-reid",
        datasets=("dukemtmcreid",),
        terms="withdrawn by its authors in 2019; do not redistribute",
        manual="DukeMTMC-reID was withdrawn by its authors and has no public link; if you "
        "hold DukeMTMC-reID.zip under its original terms, install it from that file",
    ),
    Source(
        name="msmt17",
        folder="msmt17",
        datasets=("msmt17",),
        terms="research use under the agreement signed with its authors",
        manual="request MSMT17 (V1 or V2) from its authors (Peking University, "
        "www.pkuvmc.com/dataset.html) by signing their agreement",
    ),
    Source(
        name="cuhk03",
        folder="cuhk03",
        # the classic protocol first: the release alone defines it, so it checks the layout
        datasets=(
            "cuhk03-classic-labeled",
            "cuhk03-classic-detected",
            "cuhk03-labeled",
            "cuhk03-detected",
        ),
        terms="research use under the agreement with CUHK",
        manual="request cuhk03_release.zip from CUHK "
        "(www.ee.cuhk.edu.hk/~xgwang/CUHK_identification.html); for the new 767/700 protocol "
        "put cuhk03_new_protocol_config_labeled.mat and "
        "..._detected.mat (from the re-ranking authors' repository) into {root}/cuhk03/",
        prepare=_prepare_cuhk03,
    ),
    Source(
        name="mars",
        folder="mars",
        datasets=("mars",),
        terms="research use; cite Zheng et al., ECCV 2016",
        manual="MARS is shared through its authors' project page "
        "(zheng-lab.cecs.anu.edu.au/Project/project_mars.html) as bbox_train.zip and "
        "bbox_test.zip; with the info/ folder of github.com/liangzheng06/MARS-evaluation, "
        "pack them into one archive with bbox_train/, bbox_test/ and info/ at its top",
    ),
    Source(
        name="dukemtmcvidreid",
        folder="dukemtmc-vidreid",
        datasets=("dukemtmcvidreid",),
        terms="withdrawn with DukeMTMC in 2019; do not redistribute",
        manual="DukeMTMC-VideoReID was withdrawn with DukeMTMC and has no public link; if you "
        "hold DukeMTMC-VideoReID.zip under its original terms, install it from that file",
    ),
    Source(
        name="ilidsvid",
        folder="ilids-vid",
        datasets=("ilidsvid",),
        # the authors' server; no checksum was ever published
        urls=("http://www.eecs.qmul.ac.uk/~xiatian/iLIDS-VID/iLIDS-VID.tar",),
        terms="research use; cite Wang et al., ECCV 2014",
        manual="download iLIDS-VID.tar from Queen Mary University of London's iLIDS-VID page",
    ),
    Source(
        name="prid2011",
        folder="prid2011",
        datasets=("prid2011",),
        terms="research use under TU Graz's terms, accepted on its download form",
        manual="fill in the form on TU Graz's PRID2011 page to download prid_2011.zip",
    ),
):
    SOURCES.add(_source.name, _source)


def resolve_source(name: str) -> Source:
    """The source of a download name or of any dataset name read from its folder."""
    if name in SOURCES:
        return SOURCES.get(name)
    for source_name in SOURCES.names():
        source = SOURCES.get(source_name)
        if name.split("@")[0] in source.datasets:
            return source
    if name in ("synthreid", "synthreid-b"):
        network = " --network b" if name == "synthreid-b" else ""
        raise UsageError(
            f"{name} is generated, not downloaded",
            hint=f"reidkit datasets synth --root DIR{network}",
        )
    raise UnknownNameError(
        SOURCES.unknown_message(name), hint=f"downloadable: {', '.join(SOURCES.names())}"
    )


def read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _archive_name(url: str, source: Source) -> str:
    return os.path.basename(urlparse(url).path) or f"{source.name}.archive"


def _download(
    source: Source, urls: list[str], root: Path, sha256, md5, progress
) -> tuple[str, Fetched]:
    """Try each URL in turn: (the URL that worked, what it fetched); the last failure is
    raised."""
    error: DownloadError | None = None
    for url in urls:
        try:
            return url, fetch(
                url,
                root / DOWNLOADS / _archive_name(url, source),
                sha256=sha256,
                md5=md5,
                progress=progress,
            )
        except DownloadError as exc:  # a dead link: try the next mirror
            # (a checksum mismatch, DataError, is raised: another mirror would not fix it)
            if len(urls) > 1:
                log.warning("%s", exc)
            error = exc
    assert error is not None
    raise error


def install_dataset(
    name: str,
    root: str | os.PathLike[str],
    *,
    url: str | None = None,
    sha256: str | None = None,
    md5: str | None = None,
    archive: str | os.PathLike[str] | None = None,
    force: bool = False,
    progress: ProgressFn = no_progress,
) -> dict:
    """Download (or take ``archive``), verify, extract, check and install a dataset.

    Returns:
        dataset, path, up_to_date, source, sha256, size, verified (against a known or
        given checksum), transferred and resumed (downloads), seconds.

    Raises:
        UnknownNameError, UsageError: unknown name; no public link and no ``archive``.
        MissingInputError: ``archive`` does not exist.
        DownloadError, DataError: download failures, checksum mismatch, a refused or
            wrongly laid-out archive (nothing is installed).
        LockedError: another process is installing the same dataset.
    """
    source = resolve_source(name)
    root = Path(root)
    target = root / source.folder
    start = time.perf_counter()
    sha256 = (sha256 or source.sha256 or "").lower() or None
    md5 = (md5 or source.md5 or "").lower() or None
    with file_lock(target):
        marker = read_marker(target)
        if not force and marker is not None and (not sha256 or marker.get("sha256") == sha256):
            return {**_result(source, target, marker, start), "up_to_date": True}
        if not force and marker is None and target.is_dir() and any(target.iterdir()):
            raise UsageError(
                f"{target} already exists and was not installed by reidkit",
                hint="use it as it is, or pass --force to replace it",
            )
        fetched = None
        if archive is not None:
            archive = Path(archive)
            if not archive.is_file():
                raise MissingInputError(f"archive not found: {archive}")
            digest = verify(archive, sha256=sha256, md5=md5, remove=False)
            origin = str(archive.resolve())
            size = archive.stat().st_size
        else:
            urls = [url] if url else list(source.urls)
            if not urls:
                raise UsageError(
                    f"{source.name} has no public download link",
                    hint=f"{source.manual.format(root=root)}; then: reidkit datasets download "
                    f"{source.name} --archive FILE --root {root}",
                )
            origin, fetched = _download(source, urls, root, sha256, md5, progress)
            archive, digest, size = fetched.path, fetched.sha256, fetched.size
        staging = root / f".{source.folder}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            extract_archive(archive, staging)
            _check_layout(source, staging, archive)
            marker = {
                "dataset": source.name,
                "source": origin,
                "sha256": digest,
                "md5": md5,
                "size": size,
                "verified": bool(sha256 or md5),
                "installed": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "reidkit_version": _version(),
            }
            write_text_atomic(staging / MARKER, json.dumps(marker, indent=2) + "\n")
            replace_folder(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if fetched is not None:
            archive.unlink(missing_ok=True)  # installed: the archive is no longer needed
    if not sha256 and not md5:
        log.warning(
            "%s: no published checksum to verify against; its sha256 %s is recorded in %s",
            archive.name,
            digest,
            target / MARKER,
        )
    return {
        **_result(source, target, marker, start),
        "up_to_date": False,
        "transferred": fetched.transferred if fetched else 0,
        "resumed": fetched.resumed if fetched else False,
    }


def _check_layout(source: Source, staged: Path, archive: Path) -> None:
    """The extracted archive must parse as the dataset (and prepare, for CUHK03)."""
    from reidkit.data.catalog import DATASETS

    try:
        if source.prepare is not None:
            source.prepare(staged)
        dataset = DATASETS.get(source.datasets[0]).parse(staged)
    except (DataError, MissingInputError) as exc:
        raise DataError(
            f"{archive}: the archive does not hold the {source.name} layout ({exc.message})",
            hint="nothing was installed; check that this is the right archive",
        ) from None
    images = sum(len(dataset.subset(s)) for s in ("train", "query", "gallery"))
    if images == 0:
        raise DataError(
            f"{archive}: the archive holds no {source.name} images",
            hint="nothing was installed; check that this is the right archive",
        )


def _result(source: Source, target: Path, marker: dict, start: float) -> dict:
    return {
        "dataset": source.name,
        "path": str(target),
        "source": marker.get("source"),
        "sha256": marker.get("sha256"),
        "size": marker.get("size"),
        "verified": marker.get("verified", False),
        "terms": source.terms,
        "seconds": round(time.perf_counter() - start, 3),
    }


def _version() -> str:
    from reidkit import __version__

    return __version__
