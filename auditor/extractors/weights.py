"""Pretrained weights on an offline machine: find the file, prove it is the right one, load its tensors.

The auditor never downloads. A weights file is looked up, in order, in the directory the settings name
(``AUDITOR_WEIGHTS_DIR``, passed in by the caller) and in torch.hub's checkpoint cache
(``<torch.hub.get_dir()>/checkpoints``, where ``torch.hub.load_state_dict_from_url`` on a connected
machine leaves it). A missing file raises :class:`WeightsNotFoundError` saying which file to put where and
where to fetch it; a file whose SHA-256 differs raises :class:`WeightsChecksumError` with both digests.

Hashing a multi-GB checkpoint on every run is slow, so the digest is remembered in a sidecar file
(``<weights file>.sha256.json``) keyed by the file's size and modification time in nanoseconds; any change
to either forces a fresh hash. The sidecar is a cache, not a signature: it guards against the accidents
that happen (a truncated download, the wrong file under the right name), not against someone who edits a
file and then restores its size and mtime.

Error classes::

    BadInputError
    ├── WeightsNotFoundError   (weights_not_found) the file is in neither searched directory
    ├── WeightsChecksumError   (weights_checksum)  the file's SHA-256 is not the pinned one
    └── WeightsFormatError     (weights_format)    the file is not a readable state dict
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from auditor.errors import BadInputError

SIDECAR_SUFFIX = ".sha256.json"
_HASH_CHUNK_BYTES = 8 * 1024 * 1024
# torch.hub names files ``<stem>-<first 8+ hex digits of the sha256>.<ext>``; shorter prefixes prove little.
_MIN_HASH_PREFIX = 8
_HEX_DIGITS = frozenset("0123456789abcdef")


class WeightsNotFoundError(BadInputError):
    code = "weights_not_found"


class WeightsChecksumError(BadInputError):
    code = "weights_checksum"


class WeightsFormatError(BadInputError):
    code = "weights_format"


@dataclass(frozen=True)
class WeightsSpec:
    """One pretrained weights file, pinned by content.

    ``sha256`` is the full hex digest where it is known. Where only torch.hub's file-name convention is
    known (``name-<hash prefix>.pth``, the prefix being the start of the file's SHA-256, as
    ``torch.hub.load_state_dict_from_url(check_hash=True)`` checks it), it is that prefix, at least 8 hex
    digits; :meth:`matches` then compares the digest's start. ``source_url`` only feeds the error message.
    """

    name: str
    filename: str
    sha256: str
    source_url: str

    def __post_init__(self) -> None:
        digest = self.sha256
        if not _MIN_HASH_PREFIX <= len(digest) <= 64 or not set(digest) <= _HEX_DIGITS:
            raise ValueError(f"{self.name}: sha256 must be 8 to 64 lowercase hex digits, got {digest!r}")

    @property
    def is_full_hash(self) -> bool:
        return len(self.sha256) == 64

    def matches(self, digest: str) -> bool:
        return digest.startswith(self.sha256)


def hub_checkpoint_dir() -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` stores downloads (honours ``TORCH_HOME``/``set_dir``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_weights(spec: WeightsSpec, weights_dir: Path | None) -> Path:
    """The verified path of ``spec``'s file: ``weights_dir`` first, then torch.hub's checkpoint cache.

    A file found under the right name but with the wrong content is an error, never skipped in favour of a
    later directory: the user put it there and should learn that it is not the file they meant.
    """
    searched = _search_dirs(weights_dir)
    for directory in searched:
        candidate = directory / spec.filename
        if candidate.is_file():
            verify_weights(spec, candidate)
            return candidate
    raise WeightsNotFoundError(_not_found_message(spec, searched), details=_not_found_details(spec, searched))


def verify_weights(spec: WeightsSpec, path: Path) -> str:
    """The file's SHA-256, after checking it against ``spec`` (raises :class:`WeightsChecksumError`)."""
    digest = file_sha256(path)
    if not spec.matches(digest):
        kind = "SHA-256" if spec.is_full_hash else "SHA-256 prefix"
        raise WeightsChecksumError(
            f"{spec.name} weights at {path} have SHA-256 {digest}, expected {kind} {spec.sha256}: "
            f"the file is corrupt or a different checkpoint; download it again from {spec.source_url}",
            details={"path": str(path), "actual_sha256": digest, "expected_sha256": spec.sha256},
        )
    return digest


def file_sha256(path: Path) -> str:
    """SHA-256 of ``path``, streamed, reusing the sidecar digest while the file's size and mtime hold."""
    stat = path.stat()
    key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    cached = _read_sidecar(sidecar_path(path))
    if cached is not None and {k: cached.get(k) for k in key} == key and _is_hex_digest(cached.get("sha256")):
        return str(cached["sha256"])
    digest = _stream_sha256(path)
    _write_sidecar(sidecar_path(path), {**key, "sha256": digest})
    return digest


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.pth``/``.pt`` (``torch.load(weights_only=True)``) or ``.safetensors`` file, on CPU.

    ``weights_only`` refuses pickled code, so a checkpoint from an untrusted mirror cannot run anything.
    """
    if path.suffix == ".safetensors":
        return _load_safetensors(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and RuntimeError variants for unreadable files
        raise WeightsFormatError(
            f"cannot read weights file {path}: {exc}", details={"path": str(path)}
        ) from exc
    return _as_state_dict(loaded, path)


def without_keys(state_dict: Mapping[str, torch.Tensor], keys: frozenset[str]) -> dict[str, torch.Tensor]:
    """``state_dict`` less ``keys``, keeping torch's per-module version metadata (see below)."""
    return _keep_metadata(OrderedDict((k, v) for k, v in state_dict.items() if k not in keys), state_dict)


def _search_dirs(weights_dir: Path | None) -> list[Path]:
    dirs = [weights_dir] if weights_dir is not None else []
    return [*dirs, hub_checkpoint_dir()]


def _not_found_message(spec: WeightsSpec, searched: list[Path]) -> str:
    where = " or ".join(str(d) for d in searched)
    return (
        f"{spec.name} weights not found: place the file {spec.filename!r} in {where} "
        f"(set AUDITOR_WEIGHTS_DIR to choose the directory). This machine does not download; on a "
        f"connected machine fetch it from {spec.source_url} and copy it over."
    )


def _not_found_details(spec: WeightsSpec, searched: list[Path]) -> dict[str, Any]:
    return {
        "weights": spec.name,
        "filename": spec.filename,
        "searched": [str(d) for d in searched],
        "source_url": spec.source_url,
        "expected_sha256": spec.sha256,
    }


def _stream_sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK_BYTES):
            hasher.update(chunk)
    return hasher.hexdigest()


def _is_hex_digest(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX_DIGITS


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


def _write_sidecar(path: Path, content: dict[str, Any]) -> None:
    # Best effort: a read-only weights directory only costs a re-hash next time. Written to a temporary
    # name and renamed so a concurrent reader never sees half a file.
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(content), encoding="utf-8")
        temporary.replace(path)
    except OSError:
        temporary.unlink(missing_ok=True)


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError as exc:
        raise WeightsFormatError(
            f"{path} is a .safetensors file, which needs the safetensors package: pip install safetensors",
            details={"path": str(path), "install": "pip install safetensors"},
        ) from exc
    try:
        return dict(load_file(str(path), device="cpu"))
    except Exception as exc:  # safetensors raises its own SafetensorError for malformed headers
        raise WeightsFormatError(
            f"cannot read weights file {path}: {exc}", details={"path": str(path)}
        ) from exc


def _as_state_dict(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise WeightsFormatError(
            f"{path} does not hold a state dict (a mapping of parameter names to tensors)",
            details={"path": str(path), "type": type(loaded).__name__},
        )
    return _keep_metadata(OrderedDict(loaded.items()), loaded)


def _keep_metadata(
    state: OrderedDict[str, torch.Tensor], source: Mapping[str, torch.Tensor]
) -> OrderedDict[str, torch.Tensor]:
    # torch stores per-module versions on the saved dict; BatchNorm reads them to decide whether an old
    # checkpoint may lack ``num_batches_tracked``, so a copy must carry them along.
    metadata = getattr(source, "_metadata", None)
    if metadata is not None:
        state._metadata = metadata  # type: ignore[attr-defined]
    return state
