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
  :class:`MemberTooLargeError`, which the image decoder counts as a skipped sample.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import itertools
import lzma
import os
import shutil
import tarfile
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, cast

from auditor.datasets.fingerprint import stream_sha256
from auditor.datasets.uri import PathNotAllowedError, is_within, safe_member_key
from auditor.errors import DatasetFormatError, DatasetNotFoundError

DEFAULT_MAX_MEMBER_BYTES = 64 << 20
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
            return stream_sha256(handle)

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
        return hashlib.sha256(self.fs.cat_file(locator)).hexdigest()

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


def download_remote_file(fs: Any, remote_path: str, uri: str, download_dir: Path) -> Path:
    """Copy one remote file under ``download_dir`` (a directory per URI) and return the local path.

    Archives need seeking and the readers need a local path, so single remote files are fetched whole;
    the copy is written beside its final name and renamed, so a crashed download never looks complete.
    """
    if not fs.exists(remote_path):
        raise DatasetNotFoundError(f"dataset not found: {uri}", details={"uri": uri})
    target_dir = download_dir / hashlib.sha256(uri.encode()).hexdigest()[:24]
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / (Path(remote_path.rstrip("/")).name or "download")
    partial = target.with_name(target.name + ".partial")
    fs.get_file(remote_path, str(partial))
    shutil.move(partial, target)
    return target


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

    def read(self, locator: str) -> bytes:
        with self._lock:
            archive: zipfile.ZipFile = self._get()
            declared = archive.getinfo(locator).file_size
            if declared > self.max_member_bytes:
                raise _too_large(self.name, locator, declared, self.max_member_bytes)
            # The declared size can lie; the capped read is what bounds a zip bomb.
            with archive.open(locator) as handle:
                return _read_capped(handle, self.name, locator, self.max_member_bytes)

    def sha256(self, locator: str) -> str:
        with self._lock, self._get().open(locator) as handle:
            return stream_sha256(handle)


def list_zip(path: Path) -> tuple[list[Member], int]:
    """Regular members of a zip file sorted by key, and the number of directories/hidden entries ignored."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetFormatError(f"{path.name}: not a readable zip archive ({exc})") from exc
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
    path: Path, max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES
) -> tuple[TarStore, list[Member], int]:
    """A store for the tar at ``path``, its regular members sorted by key, and the number ignored
    (directories, links, hidden entries)."""
    members: list[Member] = []
    offsets: dict[str, tuple[int, int]] = {}
    ignored = 0
    try:
        with tarfile.open(path, "r:*") as archive:
            for info in archive:
                key = safe_member_key(info.name, path.name)
                if not info.isreg() or is_ignored_name(key):
                    ignored += 1
                    continue
                members.append(Member(key, info.name, info.size))
                offsets[info.name] = (info.offset_data, info.size)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetFormatError(f"{path.name}: not a readable tar archive ({exc})") from exc
    return TarStore(path, offsets, max_member_bytes), _unique_sorted(members, path.name), ignored
