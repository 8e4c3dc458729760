"""The artifact store: embeddings (the cache, and shards handed from GPU workers to CPU workers).

An entry is two objects: ``<key>.npy`` (the array) and ``<key>.json`` (shape, dtype, SHA-256 of the
``.npy`` bytes), the manifest written last. Each object is written to a temporary name and renamed into
place (atomic on a POSIX filesystem; an object store's PUT is atomic per object), and a reader trusts an
entry only when the manifest exists and the array's bytes hash to what it says. So a writer killed at
any point leaves either no entry or a complete one, never a half-written entry that is later used.

A full store (ENOSPC, a quota, a file size limit) is :class:`~auditor.errors.StorageFullError`
(``storage_full``, naming the store's root): the temporary file is removed, and an array whose manifest
could not be written is removed too, so the failed write leaves no entry and takes no space. (A writer
SIGKILLed mid-write cannot clean up: its ``.<name>.<hex>.tmp`` is never read, and may be deleted.)

The root is a local directory by default (``AUDITOR_ARTIFACT_ROOT``, else ``AUDITOR_HOME/artifacts``);
any fsspec URL (``s3://bucket/prefix``) works when fsspec and the filesystem's package are installed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from auditor.errors import AuditorError, BadInputError, StorageFullError

_KEY = re.compile(r"^[a-z0-9][a-z0-9_\-/]{0,200}$")


class ArtifactCorruptError(AuditorError):
    code = "artifact_corrupt"


def _check_key(key: str) -> str:
    if not _KEY.match(key) or ".." in key:
        raise BadInputError(f"invalid artifact key {key!r}")
    return key


class ArtifactStore:
    def __init__(self, root: str) -> None:
        self.root = root
        self._remote = "://" in root and not root.startswith("file://")
        if self._remote:
            try:
                import fsspec
            except ImportError as exc:  # pragma: no cover - depends on the installed extras
                raise BadInputError(
                    f"artifact root {root!r} needs fsspec: pip install 'synthetic-data-auditor[remote]'"
                ) from exc
            self._fs, self._base = fsspec.core.url_to_fs(root)
        else:
            self._fs = None
            self._base = root.removeprefix("file://")
            Path(self._base).mkdir(parents=True, exist_ok=True)

    # --- public ---------------------------------------------------------------------------------------

    def has_array(self, key: str) -> bool:
        return self._exists(f"{_check_key(key)}.json")

    def put_array(self, key: str, array: np.ndarray, meta: dict[str, Any] | None = None) -> None:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        data = buffer.getvalue()
        manifest = {
            "shape": list(array.shape),
            "dtype": str(array.dtype),
            "sha256": hashlib.sha256(data).hexdigest(),
            "meta": meta or {},
        }
        self._write_atomic(f"{_check_key(key)}.npy", data)
        # The manifest last: until it exists the entry does not.
        try:
            self._write_atomic(f"{key}.json", json.dumps(manifest, sort_keys=True).encode())
        except StorageFullError:
            # No manifest, no entry: the array alone is never read, but it holds the space a full store
            # lacks. Kept only if a manifest appeared meanwhile (a concurrent writer of the same key:
            # keys are content addressed, so its array has the same bytes).
            if not self._exists(f"{key}.json"):
                self._remove(f"{key}.npy")
            raise

    def get_entry(self, key: str) -> tuple[np.ndarray, dict[str, Any]]:
        """The array and its metadata, from one read of the manifest."""
        manifest = json.loads(self._read(f"{_check_key(key)}.json"))
        data = self._read(f"{key}.npy")
        if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
            raise ArtifactCorruptError(
                f"artifact {key!r} does not match its manifest (truncated or overwritten); it is ignored",
                details={"key": key},
            )
        array = np.load(io.BytesIO(data), allow_pickle=False)
        return np.asarray(array), dict(manifest.get("meta") or {})

    def get_array(self, key: str) -> np.ndarray:
        return self.get_entry(key)[0]

    def get_meta(self, key: str) -> dict[str, Any]:
        return dict(json.loads(self._read(f"{_check_key(key)}.json")).get("meta") or {})

    def try_get_entry(self, key: str) -> tuple[np.ndarray, dict[str, Any]] | None:
        """The array and its metadata, or None when the entry is missing or corrupt (a cache miss,
        never an error)."""
        if not self.has_array(key):
            return None
        try:
            return self.get_entry(key)
        except (ArtifactCorruptError, OSError, ValueError, KeyError, json.JSONDecodeError):
            return None

    def try_get_array(self, key: str) -> np.ndarray | None:
        """The array, or None when the entry is missing or corrupt (a cache miss, never an error)."""
        entry = self.try_get_entry(key)
        return entry[0] if entry is not None else None

    # --- storage ----------------------------------------------------------------------------------------

    def _path(self, name: str) -> str:
        return f"{self._base.rstrip('/')}/{name}"

    def _exists(self, name: str) -> bool:
        if self._fs is not None:
            return bool(self._fs.exists(self._path(name)))
        return Path(self._path(name)).is_file()

    def _read(self, name: str) -> bytes:
        if self._fs is not None:
            return bytes(self._fs.cat_file(self._path(name)))
        return Path(self._path(name)).read_bytes()

    def _remove(self, name: str) -> None:
        """Best effort: a failed clean-up must not hide the error that caused it."""
        with contextlib.suppress(Exception):  # whatever the filesystem says, the original error matters
            if self._fs is not None:
                self._fs.rm_file(self._path(name))
            else:
                Path(self._path(name)).unlink(missing_ok=True)

    def _write_atomic(self, name: str, data: bytes) -> None:
        target = self._path(name)
        try:
            if self._fs is not None:
                # One PUT per object: object stores never expose a partial object.
                self._fs.pipe_file(target, data)
                return
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
            try:
                with temporary.open("wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, path)
            except BaseException:
                # ENOSPC mid-write (or any failure before the rename): the partial file goes.
                with contextlib.suppress(OSError):
                    temporary.unlink(missing_ok=True)
                raise
        except OSError as exc:
            if exc.errno not in StorageFullError.ERRNOS:
                raise
            raise StorageFullError(
                f"the artifact store {self.root} is full: {exc.strerror or exc} writing {name} "
                f"({len(data):,} bytes); nothing was stored. Free space there, or point "
                "AUDITOR_ARTIFACT_ROOT at a larger volume",
                details={"store": "artifacts", "root": self.root, "object": name, "errno": exc.errno},
            ) from exc
