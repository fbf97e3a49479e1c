"""datasets download against a local HTTP server on 127.0.0.1: resume, retries, checksums,
safe extraction, idempotent reruns, --archive, locking."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from helpers import MARKET_SPEC, write_market_style

from reidkit.data.fetch.download import check_archive
from reidkit.errors import DataError
from reidkit.fileio import file_lock


@dataclass
class Behaviour:
    """What the server does for one path, and what it saw."""

    body: bytes
    drop_after: list[int] = field(default_factory=list)  # per request: bytes, then hang up
    fail: list[int] = field(default_factory=list)  # per request: answer with this status
    stall: list[float] = field(default_factory=list)  # per request: seconds before the body
    ignore_range: bool = False
    requests: list[str | None] = field(default_factory=list)  # the Range header of each


class Handler(BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, Behaviour]] = {}

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        route = self.routes.get(self.path)
        if route is None:
            self.send_error(404, "Not Found")
            return
        route.requests.append(self.headers.get("Range"))
        if route.fail:
            self.send_error(route.fail.pop(0))
            return
        start = 0
        ranged = self.headers.get("Range")
        if ranged and not route.ignore_range:
            start = int(ranged.removeprefix("bytes=").split("-")[0])
        body = route.body[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header(
                "Content-Range", f"bytes {start}-{len(route.body) - 1}/{len(route.body)}"
            )
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if route.stall:
            time.sleep(route.stall.pop(0))
        if route.drop_after:
            self.wfile.write(body[: route.drop_after.pop(0)])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    """A threaded HTTP server on 127.0.0.1 with a random port; yields (base url, routes)."""
    routes: ClassVar[dict[str, Behaviour]] = {}
    handler = type("TestHandler", (Handler,), {"routes": routes})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", routes
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setenv("REIDKIT_RETRY_BACKOFF", "0.01")


def market_zip(tmp_path: Path) -> bytes:
    """A Market-1501 release zip (Market-1501-v15.09.15/...) of the fixture images."""
    src = tmp_path / "src" / "Market-1501-v15.09.15"
    write_market_style(src, MARKET_SPEC)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for path in sorted(src.rglob("*")):
            z.write(path, path.relative_to(src.parent).as_posix())
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def archive(tmp_path):
    return market_zip(tmp_path)


def download(cli, root, *args):
    return cli("datasets", "download", "market1501", "--root", root, *args)


def test_download_verify_extract_install(cli, server, archive, tmp_path):
    base, routes = server
    routes["/m.zip"] = Behaviour(archive)
    root = tmp_path / "data"
    code, out, err = download(
        cli, root, "--url", f"{base}/m.zip", "--sha256", sha(archive), "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["up_to_date"] is False and result["verified"] is True
    assert result["sha256"] == sha(archive) and result["size"] == len(archive)
    assert result["transferred"] == len(archive) and result["resumed"] is False
    marker = json.loads((root / "market1501" / ".reidkit-install.json").read_text())
    assert marker["source"] == f"{base}/m.zip" and marker["sha256"] == sha(archive)
    assert not list((root / ".downloads").iterdir())  # no archive or .partial left behind
    code, out, err = cli("datasets", "summary", "market1501", "--root", root, "--json")
    assert code == 0, err
    assert json.loads(out)["subsets"]["query"] == {"ids": 2, "images": 3, "cameras": 3}


def test_dropped_connection_resumes_with_a_range_request(cli, server, archive, tmp_path):
    base, routes = server
    routes["/m.zip"] = Behaviour(archive, drop_after=[1000, 5000])
    root = tmp_path / "data"
    code, out, err = download(cli, root, "--url", f"{base}/m.zip", "--json")
    assert code == 0, err
    # three requests: whole file (dropped at 1000), from 1000 (dropped 5000 later), the rest
    assert routes["/m.zip"].requests == [None, "bytes=1000-", "bytes=6000-"]
    result = json.loads(out)
    assert result["sha256"] == sha(archive) and result["resumed"] is True
    assert "retrying in" in err
    assert "no published checksum to verify against; its sha256" in err


def test_interrupted_run_resumes_in_the_next_run(cli, server, archive, tmp_path, monkeypatch):
    base, routes = server
    routes["/m.zip"] = Behaviour(archive, drop_after=[3000])
    root = tmp_path / "data"
    monkeypatch.setenv("REIDKIT_RETRIES", "0")
    code, _, err = download(cli, root, "--url", f"{base}/m.zip")
    assert code == 1 and "gave up after 1 attempts" in err and "rerun to resume" in err
    partial = root / ".downloads" / "m.zip.partial"
    assert partial.stat().st_size == 3000 and not (root / "market1501").exists()
    code, out, err = download(
        cli, root, "--url", f"{base}/m.zip", "--sha256", sha(archive), "--json"
    )
    assert code == 0, err
    assert routes["/m.zip"].requests == [None, "bytes=3000-"]
    result = json.loads(out)
    assert result["transferred"] == len(archive) - 3000 and result["sha256"] == sha(archive)


def test_server_that_ignores_range_restarts_the_file(cli, server, archive, tmp_path):
    base, routes = server
    routes["/m.zip"] = Behaviour(archive, drop_after=[2000], ignore_range=True)
    code, out, err = download(cli, tmp_path / "data", "--url", f"{base}/m.zip", "--json")
    assert code == 0, err
    assert routes["/m.zip"].requests == [None, "bytes=2000-"]
    assert json.loads(out)["sha256"] == sha(archive)  # not 2000 bytes too many


def test_read_timeout_is_retried(cli, server, archive, tmp_path, monkeypatch):
    base, routes = server
    routes["/m.zip"] = Behaviour(archive, stall=[2.0])
    monkeypatch.setenv("REIDKIT_TIMEOUT", "0.3")
    code, out, err = download(cli, tmp_path / "data", "--url", f"{base}/m.zip", "--json")
    assert code == 0, err
    assert len(routes["/m.zip"].requests) == 2 and "timed out" in err
    assert json.loads(out)["sha256"] == sha(archive)


def test_checksum_mismatch_installs_nothing(cli, server, archive, tmp_path):
    base, routes = server
    routes["/m.zip"] = Behaviour(archive)
    root = tmp_path / "data"
    wrong = "0" * 64
    code, _, err = download(cli, root, "--url", f"{base}/m.zip", "--sha256", wrong)
    assert code == 1
    assert f"sha256 mismatch for m.zip.partial: expected {wrong}, got {sha(archive)}" in err
    assert "the file was removed and nothing was extracted" in err
    assert not (root / "market1501").exists()
    assert not list((root / ".downloads").iterdir())


def test_md5_is_checked_too(cli, server, archive, tmp_path):
    base, routes = server
    routes["/m.zip"] = Behaviour(archive)
    code, _, err = download(cli, tmp_path / "d", "--url", f"{base}/m.zip", "--md5", "f" * 32)
    assert code == 1 and "md5 mismatch" in err
    good = hashlib.md5(archive).hexdigest()
    code, out, err = download(
        cli, tmp_path / "d", "--url", f"{base}/m.zip", "--md5", good, "--json"
    )
    assert code == 0, err
    assert json.loads(out)["verified"] is True  # an md5 alone verifies the download


def test_404_fails_at_once(cli, server, tmp_path):
    base, _ = server
    code, _, err = download(cli, tmp_path / "data", "--url", f"{base}/missing.zip")
    assert code == 1
    assert f"{base}/missing.zip: HTTP 404" in err and "--url for a mirror, or --archive" in err
    assert "retrying" not in err


def test_500_is_retried_then_given_up(cli, server, archive, tmp_path, monkeypatch):
    base, routes = server
    routes["/flaky.zip"] = Behaviour(archive, fail=[500, 503])
    code, out, err = download(cli, tmp_path / "a", "--url", f"{base}/flaky.zip", "--json")
    assert code == 0, err
    assert len(routes["/flaky.zip"].requests) == 3
    assert json.loads(out)["sha256"] == sha(archive)
    monkeypatch.setenv("REIDKIT_RETRIES", "2")
    routes["/down.zip"] = Behaviour(archive, fail=[500] * 10)
    code, _, err = download(cli, tmp_path / "b", "--url", f"{base}/down.zip")
    assert code == 1 and "HTTP 500" in err and "gave up after 3 attempts" in err
    assert len(routes["/down.zip"].requests) == 3


def test_rerun_makes_no_request(cli, server, archive, tmp_path):
    base, routes = server
    routes["/m.zip"] = Behaviour(archive)
    root = tmp_path / "data"
    assert download(cli, root, "--url", f"{base}/m.zip", "--sha256", sha(archive))[0] == 0
    stamp = (root / "market1501" / ".reidkit-install.json").stat().st_mtime_ns
    code, out, err = download(cli, root, "--url", "http://127.0.0.1:9/unreachable.zip", "--json")
    assert code == 0, err
    assert json.loads(out)["up_to_date"] is True
    assert len(routes["/m.zip"].requests) == 1
    code, out, _ = download(cli, root)
    assert code == 0 and "is installed (sha256 verified" in " ".join(out.split())
    assert (root / "market1501" / ".reidkit-install.json").stat().st_mtime_ns == stamp
    # --force downloads again
    code, out, _ = download(cli, root, "--url", f"{base}/m.zip", "--force", "--json")
    assert code == 0 and json.loads(out)["up_to_date"] is False
    assert len(routes["/m.zip"].requests) == 2


def test_install_from_an_archive_obtained_by_hand(cli, archive, tmp_path):
    path = tmp_path / "Market-1501-v15.09.15.zip"
    path.write_bytes(archive)
    root = tmp_path / "data"
    code, _, err = download(cli, root, "--archive", path, "--sha256", "1" * 64)
    assert code == 1 and "sha256 mismatch" in err and "nothing was extracted" in err
    assert path.read_bytes() == archive  # the user's file is never deleted
    code, out, err = download(cli, root, "--archive", path, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["source"] == str(path.resolve()) and result["transferred"] == 0
    assert path.is_file() and (root / "market1501" / "Market-1501-v15.09.15" / "query").is_dir()
    code, _, err = download(cli, root, "--archive", tmp_path / "nope.zip", "--force")
    assert code == 2 and "archive not found" in err


def evil_archives(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Archives that try to write outside the target, and the entry to be named."""
    made = {}
    zip_path = tmp_path / "evil.zip"
    with zipfile.ZipFile(zip_path, "w") as z:
        z.writestr("Market-1501-v15.09.15/query/ok.txt", "fine")
        z.writestr("../../escaped.txt", "gotcha")
    made["zip dot-dot"] = (zip_path, "../../escaped.txt")

    def tar_with(name: str, member: tarfile.TarInfo, data: bytes = b"") -> Path:
        path = tmp_path / name
        with tarfile.open(path, "w:gz") as t:
            t.addfile(member, io.BytesIO(data) if data else None)
        return path

    absolute = tarfile.TarInfo("/tmp/escaped.txt")
    absolute.size = 6
    made["tar absolute"] = (tar_with("abs.tar.gz", absolute, b"gotcha"), "/tmp/escaped.txt")
    link = tarfile.TarInfo("Market-1501-v15.09.15/query/link")
    link.type, link.linkname = tarfile.SYMTYPE, "../../../../etc/passwd"
    made["tar symlink"] = (tar_with("link.tar.gz", link), "Market-1501-v15.09.15/query/link")
    device = tarfile.TarInfo("dev")
    device.type = tarfile.CHRTYPE
    made["tar device"] = (tar_with("dev.tar.gz", device), "dev")
    return made


@pytest.mark.parametrize("kind", ["zip dot-dot", "tar absolute", "tar symlink", "tar device"])
def test_path_traversal_archives_are_refused(cli, tmp_path, kind):
    path, entry = evil_archives(tmp_path)[kind]
    root = tmp_path / "data"
    code, _, err = download(cli, root, "--archive", path)
    assert code == 1
    assert f"refused entry {entry!r}" in err and "nothing was extracted" in err
    assert not (root / "market1501").exists() and not (root / ".market1501.partial").exists()
    assert not (tmp_path / "escaped.txt").exists() and not (root.parent / "escaped.txt").exists()


def test_links_inside_the_archive_are_fine(tmp_path):
    path = tmp_path / "ok.tar"
    with tarfile.open(path, "w") as t:
        link = tarfile.TarInfo("a/b/link")
        link.type, link.linkname = tarfile.SYMTYPE, "../c.txt"
        t.addfile(link)
    assert check_archive(path) == "tar"
    (tmp_path / "junk.bin").write_bytes(b"\x00not an archive")
    with pytest.raises(DataError, match="not a zip or tar archive"):
        check_archive(tmp_path / "junk.bin")


def test_archive_without_the_expected_layout(cli, tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("holiday/photo.txt", "not a dataset")
    root = tmp_path / "data"
    code, _, err = download(cli, root, "--archive", path)
    assert code == 1
    assert "does not hold the market1501 layout" in err and "nothing was installed" in err
    assert not (root / "market1501").exists() and not (root / ".market1501.partial").exists()


def test_folder_installed_by_hand_is_not_replaced_without_force(cli, archive, tmp_path):
    root = tmp_path / "data"
    (root / "market1501").mkdir(parents=True)
    (root / "market1501" / "mine.txt").write_text("keep")
    path = tmp_path / "m.zip"
    path.write_bytes(archive)
    code, _, err = download(cli, root, "--archive", path)
    assert code == 2 and "was not installed by reidkit" in err
    assert (root / "market1501" / "mine.txt").read_text() == "keep"
    assert download(cli, root, "--archive", path, "--force")[0] == 0
    assert not (root / "market1501" / "mine.txt").exists()


def test_concurrent_download_is_locked(cli, archive, tmp_path):
    root = tmp_path / "data"
    path = tmp_path / "m.zip"
    path.write_bytes(archive)
    with file_lock(root / "market1501"):
        code, _, err = download(cli, root, "--archive", path)
    assert code == 75 and "being written by another reidkit process" in err
    assert not (root / "market1501").exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("msmt17", "msmt17 has no public download link"),
        ("cuhk03-labeled", "cuhk03 has no public download link"),
        ("dukemtmcreid", "dukemtmcreid has no public download link"),
        ("mars", "mars has no public download link"),
        ("dukemtmcvidreid", "dukemtmcvidreid has no public download link"),
        ("prid2011", "prid2011 has no public download link"),
    ],
)
def test_manual_datasets_explain_the_steps(cli, tmp_path, name, message):
    code, _, err = cli("datasets", "download", name, "--root", tmp_path)
    assert code == 2
    assert message in err and "--archive FILE" in err


def test_unknown_and_generated_names(cli, tmp_path):
    code, _, err = cli("datasets", "download", "market", "--root", tmp_path)
    assert code == 2 and "did you mean 'market1501'" in err
    code, _, err = cli("datasets", "download", "synthreid", "--root", tmp_path)
    assert code == 2 and "reidkit datasets synth" in err


def test_bad_retry_setting(cli, tmp_path, monkeypatch, server, archive):
    base, routes = server
    routes["/m.zip"] = Behaviour(archive)
    monkeypatch.setenv("REIDKIT_RETRIES", "lots")
    code, _, err = download(cli, tmp_path, "--url", f"{base}/m.zip")
    assert code == 2 and "REIDKIT_RETRIES='lots' must be a non-negative number" in err
