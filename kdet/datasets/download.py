"""Downloads users can trust: mirror, retries, resume, verify-then-rename, safe extraction.

Every dataset source fetches through this module:

- ``resolve_url`` maps ``https://HOST/PATH`` to ``$KDET_MIRROR/HOST/PATH`` when the
  ``KDET_MIRROR`` environment variable (a folder or a base URL) is set.
- ``download`` writes to ``DEST.part``, resumes a cut transfer with an HTTP ``Range``
  request, retries transient failures with exponential back-off, checks the byte count,
  runs a verifier and only then renames the file to ``DEST``. A file under its final
  name is therefore always complete and verified.
- ``iter_lines`` streams a large text file line by line (resuming too) without storing it.
- ``extract`` unpacks zip and tar archives into a temporary folder next to the
  destination after checking every member, then moves the result into place.

Example:
    >>> from kdet.datasets.download import download, extract, verify_zip
    >>> url = "https://github.com/datitran/raccoon_dataset/archive/refs/heads/master.zip"
    >>> archive = download(url, "data/raw/raccoon.zip", verify=verify_zip)  # doctest: +SKIP
    >>> files = extract(archive, "data/raw/raccoon")  # doctest: +SKIP
"""

from __future__ import annotations

import gzip
import logging
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import requests
import urllib3
from PIL import Image
from tqdm.auto import tqdm

from kdet.errors import ArchiveError, DownloadError, ImageError

logger = logging.getLogger(__name__)

MIRROR_ENV = "KDET_MIRROR"
_CHUNK = 1 << 16
# Statuses worth another try: the server or something in between may recover.
_RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_COMPRESSED_TAR_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")
_TAR_READ_ERRORS = (
    tarfile.TarError,
    EOFError,
    zlib.error,
    gzip.BadGzipFile,
    lzma.LZMAError,
)


class _Transient(Exception):
    """A failure that another attempt may not repeat (5xx, short read, reset)."""


class _RangeNotSatisfiable(_Transient):
    """HTTP 416: the resume offset is at or past the end of the remote file."""

    def __init__(self, total):
        super().__init__(f"HTTP 416 Range Not Satisfiable (remote size {total})")
        self.total = total


# Network errors after which a new attempt makes sense. Certificate errors do not.
_STREAM_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
    ConnectionError,
    TimeoutError,
)


def resolve_url(url: str, mirror: str | None = None) -> str:
    """Returns where to fetch ``url`` from: the mirror's copy when a mirror is set.

    A mirror (``mirror`` or else the ``KDET_MIRROR`` environment variable) is a folder
    or a base URL; ``https://HOST/PATH`` maps to ``MIRROR/HOST/PATH``. Query strings are
    not part of the mapping. Addresses that are not http(s) are returned unchanged.

    Args:
        url: canonical ``http(s)://`` address of the file.
        mirror: folder or base URL; ``None`` reads ``KDET_MIRROR``; ``""`` means no mirror.

    Returns:
        The real address, a URL under the mirror's base URL, or an absolute local path.

    Raises:
        DownloadError: the URL's path would leave the mirror folder (``..``).

    Example:
        >>> resolve_url("https://example.org/a/b.zip", mirror="/srv/mirror")
        '/srv/mirror/example.org/a/b.zip'
        >>> resolve_url("https://example.org/a/b.zip", mirror="http://10.0.0.1:8000/m/")
        'http://10.0.0.1:8000/m/example.org/a/b.zip'
    """
    if mirror is None:
        mirror = os.environ.get(MIRROR_ENV, "")
    parts = urlsplit(url)
    if not mirror or parts.scheme not in ("http", "https"):
        return url
    relative = parts.netloc + parts.path
    if _is_http(mirror):
        return mirror.rstrip("/") + "/" + relative
    root = os.path.abspath(os.path.expanduser(mirror))
    local = os.path.normpath(os.path.join(root, unquote(relative)))
    if os.path.commonpath([root, local]) != root:
        raise DownloadError(url, f"path leaves the mirror folder {root}")
    return local


def download(
    url: str,
    dest: str | Path,
    *,
    verify: Callable[[Path], object] | None = None,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: bool = True,
    mirror: str | None = None,
) -> Path:
    """Downloads ``url`` to ``dest``, resuming, retrying and verifying before the rename.

    Only a complete, verified file ever gets the name ``dest``, so an existing ``dest``
    is returned at once. Bytes go to ``dest + ".part"``; an existing ``.part`` is
    resumed with an HTTP ``Range`` request (a server that ignores it and answers 200
    restarts the file). Connection errors, timeouts, 5xx/408/429 answers and short reads
    are retried ``retries`` times, waiting ``backoff * 2**n`` seconds; other 4xx answers
    fail at once. A ``.part`` that fails ``verify`` is deleted. With a mirror folder the
    file is copied through the same ``.part``, verify and rename steps.

    Args:
        url: canonical address (mapped through the mirror, see ``resolve_url``).
        dest: final path of the file; parent folders are created.
        verify: ``verify(path)`` raising on a bad file, e.g. ``verify_zip``.
        retries: further attempts after the first one.
        backoff: first wait in seconds between attempts; doubles each time.
        timeout: seconds to wait for the connection and for each read.
        progress: show a tqdm progress bar.
        mirror: folder or base URL overriding ``KDET_MIRROR``.

    Returns:
        ``dest`` as a ``Path``.

    Raises:
        DownloadError: naming the URL and the reason (HTTP status, short read, missing
            from the mirror, failed verification, ...).

    Example:
        >>> path = download(  # doctest: +SKIP
        ...     "https://storage.googleapis.com/openimages/v5/class-descriptions-boxable.csv",
        ...     "data/raw/open_images/classes.csv",
        ... )
    """
    dest = Path(dest)
    if dest.exists():
        return dest
    source = resolve_url(url, mirror)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if _is_http(source):
        _download_http(url, source, part, retries, backoff, timeout, progress)
    else:
        _copy_local(url, Path(source), part)
    if verify is not None:
        try:
            verify(part)
        except Exception as exc:
            part.unlink(missing_ok=True)
            raise DownloadError(
                url, _with_source(f"failed verification: {exc}", url, source)
            ) from exc
    os.replace(part, dest)
    return dest


def iter_lines(
    url: str,
    *,
    retries: int = 4,
    timeout: float = 60.0,
    progress: bool = True,
    mirror: str | None = None,
    backoff: float = 1.0,
) -> Iterator[str]:
    """Yields the lines of a UTF-8 text file at ``url`` without storing the file.

    Meant for filtering files too big to keep (Open Images' 2.3 GB train CSV). A cut
    connection is resumed with a ``Range`` request after the last complete line, so no
    line is yielded twice or lost. Line endings (``\\n`` or ``\\r\\n``) and a leading
    byte-order mark are stripped.

    Args:
        url: canonical address (mapped through the mirror, see ``resolve_url``).
        retries: further attempts after a failed one (see ``download``).
        timeout: seconds to wait for the connection and for each read.
        progress: show a tqdm progress bar (bytes).
        mirror: folder or base URL overriding ``KDET_MIRROR``.
        backoff: first wait in seconds between attempts; doubles each time.

    Yields:
        Each line as ``str``.

    Raises:
        DownloadError: naming the URL and the reason (HTTP status, retries exhausted,
            missing from the mirror, a line that is not UTF-8).

    Example:
        >>> url = "https://storage.googleapis.com/openimages/v5/class-descriptions-boxable.csv"
        >>> lines = iter_lines(url)  # doctest: +SKIP
        >>> persons = [line for line in lines if line.endswith(",Person")]  # doctest: +SKIP
    """
    source = resolve_url(url, mirror)
    if not _is_http(source):
        path = Path(source)
        if not path.is_file():
            raise DownloadError(url, f"not found in the mirror: {path}")
        with open(path, "rb") as lines, _bar(url, path.stat().st_size, 0, progress) as bar:
            for number, line in enumerate(lines, 1):
                bar.update(len(line))
                yield _decode_line(line, number, url)
        return

    offset = 0  # bytes up to the end of the last line yielded
    number = 0  # lines yielded
    with requests.Session() as session, _bar(url, None, 0, progress) as bar:
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(backoff * 2 ** (attempt - 1))
            try:
                response, start, total = _open_http(session, url, source, offset, timeout)
                with response:
                    bar.total = total
                    skip = offset - start  # the server ignored Range and starts at 0
                    pending = b""
                    for chunk in response.raw.stream(_CHUNK, decode_content=False):
                        if skip:
                            dropped = min(skip, len(chunk))
                            chunk, skip = chunk[dropped:], skip - dropped
                        pending += chunk
                        *complete, pending = pending.split(b"\n")
                        for line in complete:
                            offset += len(line) + 1
                            number += 1
                            bar.update(len(line) + 1)
                            yield _decode_line(line, number, url)
                    if total is not None and offset + len(pending) != total:
                        raise _Transient(f"received {offset + len(pending)} of {total} bytes")
                    if pending:
                        yield _decode_line(pending, number + 1, url)
                    return
            except _RangeNotSatisfiable as exc:
                if exc.total == offset:  # the connection broke after the last line
                    return
                last_error = exc
            except _STREAM_ERRORS + (_Transient,) as exc:
                last_error = exc
                logger.warning("%s: attempt %d failed: %s", url, attempt + 1, exc)
            except requests.RequestException as exc:
                raise DownloadError(url, _with_source(str(exc), url, source)) from exc
    reason = f"failed after {retries + 1} attempts, last: {last_error}"
    raise DownloadError(url, _with_source(reason, url, source))


def extract(
    archive: str | Path,
    dest: str | Path,
    *,
    members: Callable[[str], bool] | None = None,
) -> list[Path]:
    """Safely unpacks a zip or tar (optionally gz/bz2/xz) archive into ``dest``.

    The format is detected from the content, not the name. Every member is checked
    before anything is written: absolute paths, ``..`` escapes, links pointing outside
    ``dest`` and device files are rejected (for tar by ``tarfile.data_filter``). The
    archive is unpacked into a temporary folder next to ``dest`` and then moved in:
    a missing ``dest`` appears in one rename; into an existing ``dest`` each new
    top-level entry appears in one rename and existing files of the same name are
    replaced, so an interrupted extraction never leaves a partial file under its name.
    Symbolic links stored in a zip are not created (zipfile cannot); they are skipped
    with a warning.

    Args:
        archive: path of the archive.
        dest: folder to unpack into; created with its parents.
        members: ``members(name) -> bool`` choosing which members to unpack (names as
            stored, e.g. ``"101_ObjectCategories/airplanes/image_0001.jpg"``).

    Returns:
        Paths of the files (and tar links) unpacked, under ``dest``; not folders.

    Raises:
        ArchiveError: naming the archive and the member or problem (unsafe member,
            truncated or corrupt archive, not an archive at all).

    Example:
        >>> is_jpg = lambda name: name.endswith(".jpg")
        >>> jpgs = extract("raccoon.zip", "data/raw", members=is_jpg)  # doctest: +SKIP
    """
    archive, dest = Path(archive), Path(dest)
    kind = _archive_kind(archive)
    if dest.exists() and not dest.is_dir():
        raise ArchiveError(archive, f"destination exists and is not a folder: {dest}")
    parent = dest.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=parent))
    try:
        if kind == "zip":
            names = _extract_zip(archive, staging, members)
        else:
            names = _extract_tar(archive, staging, members)
        staging.chmod(0o755)
        _move_into(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [dest / name for name in names]


def verify_zip(path: str | Path) -> None:
    """Raises ``ArchiveError`` unless ``path`` is a zip whose members all pass their CRC.

    Example:
        >>> download(url, "a.zip", verify=verify_zip)  # doctest: +SKIP
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise ArchiveError(path, f"not a valid zip archive: {exc}") from exc
    if bad is not None:
        raise ArchiveError(path, f"member {bad!r} fails its CRC check")


def verify_tar(path: str | Path) -> None:
    """Raises ``ArchiveError`` unless ``path`` is a tar (plain or compressed) readable to its end.

    Example:
        >>> download(url, "a.tar.gz", verify=verify_tar)  # doctest: +SKIP
    """
    try:
        with tarfile.open(path, "r|*") as archive:
            for member in archive:
                if member.isreg():
                    data = archive.extractfile(member)
                    while data.read(_CHUNK):
                        pass
    except _TAR_READ_ERRORS + (OSError,) as exc:
        raise ArchiveError(path, f"not a readable tar archive: {exc}") from exc


def verify_image(path: str | Path) -> None:
    """Raises ``ImageError`` unless ``path`` decodes completely as an image (Pillow).

    Truncated files, text or HTML under an image name, and decompression bombs
    (more pixels than ``PIL.Image.MAX_IMAGE_PIXELS``) are rejected.

    Example:
        >>> download(url, "image.jpg", verify=verify_image)  # doctest: +SKIP
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(path, f"not a decodable image: {exc}") from exc
    except Image.DecompressionBombWarning as exc:
        raise ImageError(path, f"not a decodable image: {exc}") from exc


# ----------------------------------------------------------------------------- helpers


def _is_http(address: str) -> bool:
    return address.startswith(("http://", "https://"))


def _with_source(reason: str, url: str, source: str) -> str:
    return reason if source == url else f"{reason} (fetching {source})"


def _bar(url: str, total: int | None, initial: int, progress: bool):
    name = urlsplit(url).path.rsplit("/", 1)[-1] or url
    return tqdm(
        total=total,
        initial=initial,
        desc=name,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not progress,
        leave=False,
    )


def _decode_line(line: bytes, number: int, url: str) -> str:
    line = line.rstrip(b"\n")
    if line.endswith(b"\r"):
        line = line[:-1]
    try:
        return line.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        raise DownloadError(url, f"line {number} is not UTF-8 text: {exc}") from exc


def _copy_local(url: str, source: Path, part: Path) -> None:
    if not source.is_file():
        raise DownloadError(url, f"not found in the mirror: {source}")
    try:
        shutil.copyfile(source, part)
    except OSError as exc:
        raise DownloadError(url, f"copying {source} failed: {exc}") from exc


def _open_http(session, url, source, offset, timeout):
    """GETs ``source`` from byte ``offset``; returns (response, start byte, total size)."""
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    response = session.get(source, headers=headers, stream=True, timeout=timeout)
    status = response.status_code
    if status in (200, 206):
        encoding = response.headers.get("Content-Encoding", "identity").lower()
        if encoding != "identity":
            response.close()
            raise DownloadError(url, f"server sent Content-Encoding {encoding}, asked identity")
    if status == 206:
        match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
        if match is None or int(match[1]) != offset:
            response.close()
            raise _Transient(f"bad Content-Range for a resume at {offset}")
        total = None if match[2] == "*" else int(match[2])
        return response, offset, total
    if status == 200:
        length = response.headers.get("Content-Length")
        return response, 0, int(length) if length is not None else None
    response.close()
    if status == 416 and offset:
        match = re.fullmatch(r"bytes \*/(\d+)", response.headers.get("Content-Range", ""))
        raise _RangeNotSatisfiable(int(match[1]) if match else None)
    reason = f"HTTP {status} {response.reason}"
    if status in _RETRY_STATUSES:
        raise _Transient(reason)
    raise DownloadError(url, _with_source(reason, url, source))


def _download_http(url, source, part, retries, backoff, timeout, progress):
    with requests.Session() as session:
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(backoff * 2 ** (attempt - 1))
            try:
                _fetch_once(session, url, source, part, timeout, progress)
                return
            except requests.exceptions.SSLError as exc:
                raise DownloadError(url, _with_source(str(exc), url, source)) from exc
            except _STREAM_ERRORS + (_Transient,) as exc:
                last_error = exc
                logger.warning("%s: attempt %d failed: %s", url, attempt + 1, exc)
            except requests.RequestException as exc:
                raise DownloadError(url, _with_source(str(exc), url, source)) from exc
    reason = f"failed after {retries + 1} attempts, last: {last_error}"
    raise DownloadError(url, _with_source(reason, url, source))


def _fetch_once(session, url, source, part, timeout, progress):
    """One attempt: appends the missing bytes to ``part`` and checks its size."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        response, start, total = _open_http(session, url, source, offset, timeout)
    except _RangeNotSatisfiable as exc:
        if exc.total == offset:
            return  # the .part already holds the whole file
        part.unlink()
        raise _Transient(f"{exc}; .part had {offset} bytes, starting over") from exc
    with response, open(part, "ab" if start else "wb") as out:
        with _bar(url, total, start, progress) as bar:
            try:
                for chunk in response.raw.stream(_CHUNK, decode_content=False):
                    out.write(chunk)
                    bar.update(len(chunk))
            except _STREAM_ERRORS as exc:
                out.flush()
                received = out.tell()
                raise _Transient(
                    f"connection broken at {received} of {total} bytes: {exc}"
                ) from exc
        out.flush()
        os.fsync(out.fileno())
    size = part.stat().st_size
    if total is not None and size != total:
        if size > total:
            part.unlink()
        raise _Transient(f"received {size} of {total} bytes")


def _archive_kind(path: Path) -> str:
    try:
        with open(path, "rb") as file:
            head = file.read(512)
    except OSError as exc:
        raise ArchiveError(path, f"cannot read archive: {exc}") from exc
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if head.startswith(_COMPRESSED_TAR_MAGIC) or head[257:262] == b"ustar":
        return "tar"
    if tarfile.is_tarfile(path):  # old v7 tar without the "ustar" magic
        return "tar"
    raise ArchiveError(path, f"not a zip or tar archive (it starts with {head[:40]!r})")


def _unsafe_name(name: str) -> str | None:
    """Why a member name may not be extracted, or None when it is a plain relative path."""
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return "absolute path"
    if ".." in re.split(r"[/\\]", name):
        return "'..' would leave the destination folder"
    return None


def _extract_zip(archive: Path, staging: Path, members) -> list[str]:
    # zipfile has no extraction filter and silently rewrites unsafe names, so the
    # checks that reject them are written here.
    try:
        with zipfile.ZipFile(archive) as zf:
            chosen = []
            for info in zf.infolist():
                name = info.filename
                reason = _unsafe_name(name)
                if reason is not None:
                    raise ArchiveError(archive, f"member {name!r}: {reason}")
                if info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16):
                    target = zf.read(info).decode("utf-8", "replace")
                    inside = os.path.normpath(os.path.join(os.path.dirname(name), target))
                    if _unsafe_name(target) or inside.startswith(".."):
                        raise ArchiveError(
                            archive, f"member {name!r}: symlink to {target!r} leaves the folder"
                        )
                    warnings.warn(f"{archive}: skipping symlink member {name!r}", stacklevel=3)
                    continue
                if members is None or members(name):
                    chosen.append(info)
            for info in chosen:
                zf.extract(info, staging)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise ArchiveError(archive, f"cannot unpack zip (truncated or corrupt?): {exc}") from exc
    return [os.path.normpath(info.filename) for info in chosen if not info.is_dir()]


def _extract_tar(archive: Path, staging: Path, members) -> list[str]:
    try:
        with tarfile.open(archive, "r:*") as tf:
            chosen = []
            for member in tf.getmembers():
                reason = _unsafe_name(member.name)
                if reason is not None:
                    raise ArchiveError(archive, f"member {member.name!r}: {reason}")
                try:  # links leaving the folder, device files, ...
                    tarfile.data_filter(member, str(staging))
                except tarfile.FilterError as exc:
                    raise ArchiveError(archive, f"unsafe member: {exc}") from exc
                if members is None or members(member.name):
                    chosen.append(member)
            tf.extractall(staging, members=chosen, filter="data")
    except _TAR_READ_ERRORS + (OSError,) as exc:  # OSError: e.g. a corrupt bz2 stream
        raise ArchiveError(archive, f"cannot unpack tar (truncated or corrupt?): {exc}") from exc
    return [os.path.normpath(member.name) for member in chosen if not member.isdir()]


def _move_into(source: Path, dest: Path) -> None:
    """Moves the tree ``source`` into ``dest`` by renames, replacing same-named entries."""
    if not os.path.lexists(dest):
        os.replace(source, dest)
        return
    for child in source.iterdir():
        target = dest / child.name
        if _is_real_dir(child) and _is_real_dir(target):
            _move_into(child, target)
            continue
        if _is_real_dir(target):
            shutil.rmtree(target)
        elif os.path.lexists(target):
            target.unlink()
        os.replace(child, target)


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()
