"""Content fingerprints: stable for the same bytes anywhere, sensitive to any change of a small set."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from auditor.datasets.fingerprint import (
    FULL_HASH_BELOW_BYTES,
    SAMPLED_MEMBERS,
    collection_fingerprint,
    file_fingerprint,
    members_to_hash,
    selection_fingerprint,
)
from auditor.datasets.refs import resolve_dataset


def write_digits(root: Path, n: int = 30) -> list[Path]:
    digits = load_digits()
    paths = []
    for index in range(n):
        pixels = (digits.images[index] * 15).astype(np.uint8).repeat(4, axis=0).repeat(4, axis=1)
        path = root / str(digits.target[index]) / f"{index:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode="L").save(path)
        paths.append(path)
    return paths


def fingerprint_of(path: Path) -> str:
    return resolve_dataset(str(path)).content_fingerprint


def test_single_file_fingerprint_is_the_sha256_of_its_bytes(tmp_path: Path) -> None:
    data = b"real bytes\n" * 1000
    (tmp_path / "x.txt").write_bytes(data)
    assert file_fingerprint(tmp_path / "x.txt") == "sha256:" + hashlib.sha256(data).hexdigest()
    assert fingerprint_of(tmp_path / "x.txt") == file_fingerprint(tmp_path / "x.txt")


def test_same_folder_content_in_two_places_fingerprints_alike(tmp_path: Path) -> None:
    write_digits(tmp_path / "one" / "digits")
    shutil.copytree(tmp_path / "one" / "digits", tmp_path / "two" / "deeper" / "copy")
    for path in (tmp_path / "two").rglob("*.png"):
        os.utime(path, (1_000_000, 1_000_000))  # other mtimes must not matter
    first = fingerprint_of(tmp_path / "one" / "digits")
    assert first.startswith("sha256:") and len(first) == len("sha256:") + 64
    assert fingerprint_of(tmp_path / "two" / "deeper" / "copy") == first


def test_one_changed_byte_renamed_or_added_file_changes_the_fingerprint(tmp_path: Path) -> None:
    paths = write_digits(tmp_path / "d")
    before = fingerprint_of(tmp_path / "d")
    data = bytearray(paths[7].read_bytes())
    data[-20] ^= 0x01  # same size, one bit: the small-set fingerprint hashes every byte
    paths[7].write_bytes(bytes(data))
    changed = fingerprint_of(tmp_path / "d")
    assert changed != before
    paths[3].rename(paths[3].with_name("renamed.png"))
    assert fingerprint_of(tmp_path / "d") not in (before, changed)
    renamed = fingerprint_of(tmp_path / "d")
    (tmp_path / "d" / "README.txt").write_text("not an image: not part of the dataset")
    assert fingerprint_of(tmp_path / "d") == renamed


def test_folder_zip_and_tar_of_the_same_images_fingerprint_alike(tmp_path: Path) -> None:
    paths = write_digits(tmp_path / "d", n=12)
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as archive:
        for path in paths:
            archive.write(path, path.relative_to(tmp_path / "d").as_posix())
    with tarfile.open(tmp_path / "d.tar.gz", "w:gz") as archive:
        for path in paths:
            archive.add(path, path.relative_to(tmp_path / "d").as_posix())
    folder = fingerprint_of(tmp_path / "d")
    assert fingerprint_of(tmp_path / "d.zip") == folder
    assert fingerprint_of(tmp_path / "d.tar.gz") == folder
    assert file_fingerprint(tmp_path / "d.zip") != folder, "an archive is fingerprinted by its members"


def test_large_collections_hash_a_fixed_sample_of_members() -> None:
    n = 1000
    size = FULL_HASH_BELOW_BYTES // n + 1  # just over the threshold in total
    listing = [(f"class-{i % 7}/{i:04d}.png", size) for i in range(n)]
    chosen = members_to_hash(listing)
    assert len(chosen) == SAMPLED_MEMBERS and chosen == sorted(chosen)
    assert members_to_hash(list(reversed(listing))) == chosen, "the choice ignores listing order"
    small = [(key, 10) for key, _ in listing]
    assert members_to_hash(small) == sorted(key for key, _ in small), "small sets hash every member"

    contents = {key: hashlib.sha256(key.encode()).hexdigest() for key, _ in listing}
    base = collection_fingerprint(listing, contents.__getitem__)
    unsampled = next(key for key, _ in listing if key not in chosen)
    edited = {**contents, unsampled: "0" * 64}
    # The documented weakness: a same-size edit of an unsampled member goes unseen ...
    assert collection_fingerprint(listing, edited.__getitem__) == base
    # ... but an edit of a sampled member, or any size change, is seen.
    assert collection_fingerprint(listing, {**contents, chosen[0]: "0" * 64}.__getitem__) != base
    resized = [(key, size + (key == unsampled)) for key, size in listing]
    assert collection_fingerprint(resized, contents.__getitem__) != base


def test_selection_fingerprint_only_differs_when_samples_are_dropped(tmp_path: Path) -> None:
    write_digits(tmp_path / "d", n=20)
    whole = resolve_dataset(str(tmp_path / "d"))
    assert whole.fingerprint == whole.content_fingerprint
    assert resolve_dataset(str(tmp_path / "d"), options={"max_samples": 50}).fingerprint == whole.fingerprint
    sub = resolve_dataset(str(tmp_path / "d"), options={"max_samples": 10})
    other_seed = resolve_dataset(str(tmp_path / "d"), options={"max_samples": 10, "seed": 1})
    assert sub.content_fingerprint == whole.content_fingerprint
    assert len({whole.fingerprint, sub.fingerprint, other_seed.fingerprint}) == 3
    assert selection_fingerprint("sha256:abc", {}) == "sha256:abc"


def test_resolved_size_counts_samples_and_bytes(tmp_path: Path) -> None:
    paths = write_digits(tmp_path / "d", n=9)
    resolved = resolve_dataset(str(tmp_path / "d"), options={"max_samples": 4})
    assert (resolved.n_total, resolved.n_samples) == (9, 4)
    assert resolved.n_bytes == sum(path.stat().st_size for path in paths)


@pytest.mark.parametrize("n_rows", [5, 12])
def test_npy_row_count_comes_from_the_header(tmp_path: Path, n_rows: int) -> None:
    np.save(tmp_path / "e.npy", np.zeros((n_rows, 3), dtype=np.float32))
    resolved = resolve_dataset(str(tmp_path / "e.npy"), options={"max_samples": 10})
    assert resolved.n_total == n_rows and resolved.n_samples == min(n_rows, 10)
    assert resolved.content_fingerprint == file_fingerprint(tmp_path / "e.npy")
