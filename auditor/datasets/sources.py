"""Sample stores: where the bytes of a collection's members live, read one member at a time.

A collection (a folder, a zip or tar archive, a WebDataset shard) is listed once, in the parent
process, into :class:`Member` rows (clean relative key, locator, size). Its store is small and
picklable: a DataLoader worker that unpickles it opens its own handle on first use (per process, so a
forked worker never shares a file offset with its parent) and reads single members by locator.

Safety, since references may come from API callers:

* folders: symlinks whose target leaves the data roots refuse the whole dataset, and directory links
  are followed once (a link back to an ancestor is not walked twice);
* archives: member names that are absolute or contain ``..`` refuse the archive (keys are never used
  as extraction paths, but they become sample ids and labels); link members are ignored;
* every read is capped at ``max_member_bytes`` (a zip bomb stops there), raising
  :class:`MemberTooLargeError`, which the image decoder counts as a skipped sample; hashing a member
  for the fingerprint (:meth:`SampleStore.sha256`) is capped the same way, so an oversized member costs
  nothing to fingerprint either;
* an archive (zip, tar, tar.gz/bz2/xz, each WebDataset shard) whose members add up to more than
  ``max_archive_bytes`` once decompressed is refused while it is listed (:class:`ArchiveTooLargeError`),
  before a compressed tar is decompressed past the member that crosses the cap;
* a remote file is downloaded only up to ``max_download_bytes`` (:class:`DownloadTooLargeError`): a
  ``Content-Length`` above it is refused before the body is read, and the bytes actually streamed are
  counted too; partial and failed downloads are deleted.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import itertools
import lzma
import os
import tarfile
import threading
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, cast

from auditor.datasets.uri import PathNotAllowedError, is_within, safe_member_key
from auditor.errors import (
    ArchiveTooLargeError,
    DatasetFormatError,
    DatasetNotFoundError,
    DownloadTooLargeError,
)

DEFAULT_MAX_MEMBER_BYTES = 64 << 20
# Operator defaults (settings AUDITOR_MAX_ARCHIVE_BYTES / AUDITOR_MAX_DOWNLOAD_BYTES); see auditor.config.
DEFAULT_MAX_ARCHIVE_BYTES = 16 << 30
DEFAULT_MAX_DOWNLOAD_BYTES = 10 << 30
_CHUNK = 1 << 20
# Finder/AppleDouble debris that zip tools on macOS add beside every file.
_IGNORED_DIRECTORIES = frozenset({"__MACOSX"})


class MemberTooLargeError(DatasetFormatError):
    code = "member_too_large"


@dataclass(frozen=True)
class Member:
    """One file of a collection: ``key`` is its clean relative POSIX path, ``locator`` what the store
    reads (the same relative path, an archive member name, or a remote path)."""

    key: str
    locator: str
    size: int


class SampleStore(Protocol):
    """Reads single members; picklable, so it can travel to DataLoader workers."""

    @property
    def name(self) -> str: ...

    def read(self, locator: str) -> bytes: ...

    def sha256(self, locator: str) -> str: ...

    def close(self) -> None: ...


def is_ignored_name(key: str) -> bool:
    """Hidden files and directories (``.DS_Store``, ``._x.jpg``) and ``__MACOSX/`` are not samples."""
    parts = key.split("/")
    return any(part.startswith(".") or part in _IGNORED_DIRECTORIES for part in parts)


def _too_large(store: str, locator: str, size: int, cap: int) -> MemberTooLargeError:
    return MemberTooLargeError(
        f"{store}: {locator} is larger than max_member_bytes={cap} ({size} bytes or more)",
        details={"member": locator, "max_member_bytes": cap},
    )


def _read_capped(handle: IO[bytes], store: str, locator: str, cap: int) -> bytes:
    data = handle.read(cap + 1)
    if len(data) > cap:
        raise _too_large(store, locator, len(data), cap)
    return data


def _sha256_capped(handle: IO[bytes], store: str, locator: str, cap: int) -> str:
    """Hex SHA-256 of what is left in ``handle``, streamed; :class:`MemberTooLargeError` past ``cap``."""
    digest = hashlib.sha256()
    seen = 0
    while block := handle.read(_CHUNK):
        seen += len(block)
        if seen > cap:
            raise _too_large(store, locator, seen, cap)
        digest.update(block)
    return digest.hexdigest()


def _archive_too_large(container: str, total: int, cap: int) -> ArchiveTooLargeError:
    return ArchiveTooLargeError(
        f"{container}: its members add up to {total} bytes or more once decompressed, above "
        f"max_archive_bytes={cap} (AUDITOR_MAX_ARCHIVE_BYTES); split the archive or ask the operator to "
        "raise the limit",
        details={"container": container, "max_archive_bytes": cap, "at_least_bytes": total},
    )


class _PerProcessHandle:
    """An open handle created on first use in each process; pickles without it."""

    def __init__(self) -> None:
        self._handle: Any = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def _open(self) -> Any:
        raise NotImplementedError

    def _get(self) -> Any:
        if self._handle is None or self._pid != os.getpid():
            self._handle = self._open()
            self._pid = os.getpid()
        return self._handle

    def close(self) -> None:
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_handle=None, _pid=None, _lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __del__(self) -> None:
        # At interpreter shutdown the file machinery may be gone: nothing sensible is left to do.
        with contextlib.suppress(Exception):
            self.close()


# -- local folders ------------------------------------------------------------------------------------------


class LocalFolderStore:
    """Files under a local directory; locators are relative POSIX paths."""

    def __init__(self, root: Path, max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES) -> None:
        self.root = root
        self.max_member_bytes = max_member_bytes

    @property
    def name(self) -> str:
        return self.root.name

    def read(self, locator: str) -> bytes:
        with (self.root / locator).open("rb") as handle:
            return _read_capped(handle, self.name, locator, self.max_member_bytes)

    def sha256(self, locator: str) -> str:
        with (self.root / locator).open("rb") as handle:
            return _sha256_capped(handle, self.name, locator, self.max_member_bytes)

    def close(self) -> None:
        """Nothing stays open between reads."""


def walk_local_folder(root: Path, data_roots: Sequence[Path] | None) -> tuple[list[Member], int]:
    """Every regular file under ``root`` (recursively, following safe links) sorted by key, and the
    number of hidden entries ignored. A link resolving outside ``data_roots`` refuses the dataset."""
    members: list[Member] = []
    ignored = 0
    visited = {os.path.realpath(root)}
    pending: list[tuple[Path, str]] = [(root, "")]
    while pending:
        directory, prefix = pending.pop()
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
        for entry in entries:
            key = prefix + entry.name
            if is_ignored_name(entry.name):
                ignored += 1
                continue
            if entry.is_symlink():
                _check_link(Path(entry.path), key, data_roots)
            if entry.is_dir():
                real = os.path.realpath(entry.path)
                if real not in visited:  # a link back to an ancestor would loop forever
                    visited.add(real)
                    pending.append((Path(entry.path), key + "/"))
            elif entry.is_file():
                members.append(Member(key, key, entry.stat().st_size))
            else:
                ignored += 1  # broken links, sockets, devices
    members.sort(key=lambda member: member.key)
    return members, ignored


def _check_link(link: Path, key: str, data_roots: Sequence[Path] | None) -> None:
    if data_roots is not None and not is_within(link, data_roots):
        raise PathNotAllowedError(
            f"{key} is a symlink to {os.path.realpath(link)}, outside the allowed data roots",
            details={"member": key, "reason": "symlink_outside_data_roots"},
        )


# -- remote folders -----------------------------------------------------------------------------------------


class RemoteFolderStore:
    """Files under a remote prefix, read through an fsspec filesystem (which pickles by its arguments)."""

    def __init__(self, fs: Any, root: str, max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.max_member_bytes = max_member_bytes

    @property
    def name(self) -> str:
        return self.root

    def read(self, locator: str) -> bytes:
        with self.fs.open(locator, "rb") as handle:
            return _read_capped(handle, self.name, locator, self.max_member_bytes)

    def sha256(self, locator: str) -> str:
        with self.fs.open(locator, "rb") as handle:
            return _sha256_capped(handle, self.name, locator, self.max_member_bytes)

    def close(self) -> None:
        """Nothing stays open between reads."""


def list_remote_folder(fs: Any, root: str) -> tuple[list[Member], int]:
    """Every file under a remote prefix sorted by key, and the number of hidden entries ignored."""
    prefix = fs._strip_protocol(root).rstrip("/") + "/"
    found: dict[str, dict[str, Any]] = fs.find(root, detail=True)
    members: list[Member] = []
    ignored = 0
    for path, info in found.items():
        stripped = fs._strip_protocol(path)
        key = safe_member_key(stripped[len(prefix) :] if stripped.startswith(prefix) else stripped, root)
        if is_ignored_name(key):
            ignored += 1
            continue
        size = info.get("size")
        members.append(Member(key, path, int(size if size is not None else fs.size(path))))
    members.sort(key=lambda member: member.key)
    return members, ignored


def download_remote_file(
    fs: Any, remote_path: str, uri: str, download_dir: Path, max_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES
) -> Path:
    """Copy one remote file under ``download_dir`` (a directory per URI) and return the local path.

    Archives need seeking and the readers need a local path, so single remote files are fetched whole;
    the copy is written beside its final name and renamed, so a crashed download never looks complete.
    At most ``max_bytes`` are accepted (:class:`DownloadTooLargeError`): a declared size above it is
    refused before the body is read, and the bytes written are counted as they stream (a server may
    send no size, or lie). A partial or failed download is deleted.
    """
    target_dir = download_dir / hashlib.sha256(uri.encode()).hexdigest()[:24]
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / (Path(remote_path.rstrip("/")).name or "download")
    partial = target.with_name(target.name + ".partial")
    try:
        with partial.open("wb") as handle:
            sink = _CappedSink(handle, uri, max_bytes)
            if "http" in _protocols(fs):
                _download_http(fs, remote_path, uri, sink)
            else:
                _download_stream(fs, remote_path, uri, sink)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target


class _CappedSink:
    """Where a download goes: counts the bytes it is given and refuses past ``cap`` before writing them.

    It doubles as fsspec's transfer callback: a declared size (``set_size``) above ``cap`` is refused
    before the body is read. File-like enough (read/tell/close) for ``get_file`` to write into it."""

    def __init__(self, handle: IO[bytes], uri: str, cap: int) -> None:
        self.handle = handle
        self.uri = uri
        self.cap = cap
        self.written = 0

    def write(self, data: bytes) -> int:
        if self.written + len(data) > self.cap:
            raise _download_too_large(self.uri, self.written + len(data), self.cap)
        self.written += len(data)
        return self.handle.write(data)

    def set_size(self, size: int | None) -> None:
        if size is not None and int(size) > self.cap:
            raise _download_too_large(self.uri, int(size), self.cap)

    def relative_update(self, inc: int = 1) -> None:
        """Progress is counted in :meth:`write`."""

    def read(self, size: int = -1) -> bytes:
        raise OSError("a download sink is write-only")

    def tell(self) -> int:
        return self.written

    def close(self) -> None:
        """The caller closes the underlying file."""


def _download_http(fs: Any, remote_path: str, uri: str, sink: _CappedSink) -> None:
    """One GET: its Content-Length is checked before the body, the body counted as it streams."""
    import aiohttp

    try:
        fs.get_file(remote_path, sink, callback=sink)
    except FileNotFoundError as exc:
        raise DatasetNotFoundError(f"dataset not found: {uri}", details={"uri": uri}) from exc
    except aiohttp.ClientError as exc:  # a refused connection, an error status other than 404
        raise DatasetNotFoundError(f"cannot fetch {uri} ({exc})", details={"uri": uri}) from exc


def _download_stream(fs: Any, remote_path: str, uri: str, sink: _CappedSink) -> None:
    """Object stores and the rest: their listed size first, then the bytes, read in blocks."""
    try:
        info = fs.info(remote_path)
    except FileNotFoundError as exc:
        raise DatasetNotFoundError(f"dataset not found: {uri}", details={"uri": uri}) from exc
    if info.get("type") == "directory":
        raise DatasetFormatError(f"{uri} is a folder; expected a file", details={"uri": uri})
    sink.set_size(info.get("size"))
    with fs.open(remote_path, "rb") as source:
        while block := source.read(_CHUNK):
            sink.write(block)


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = getattr(fs, "protocol", ())
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _download_too_large(uri: str, size: int, cap: int) -> DownloadTooLargeError:
    return DownloadTooLargeError(
        f"{uri} is larger than max_download_bytes={cap} ({size} bytes or more; AUDITOR_MAX_DOWNLOAD_BYTES); "
        "fetch a smaller file or ask the operator to raise the limit",
        details={"uri": uri, "max_download_bytes": cap, "at_least_bytes": size},
    )


# -- zip archives -------------------------------------------------------------------------------------------


class ZipStore(_PerProcessHandle):
    """Members of a zip file; locators are member names as stored."""

    def __init__(self, path: Path, max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES) -> None:
        super().__init__()
        self.path = path
        self.max_member_bytes = max_member_bytes

    @property
    def name(self) -> str:
        return self.path.name

    def _open(self) -> zipfile.ZipFile:
        return zipfile.ZipFile(self.path)

    def _open_member(self, locator: str) -> IO[bytes]:
        """The member, refused up front if it declares more than the cap (the declared size can lie:
        the capped read or hash is what bounds a zip bomb). Call with the lock held."""
        archive: zipfile.ZipFile = self._get()
        declared = archive.getinfo(locator).file_size
        if declared > self.max_member_bytes:
            raise _too_large(self.name, locator, declared, self.max_member_bytes)
        return archive.open(locator)

    def read(self, locator: str) -> bytes:
        with self._lock:
            try:
                with self._open_member(locator) as handle:
                    return _read_capped(handle, self.name, locator, self.max_member_bytes)
            except zipfile.BadZipFile as exc:  # counted as an unreadable sample
                raise OSError(f"{self.name}: member {locator} is corrupt ({exc})") from exc

    def sha256(self, locator: str) -> str:
        with self._lock:
            try:
                with self._open_member(locator) as handle:
                    return _sha256_capped(handle, self.name, locator, self.max_member_bytes)
            except zipfile.BadZipFile as exc:  # a bad CRC, or a member larger than it declares
                raise DatasetFormatError(
                    f"{self.name}: member {locator} is corrupt ({exc})", details={"member": locator}
                ) from exc


def list_zip(path: Path, max_archive_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES) -> tuple[list[Member], int]:
    """Regular members of a zip file sorted by key, and the number of directories/hidden entries ignored.

    Their declared sizes must add up to at most ``max_archive_bytes`` (reads never go past a member's
    declared size: ``zipfile`` stops there)."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetFormatError(f"{path.name}: not a readable zip archive ({exc})") from exc
    total = sum(info.file_size for info in infos)
    if total > max_archive_bytes:
        raise _archive_too_large(path.name, total, max_archive_bytes)
    members: list[Member] = []
    ignored = 0
    for info in infos:
        key = safe_member_key(info.filename, path.name)
        if info.is_dir() or is_ignored_name(key):
            ignored += 1
            continue
        members.append(Member(key, info.filename, info.file_size))
    return _unique_sorted(members, path.name), ignored


def _unique_sorted(members: list[Member], container: str) -> list[Member]:
    members.sort(key=lambda member: member.key)
    for before, after in itertools.pairwise(members):
        if before.key == after.key:
            raise DatasetFormatError(
                f"{container}: member {after.key!r} appears more than once", details={"member": after.key}
            )
    return members


# -- tar archives -------------------------------------------------------------------------------------------


def _open_decompressed(path: Path) -> IO[bytes]:
    """The tar stream of ``path``: compression told by magic bytes, seekable (backwards by re-reading)."""
    with path.open("rb") as probe:
        magic = probe.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return cast(IO[bytes], gzip.open(path, "rb"))  # typeshed does not count GzipFile as IO[bytes]
    if magic.startswith(b"BZh"):
        return bz2.open(path, "rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(path, "rb")
    return path.open("rb")


class _ListingStream:
    """The decompressed tar stream as ``tarfile`` lists it, with the archive caps on every access.

    Listing seeks past member data (for a compressed tar, by inflating it): a seek beyond
    ``max_position`` is refused before it happens. ``tarfile`` itself reads only headers, and the data
    of long-name and pax headers, which are never larger than ``max_read`` in a genuine archive."""

    def __init__(self, raw: IO[bytes], name: str, max_read: int, max_position: int) -> None:
        self.raw = raw
        self.name = name
        self.max_read = max_read
        self.max_position = max_position

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > self.max_read:
            raise ArchiveTooLargeError(
                f"{self.name}: a tar header entry of {size} bytes is larger than max_member_bytes="
                f"{self.max_read}",
                details={"container": self.name, "max_member_bytes": self.max_read},
            )
        end = self.raw.tell() + size
        if end > self.max_position:
            raise _archive_too_large(self.name, end, self.max_position)
        return self.raw.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET and offset > self.max_position:
            raise _archive_too_large(self.name, offset, self.max_position)
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def __enter__(self) -> _ListingStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.raw.close()


class TarStore(_PerProcessHandle):
    """Members of a tar file (plain, gz, bz2 or xz), read by seeking to the offsets found while listing.

    Plain tars seek for free; compressed ones decompress up to the member, and a backwards seek starts
    over, so sequential access is fast and shuffled access of a .tar.gz is slow: prefer plain .tar shards.
    """

    def __init__(
        self,
        path: Path,
        offsets: dict[str, tuple[int, int]],
        max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
    ) -> None:
        super().__init__()
        self.path = path
        self.offsets = offsets
        self.max_member_bytes = max_member_bytes

    @property
    def name(self) -> str:
        return self.path.name

    def _open(self) -> IO[bytes]:
        return _open_decompressed(self.path)

    def read(self, locator: str) -> bytes:
        offset, size = self.offsets[locator]
        if size > self.max_member_bytes:
            raise _too_large(self.name, locator, size, self.max_member_bytes)
        with self._lock:
            stream: IO[bytes] = self._get()
            stream.seek(offset)
            return stream.read(size)

    def sha256(self, locator: str) -> str:
        offset, size = self.offsets[locator]
        if size > self.max_member_bytes:
            raise _too_large(self.name, locator, size, self.max_member_bytes)
        digest = hashlib.sha256()
        with self._lock:
            stream: IO[bytes] = self._get()
            stream.seek(offset)
            left = size
            while left > 0 and (block := stream.read(min(left, 1 << 20))):
                digest.update(block)
                left -= len(block)
        return digest.hexdigest()


def list_tar(
    path: Path,
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
    max_archive_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES,
) -> tuple[TarStore, list[Member], int]:
    """A store for the tar at ``path``, its regular members sorted by key, and the number ignored
    (directories, links, hidden entries).

    The (decompressed) tar stream may run to ``max_archive_bytes``: each header is checked as it is
    read, before the listing moves past its data, so a compressed bomb is refused at its header instead
    of being inflated to find the next one."""
    members: list[Member] = []
    offsets: dict[str, tuple[int, int]] = {}
    ignored = 0
    try:
        with (
            _ListingStream(
                _open_decompressed(path), path.name, max_member_bytes, max_archive_bytes
            ) as stream,
            tarfile.open(fileobj=cast(IO[bytes], stream), mode="r:") as archive,
        ):
            for info in archive:
                if info.offset_data + info.size > max_archive_bytes:
                    raise _archive_too_large(path.name, info.offset_data + info.size, max_archive_bytes)
                key = safe_member_key(info.name, path.name)
                if not info.isreg() or is_ignored_name(key):
                    ignored += 1
                    continue
                members.append(Member(key, info.name, info.size))
                offsets[info.name] = (info.offset_data, info.size)
    except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise DatasetFormatError(f"{path.name}: not a readable tar archive ({exc})") from exc
    return TarStore(path, offsets, max_member_bytes), _unique_sorted(members, path.name), ignored
