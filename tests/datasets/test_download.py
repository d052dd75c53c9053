"""Tests for kdet.datasets.download against a loopback HTTP server with injected faults."""

import hashlib
import io
import os
import re
import socket
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

from kdet.datasets.download import (
    download,
    extract,
    iter_lines,
    resolve_url,
    verify_image,
    verify_tar,
    verify_zip,
)
from kdet.errors import ArchiveError, DownloadError, ImageError
from tests.conftest import mirror_folder

RACCOON_URL = "https://github.com/datitran/raccoon_dataset/archive/refs/heads/master.zip"
BBOX_CSV_URL = "https://storage.googleapis.com/openimages/v5/validation-annotations-bbox.csv"

HTML_PAGE = b"<!DOCTYPE html><html><body><h1>503 Service Unavailable</h1></body></html>\n"


class _FaultyHandler(BaseHTTPRequestHandler):
    """Serves files under ``server.root`` with Range support, or a fault queued for the path.

    Faults (consumed one per request): ``"cut"`` closes the connection half way through
    the body, ``"short"`` announces 100 more bytes than it sends, ``"ignore_range"``
    answers 200 with the whole file, ``"stall"`` answers nothing until the test ends, or
    an int HTTP status.
    """

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        server = self.server
        path = unquote(self.path.split("?", 1)[0])
        server.log.append((path, self.headers.get("Range")))
        queued = server.faults.get(path)
        fault = queued.pop(0) if queued else None
        if isinstance(fault, int):
            self.send_error(fault)
            return
        if fault == "stall":
            server.released.wait(timeout=300)  # set when the test ends
            return
        file = server.root / path.lstrip("/")
        if not file.is_file():
            self.send_error(404)
            return
        data = file.read_bytes()
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and fault != "ignore_range":
            start = int(match[1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            start = 0
            self.send_response(200)
        body = data[start:]
        announced = len(body) + (100 if fault == "short" else 0)
        self.send_header("Content-Length", str(announced))
        self.end_headers()
        if fault == "cut":
            body = body[: len(body) // 2]
        self.wfile.write(body)
        self.wfile.flush()
        if fault in ("cut", "short"):
            self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """A loopback server over ``tmp_path/www``; ``server.url(path)``, ``.faults``, ``.log``."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _FaultyHandler)
    httpd.daemon_threads = True
    httpd.root = tmp_path / "www"
    httpd.root.mkdir()
    httpd.faults = {}
    httpd.log = []
    httpd.released = threading.Event()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.url = lambda path: f"{httpd.base}/{path}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.released.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def no_env_mirror(monkeypatch):
    monkeypatch.delenv("KDET_MIRROR", raising=False)


@pytest.fixture
def mirror():
    """The real dataset mirror folder (no mirror: fails in CI, skips elsewhere)."""
    return mirror_folder()


@pytest.fixture
def refused_url():
    """An http URL on a loopback port that refuses connections: bound, never listening,
    and held for the whole test so no other process can take it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{probe.getsockname()[1]}"


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def put(server, name, data):
    path = server.root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def random_bytes(size, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


# No real waits between attempts; a read timeout far above any delay of a busy machine.
FAST = {"backoff": 0.001, "timeout": 120.0, "progress": False}


# ----------------------------------------------------------------------------- resolve_url


def test_resolve_url_without_mirror_is_the_real_address():
    assert resolve_url("https://example.org/a/b.zip") == "https://example.org/a/b.zip"


def test_resolve_url_maps_host_and_path_under_a_folder_or_a_base_url(tmp_path, monkeypatch):
    url = "https://example.org/a/b%20c.zip"
    assert resolve_url(url, mirror=str(tmp_path)) == str(tmp_path / "example.org/a/b c.zip")
    assert resolve_url(url, mirror="http://m:8/x/") == "http://m:8/x/example.org/a/b%20c.zip"
    monkeypatch.setenv("KDET_MIRROR", str(tmp_path))
    assert resolve_url(url) == str(tmp_path / "example.org/a/b c.zip")
    assert resolve_url(url, mirror="") == url


def test_resolve_url_refuses_a_path_leaving_the_mirror_folder(tmp_path):
    with pytest.raises(DownloadError, match="leaves the mirror"):
        resolve_url("https://example.org/../../etc/passwd", mirror=str(tmp_path))


# ----------------------------------------------------------------------------- download


def test_cut_download_leaves_only_part_then_resumes_with_range(server, tmp_path):
    source = put(server, "data.bin", random_bytes(300_000))
    dest = tmp_path / "out" / "data.bin"
    server.faults["/data.bin"] = ["cut"]

    with pytest.raises(DownloadError, match=re.escape(server.url("data.bin"))):
        download(server.url("data.bin"), dest, retries=0, **FAST)
    part = dest.with_name("data.bin.part")
    assert not dest.exists()
    assert part.stat().st_size == 150_000

    assert download(server.url("data.bin"), dest, retries=0, **FAST) == dest
    assert server.log[-1] == ("/data.bin", "bytes=150000-")
    assert sha256(dest) == sha256(source)
    assert not part.exists()


def test_resume_against_a_server_ignoring_range_restarts_the_file(server, tmp_path):
    source = put(server, "data.bin", random_bytes(100_000))
    dest = tmp_path / "data.bin"
    dest.with_name("data.bin.part").write_bytes(b"stale bytes from another version")
    server.faults["/data.bin"] = ["ignore_range"]

    download(server.url("data.bin"), dest, retries=0, **FAST)
    assert server.log[0][1] is not None  # a Range was asked ...
    assert sha256(dest) == sha256(source)  # ... and the 200 answer replaced the stale bytes


def test_cut_download_is_retried_within_one_call(server, tmp_path):
    source = put(server, "data.bin", random_bytes(200_000))
    server.faults["/data.bin"] = ["cut", "cut"]
    dest = download(server.url("data.bin"), tmp_path / "data.bin", retries=2, **FAST)
    assert sha256(dest) == sha256(source)
    assert [rng for _, rng in server.log] == [None, "bytes=100000-", "bytes=150000-"]


def test_complete_part_answered_416_is_kept(server, tmp_path):
    source = put(server, "data.bin", random_bytes(1000))
    dest = tmp_path / "data.bin"
    dest.with_name("data.bin.part").write_bytes(source.read_bytes())
    download(server.url("data.bin"), dest, retries=0, **FAST)
    assert sha256(dest) == sha256(source)


def test_404_fails_at_once_naming_the_url(server, tmp_path, monkeypatch):
    url = server.url("missing.zip")
    sleeps = []
    monkeypatch.setattr(time, "sleep", sleeps.append)  # a back-off would show up here
    with pytest.raises(DownloadError, match="404") as caught:
        download(url, tmp_path / "missing.zip", retries=4, backoff=10.0, progress=False)
    assert caught.value.where == url
    assert sleeps == []
    assert len(server.log) == 1
    assert not list(tmp_path.glob("missing.zip*"))


def test_500_is_retried_with_backoff(server, tmp_path):
    source = put(server, "data.bin", random_bytes(5000))
    server.faults["/data.bin"] = [500, 503]
    dest = download(server.url("data.bin"), tmp_path / "data.bin", retries=2, **FAST)
    assert sha256(dest) == sha256(source)
    assert len(server.log) == 3


def test_persistent_500_gives_up_after_the_retries(server, tmp_path):
    put(server, "data.bin", b"x")
    server.faults["/data.bin"] = [500] * 3
    with pytest.raises(DownloadError, match=r"failed after 3 attempts.*500"):
        download(server.url("data.bin"), tmp_path / "data.bin", retries=2, **FAST)
    assert len(server.log) == 3
    assert not (tmp_path / "data.bin").exists()


def test_body_shorter_than_content_length_is_detected(server, tmp_path):
    put(server, "data.bin", random_bytes(10_000))
    server.faults["/data.bin"] = ["short"]
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError, match="10000 of 10100 bytes"):
        download(server.url("data.bin"), dest, retries=0, **FAST)
    assert not dest.exists()


def test_short_body_is_resumed_by_a_retry(server, tmp_path):
    source = put(server, "data.bin", random_bytes(10_000))
    server.faults["/data.bin"] = ["short"]
    dest = download(server.url("data.bin"), tmp_path / "data.bin", retries=1, **FAST)
    assert sha256(dest) == sha256(source)


def test_timeout_is_a_retryable_failure(server, tmp_path):
    put(server, "data.bin", b"late")
    server.faults["/data.bin"] = ["stall"]
    with pytest.raises(DownloadError, match="timed out"):
        download(server.url("data.bin"), tmp_path / "data.bin", retries=0, backoff=0, timeout=0.2)


def test_connection_refused_is_retried_then_named(tmp_path, refused_url):
    url = f"{refused_url}/data.bin"
    with pytest.raises(DownloadError, match="failed after 2 attempts") as caught:
        download(url, tmp_path / "data.bin", retries=1, **FAST)
    assert caught.value.where == url


def test_existing_dest_is_returned_without_a_request(server, tmp_path):
    dest = tmp_path / "done.bin"
    dest.write_bytes(b"complete")
    assert download(server.url("done.bin"), dest, **FAST) == dest
    assert server.log == []


def test_file_failing_verification_gets_no_final_name(server, tmp_path):
    put(server, "archive.zip", HTML_PAGE)
    dest = tmp_path / "archive.zip"
    with pytest.raises(DownloadError, match="failed verification.*not a valid zip"):
        download(server.url("archive.zip"), dest, verify=verify_zip, retries=0, **FAST)
    assert list(tmp_path.iterdir()) == [server.root]


def test_mirror_folder_copies_through_verify(tmp_path, mirror):
    dest = download(
        RACCOON_URL, tmp_path / "raccoon.zip", verify=verify_zip, mirror=str(mirror), **FAST
    )
    assert sha256(dest) == sha256(mirror / RACCOON_URL.removeprefix("https://"))


def test_file_missing_from_mirror_folder_names_url_and_path(tmp_path):
    with pytest.raises(DownloadError, match="not found in the mirror") as caught:
        download("https://example.org/x.zip", tmp_path / "x.zip", mirror=str(tmp_path), **FAST)
    assert caught.value.where == "https://example.org/x.zip"


def test_mirror_served_over_http(server, tmp_path, mirror):
    server.root = mirror
    dest = download(
        RACCOON_URL, tmp_path / "raccoon.zip", verify=verify_zip, mirror=server.base + "/"
    )  # with the default retries, timeout and progress bar
    assert sha256(dest) == sha256(mirror / RACCOON_URL.removeprefix("https://"))
    assert server.log == [("/" + RACCOON_URL.removeprefix("https://"), None)]


# ----------------------------------------------------------------------------- iter_lines


def test_iter_lines_from_mirror_folder_and_http_mirror_agree(server, mirror):
    expected = (mirror / BBOX_CSV_URL.removeprefix("https://")).read_text().splitlines()
    server.root = mirror
    assert list(iter_lines(BBOX_CSV_URL, mirror=str(mirror), progress=False)) == expected
    assert list(iter_lines(BBOX_CSV_URL, mirror=server.base, **FAST)) == expected
    assert expected[0].startswith("ImageID,Source,LabelName")


@pytest.mark.parametrize(
    "faults,requests",
    [
        (["cut"], 2),
        (["cut", "cut"], 3),
        (["cut", "ignore_range"], 2),  # the retry skips the lines already yielded
        ([503, "short"], 3),  # all lines came before the short read: the resume gets 416
    ],
)
def test_iter_lines_resumes_without_losing_or_repeating_lines(server, faults, requests):
    lines = [f"row{i},\u00e9t\u00e9,{i * 7}" for i in range(5000)]
    put(server, "big.csv", ("\r\n".join(lines) + "\r\n").encode())
    server.faults["/big.csv"] = list(faults)
    assert list(iter_lines(server.url("big.csv"), retries=requests - 1, **FAST)) == lines
    assert len(server.log) == requests


def test_iter_lines_404_and_non_utf8(server):
    with pytest.raises(DownloadError, match="404"):
        list(iter_lines(server.url("nope.csv"), **FAST))
    put(server, "latin1.csv", "a,b\nna\u00efve,1\n".encode("latin-1"))
    with pytest.raises(DownloadError, match="line 2 is not UTF-8"):
        list(iter_lines(server.url("latin1.csv"), **FAST))


# ----------------------------------------------------------------------------- archives


def zip_bytes(entries):
    """entries: (name or ZipInfo, bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_bytes(members, mode="w:gz"):
    """members: (TarInfo, bytes or None)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def tar_entry(name, data=None, kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, data


def zip_symlink(name, target):
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = 0o120777 << 16
    return info, target.encode()


GOOD_FILES = {
    "top/a.txt": b"alpha",
    "top/images/b.jpg": random_bytes(3000, seed=1),
    "top/images/c.jpg": random_bytes(3000, seed=2),
}

HOSTILE = {
    "zip_dotdot": lambda t: zip_bytes([("ok.txt", b"ok"), ("../evil.txt", b"evil")]),
    "zip_absolute": lambda t: zip_bytes([(f"{t}/evil.txt", b"evil")]),
    "zip_symlink_out": lambda t: zip_bytes([zip_symlink("top/link", "../../evil.txt")]),
    "zip_truncated": lambda t: zip_bytes(GOOD_FILES.items())[:2000],
    "zip_html_page": lambda t: HTML_PAGE,
    "tar_dotdot": lambda t: tar_bytes([tar_entry("top/../../evil.txt", b"evil")]),
    "tar_absolute": lambda t: tar_bytes([tar_entry(f"{t}/evil.txt", b"evil")]),
    "tar_symlink_out": lambda t: tar_bytes(
        [tar_entry("top/link", kind=tarfile.SYMTYPE, linkname="../../evil.txt")]
    ),
    "tar_symlink_absolute": lambda t: tar_bytes(
        [tar_entry("top/evil", kind=tarfile.SYMTYPE, linkname=f"{t}/evil.txt")]
    ),
    "tar_hardlink_absolute": lambda t: tar_bytes(
        [tar_entry("top/hard", kind=tarfile.LNKTYPE, linkname=f"{t}/in/archive.zip")]
    ),
    "tar_hardlink_out": lambda t: tar_bytes(
        [tar_entry("top/hard", kind=tarfile.LNKTYPE, linkname="../evil.txt")]
    ),
    "tar_device": lambda t: tar_bytes([tar_entry("top/null", kind=tarfile.CHRTYPE)]),
    "tar_gz_truncated": lambda t: tar_bytes([tar_entry(n, d) for n, d in GOOD_FILES.items()])[
        :4000
    ],
    "tar_truncated": lambda t: tar_bytes(
        [tar_entry(n, d) for n, d in GOOD_FILES.items()], mode="w"
    )[:4000],
}


def tree(root):
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*"))


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_raises_and_writes_nothing(tmp_path, case):
    archive = tmp_path / "in" / "archive.zip"
    archive.parent.mkdir()
    archive.write_bytes(HOSTILE[case](tmp_path))
    before = tree(tmp_path)
    with pytest.raises(ArchiveError) as caught:
        extract(archive, tmp_path / "out" / "dest")
    assert caught.value.where == str(archive)
    assert [p for p in tree(tmp_path) if p != "out"] == before  # at most dest's empty parent


@pytest.mark.parametrize("mode,name", [("w:gz", "a.tar.gz"), ("w", "a.tar"), ("zip", "a.zip")])
def test_extract_detects_format_by_content_and_returns_files(tmp_path, mode, name):
    if mode == "zip":
        data = zip_bytes(GOOD_FILES.items())
    else:
        data = tar_bytes([tar_entry(n, d) for n, d in GOOD_FILES.items()], mode=mode)
    archive = tmp_path / ("misnamed_" + name[::-1])  # the name says nothing
    archive.write_bytes(data)
    dest = tmp_path / "dest"
    files = extract(archive, dest)
    assert sorted(files) == sorted(dest / n for n in GOOD_FILES)
    for n, content in GOOD_FILES.items():
        assert (dest / n).read_bytes() == content
    assert sorted(os.listdir(tmp_path)) == sorted([archive.name, "dest"])  # no staging left


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_members_predicate_and_merge_into_existing_dest(tmp_path, fmt):
    if fmt == "zip":
        data = zip_bytes(GOOD_FILES.items())
    else:
        data = tar_bytes([tar_entry(n, d) for n, d in GOOD_FILES.items()])
    archive = tmp_path / "archive"
    archive.write_bytes(data)
    dest = tmp_path / "dest"
    files = extract(archive, dest, members=lambda n: n.endswith("b.jpg"))
    assert files == [dest / "top/images/b.jpg"]
    assert tree(dest) == ["top", "top/images", "top/images/b.jpg"]
    # A second extraction adds to the folder and keeps what is there.
    extract(archive, dest, members=lambda n: n.endswith("c.jpg"))
    assert tree(dest) == ["top", "top/images", "top/images/b.jpg", "top/images/c.jpg"]


def test_links_inside_the_folder_are_allowed_in_tar(tmp_path):
    archive = tmp_path / "links.tar.gz"
    archive.write_bytes(
        tar_bytes(
            [
                tar_entry("top/a.txt", b"alpha"),
                tar_entry("top/sym", kind=tarfile.SYMTYPE, linkname="a.txt"),
                tar_entry("top/hard", kind=tarfile.LNKTYPE, linkname="top/a.txt"),
            ]
        )
    )
    extract(archive, tmp_path / "dest")
    assert (tmp_path / "dest/top/sym").read_bytes() == b"alpha"
    assert (tmp_path / "dest/top/hard").read_bytes() == b"alpha"


def test_extract_real_mirror_archive(tmp_path, mirror):
    archive = mirror / RACCOON_URL.removeprefix("https://")
    files = extract(archive, tmp_path / "raccoon", members=lambda n: n.endswith(".xml"))
    assert len(files) == 200
    assert all(f.is_file() and f.suffix == ".xml" for f in files)


# ----------------------------------------------------------------------------- verifiers


def jpeg_bytes():
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_verify_image(tmp_path):
    good = tmp_path / "good.jpg"
    good.write_bytes(jpeg_bytes())
    verify_image(good)
    for name, data in {
        "text.jpg": b"this is not a picture\n",
        "page.jpg": HTML_PAGE,
        "empty.jpg": b"",
        "truncated.jpg": jpeg_bytes()[:300],
    }.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageError, match=re.escape(name)):
            verify_image(tmp_path / name)


def test_verify_image_rejects_a_decompression_bomb(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 // 4)
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(jpeg_bytes())
    with pytest.raises(ImageError, match="bomb"):
        verify_image(bomb)


def test_verify_zip_and_verify_tar(tmp_path):
    good_zip = tmp_path / "good.zip"
    good_zip.write_bytes(zip_bytes(GOOD_FILES.items()))
    verify_zip(good_zip)
    # Flip one byte of a stored member: the central directory still reads, the CRC fails.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("data.bin", random_bytes(1000))
    corrupt = bytearray(buffer.getvalue())
    corrupt[500] ^= 0xFF
    (tmp_path / "crc.zip").write_bytes(bytes(corrupt))
    with pytest.raises(ArchiveError, match="'data.bin' fails its CRC"):
        verify_zip(tmp_path / "crc.zip")
    (tmp_path / "cut.zip").write_bytes(good_zip.read_bytes()[:2000])
    with pytest.raises(ArchiveError, match="cut.zip"):
        verify_zip(tmp_path / "cut.zip")

    good_tar = tmp_path / "good.tar.gz"
    good_tar.write_bytes(tar_bytes([tar_entry(n, d) for n, d in GOOD_FILES.items()]))
    verify_tar(good_tar)
    for name, data in {
        "cut.tar.gz": good_tar.read_bytes()[:4000],
        "page.tar": HTML_PAGE,
        "cut.tar": tar_bytes([tar_entry(n, d) for n, d in GOOD_FILES.items()], "w")[:4000],
    }.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ArchiveError, match=re.escape(name)):
            verify_tar(tmp_path / name)


def test_nothing_is_left_in_the_working_directory(tmp_path, monkeypatch, server):
    """download/extract write only under dest's parent, even when run from elsewhere."""
    monkeypatch.chdir(tmp_path)
    put(server, "a.zip", zip_bytes(GOOD_FILES.items()))
    archive = download(server.url("a.zip"), tmp_path / "raw" / "a.zip", verify=verify_zip, **FAST)
    extract(archive, tmp_path / "raw" / "a")
    assert sorted(os.listdir(tmp_path / "raw")) == ["a", "a.zip"]
