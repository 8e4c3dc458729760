"""Content fingerprints: the same bytes give the same fingerprint on every machine."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20


def file_fingerprint(path: Path) -> str:
    """``sha256:<hex>`` of the file's bytes (streamed: constant memory for large files)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"
