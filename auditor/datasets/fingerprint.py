"""Content fingerprints: the same bytes give the same fingerprint on every machine.

Two definitions, both written ``sha256:<64 hex digits>``:

* **A single file** (``.npy``, ``.csv``, ``.txt``, ...): SHA-256 of its bytes (:func:`file_fingerprint`).
* **A collection** (a folder of images, a zip or tar archive, a set of WebDataset shards):
  :func:`collection_fingerprint` over the members' relative keys (POSIX paths inside the folder or the
  archive; never absolute paths) and sizes. The SHA-256 is fed, in this order::

      b"auditor-collection/v1\\n"
      for each (key, size), keys sorted:        key  \\0  decimal size  \\0
      b"content\\n"
      for each hashed key, keys sorted:         key  \\0  sha256(member bytes) hex  \\0

  The hashed keys are all members when their total size is below ``FULL_HASH_BELOW_BYTES`` (64 MiB);
  above it, the ``SAMPLED_MEMBERS`` (64) keys of lowest ``sha256("fingerprint\\0" + key)``, a fixed
  choice that every machine repeats. Modification times, owners and absolute locations never enter,
  so copies in two directories, or the same files in a folder and in an archive, fingerprint alike.
  A member larger than the dataset's ``max_member_bytes`` enters as ``too-large`` in place of its
  SHA-256: it is skipped whenever it is read, so its bytes cannot change a result, and hashing stays
  within the same cap as reading (a bomb costs nothing to fingerprint).

  **Weakness**: above 64 MiB, an edit that keeps the size of a member outside the hashed sample goes
  unseen. Large collections trade that for a fingerprint that costs a listing plus 64 reads instead of
  reading every byte before the embedding cache can be consulted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from auditor.datasets.sampling import seeded_rank

_CHUNK = 1 << 20
FULL_HASH_BELOW_BYTES = 64 << 20
SAMPLED_MEMBERS = 64
_FINGERPRINT_SEED = "fingerprint"
_HEADER = b"auditor-collection/v1\n"


def file_fingerprint(path: Path) -> str:
    """``sha256:<hex>`` of the file's bytes (streamed: constant memory for large files)."""
    with path.open("rb") as handle:
        return f"sha256:{stream_sha256(handle)}"


def stream_sha256(handle: IO[bytes]) -> str:
    """Hex SHA-256 of everything left in ``handle``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    while block := handle.read(_CHUNK):
        digest.update(block)
    return digest.hexdigest()


def members_to_hash(listing: Sequence[tuple[str, int]]) -> list[str]:
    """The keys whose bytes enter the fingerprint, sorted (all of them for small collections)."""
    keys = sorted(key for key, _ in listing)
    if sum(size for _, size in listing) < FULL_HASH_BELOW_BYTES:
        return keys
    sampled = sorted(keys, key=lambda key: seeded_rank(key, _FINGERPRINT_SEED))[:SAMPLED_MEMBERS]
    return sorted(sampled)


def collection_fingerprint(listing: Sequence[tuple[str, int]], content_sha256: Callable[[str], str]) -> str:
    """``sha256:<hex>`` of a collection given its ``(key, size)`` listing and a hex SHA-256 per key.

    ``content_sha256`` is called only for the keys :func:`members_to_hash` picks.
    """
    digest = hashlib.sha256(_HEADER)
    for key, size in sorted(listing):
        digest.update(f"{key}\0{size}\0".encode())
    digest.update(b"content\n")
    for key in members_to_hash(listing):
        digest.update(f"{key}\0{content_sha256(key)}\0".encode())
    return f"sha256:{digest.hexdigest()}"


def selection_fingerprint(content_fingerprint: str, selection: dict[str, object]) -> str:
    """A fingerprint for a subset of a dataset: the content fingerprint when ``selection`` is empty."""
    if not selection:
        return content_fingerprint
    described = "\0".join(f"{name}={selection[name]}" for name in sorted(selection))
    digest = hashlib.sha256(f"{content_fingerprint}\0{described}".encode())
    return f"sha256:{digest.hexdigest()}"
