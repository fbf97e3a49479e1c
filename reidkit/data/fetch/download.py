"""Downloading and installing datasets: resumable, verified, safe to extract, idempotent.

A file arrives as ``<name>.partial`` beside its final name. An interrupted transfer resumes
with an HTTP Range request from the bytes already there (a server that ignores Range
sends the whole file again, and the partial file is restarted). Connection errors,
timeouts and 5xx answers are retried with exponential backoff; 4xx answers are not.
The finished file is verified against its sha256 (or md5) before anything else happens;
a mismatch removes it.

Archives (zip, tar, tar.gz/.bz2/.xz) are extracted into a hidden staging folder next to
the dataset folder. Every entry is checked first: absolute names, ``..`` components,
links that point outside the target, and device or fifo entries are refused, naming the
entry. The extracted layout is checked by the dataset's own parser; only then does the
staging folder become the dataset folder, by rename, with a marker file recording what was
installed. A rerun finds the marker and makes no network request.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from reidkit.envvars import env_number
from reidkit.errors import DataError, ReidkitError
from reidkit.progress import ProgressFn, no_progress

log = logging.getLogger(__name__)

CHUNK = 1 << 20
USER_AGENT = "reidkit-download"


class DownloadError(ReidkitError):
    """The file could not be fetched (after retries, or a 4xx answer): exit 1."""


@dataclass
class Fetched:
    """What :func:`fetch` did: the file, its size and digest, bytes transferred this run,
    whether it resumed a partial file, and the number of attempts."""

    path: Path
    size: int
    sha256: str
    transferred: int
    resumed: bool
    attempts: int


def retry_settings() -> tuple[int, float, float]:
    """(retries, first backoff in seconds, connect/read timeout in seconds).

    Defaults 5, 1 and 60; REIDKIT_RETRIES, REIDKIT_RETRY_BACKOFF and REIDKIT_TIMEOUT
    override them (a bad value is a UsageError naming the variable).
    """
    retries = int(env_number("REIDKIT_RETRIES", 5, int))
    backoff = env_number("REIDKIT_RETRY_BACKOFF", 1.0)
    timeout = env_number("REIDKIT_TIMEOUT", 60.0)
    return retries, backoff, max(0.01, timeout)


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def verify(
    path: Path, *, sha256: str | None = None, md5: str | None = None, remove: bool = True
) -> str:
    """Check ``path`` against the given digests; return its sha256.

    Raises:
        DataError: a digest differs (the file is removed when ``remove``, so that nothing
            uses it; a file the user supplied is left alone).
    """
    actual = file_digest(path)
    checks = [("sha256", sha256, actual)]
    if md5:
        checks.append(("md5", md5, file_digest(path, "md5")))
    for name, expected, got in checks:
        if expected and expected.lower() != got:
            if remove:
                path.unlink(missing_ok=True)
            raise DataError(
                f"{name} mismatch for {path.name}: expected {expected.lower()}, got {got}; "
                f"{'the file was removed and ' if remove else ''}nothing was extracted",
                hint="the download was corrupted or the source changed; retry, or check the "
                "checksum you passed",
            )
    return actual


def _content_range_start(value: str | None) -> int | None:
    # "bytes 100-999/1000"
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None


def _transfer(url: str, partial: Path, timeout: float, progress: ProgressFn) -> tuple[int, bool]:
    """One attempt: continue ``partial`` from its size. Returns (bytes written, resumed)."""
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the partial file is whole
            return 0, True
        raise
    with response:
        resumed = (
            response.status == 206
            and _content_range_start(response.headers.get("Content-Range")) == have
        )
        if not resumed:
            have = 0  # the server sent the whole file
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else 0
        written = 0
        with open(partial, "ab" if resumed else "wb") as f:
            while block := response.read(CHUNK):
                f.write(block)
                written += len(block)
                done = have + written
                progress(done, total or done, f"{done / 1e6:.1f}/{total / 1e6:.1f} MB")
            f.flush()
            os.fsync(f.fileno())
        if total and have + written < total:
            raise ConnectionError(f"connection closed after {have + written} of {total} bytes")
    return written, resumed


def fetch(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    progress: ProgressFn = no_progress,
) -> Fetched:
    """Download ``url`` to ``dest`` (resuming ``dest.partial``), verified, then renamed.

    Raises:
        DownloadError: a 4xx answer, or failures beyond the retries.
        DataError: a checksum mismatch.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    retries, backoff, timeout = retry_settings()
    transferred, resumed_any = 0, False
    for attempt in range(1, retries + 2):
        try:
            written, resumed = _transfer(url, partial, timeout, progress)
            transferred += written
            resumed_any |= resumed
            break
        except urllib.error.HTTPError as exc:
            if 400 <= exc.code < 500:
                raise DownloadError(
                    f"{url}: HTTP {exc.code} {exc.reason}",
                    hint="the link may be dead; pass --url for a mirror, or --archive FILE",
                ) from None
            reason = f"HTTP {exc.code} {exc.reason}"
        except (urllib.error.URLError, OSError, ConnectionError, TimeoutError) as exc:
            reason = str(getattr(exc, "reason", None) or exc)
        if attempt > retries:
            raise DownloadError(
                f"{url}: {reason} (gave up after {attempt} attempts)",
                hint="rerun to resume from the bytes already downloaded",
            )
        delay = backoff * 2 ** (attempt - 1)
        log.warning("%s: %s; retrying in %.1f s (attempt %d)", url, reason, delay, attempt + 1)
        time.sleep(delay)
    digest = verify(partial, sha256=sha256, md5=md5)
    size = partial.stat().st_size
    os.replace(partial, dest)
    return Fetched(dest, size, digest, transferred, resumed_any, attempt)


# --------------------------------------------------------------------------- extraction


def _inside(name: str) -> bool:
    """Whether an archive entry name stays inside the folder it is extracted to."""
    path = PurePosixPath(name.replace("\\", "/"))
    return not path.is_absolute() and ".." not in path.parts and not name.startswith("/")


def _link_inside(name: str, target: str) -> bool:
    """Whether a link entry ``name`` pointing at ``target`` stays inside the folder."""
    if target.startswith("/") or PurePosixPath(target).is_absolute():
        return False
    parts: list[str] = list(PurePosixPath(name).parent.parts)
    for part in PurePosixPath(target).parts:
        if part == "..":
            if not parts:
                return False
            parts.pop()
        elif part != ".":
            parts.append(part)
    return True


def _refuse(archive: Path, name: str, why: str) -> DataError:
    return DataError(
        f"{archive}: refused entry {name!r}: {why}; nothing was extracted",
        hint="the archive is damaged or malicious; get it again from a trusted source",
    )


def check_archive(archive: Path) -> str:
    """Check every entry of a zip or tar archive; return its kind ("zip" or "tar").

    Raises:
        DataError: not a readable archive, or an entry that would land outside the target.
    """
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                if not _inside(info.filename):
                    raise _refuse(archive, info.filename, "its path leaves the target folder")
                if stat.S_ISLNK(info.external_attr >> 16):
                    target = z.read(info).decode("utf-8", "replace")
                    if not _link_inside(info.filename, target):
                        raise _refuse(archive, info.filename, f"a link to {target} outside")
        return "zip"
    try:
        with tarfile.open(archive) as t:
            for member in t:
                if not _inside(member.name):
                    raise _refuse(archive, member.name, "its path leaves the target folder")
                if member.issym() and not _link_inside(member.name, member.linkname):
                    raise _refuse(archive, member.name, f"a link to {member.linkname} outside")
                if member.islnk() and not _inside(member.linkname):
                    raise _refuse(archive, member.name, f"a hard link to {member.linkname}")
                if member.isdev() or member.isfifo():
                    raise _refuse(archive, member.name, "a device or fifo")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{archive}: not a zip or tar archive, or damaged ({exc})") from None
    return "tar"


def extract_archive(archive: Path, target: Path) -> None:
    """Extract a checked archive into ``target`` (which must not exist yet)."""
    kind = check_archive(archive)
    target.mkdir(parents=True)
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as z:
                z.extractall(target)
        else:
            with tarfile.open(archive) as t:
                # the "data" filter repeats the checks above inside tarfile itself
                t.extractall(target, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise DataError(f"{archive}: damaged archive ({exc})") from None
