"""Archives are read within the operator's caps: decompressed size per archive (``max_archive_bytes``),
bytes per member (``max_member_bytes``, which callers may lower, never raise), in the listing, the
fingerprint and the reads alike; and ``max_samples`` has an operator maximum too."""

from __future__ import annotations

import io
import shutil
import struct
import tarfile
import time
import zipfile
from pathlib import Path

import fsspec
import pytest
from PIL import Image

from auditor.datasets.images import decode_sample
from auditor.datasets.options import DatasetLimits
from auditor.datasets.refs import TOO_LARGE_DIGEST, resolve_dataset
from auditor.datasets.sources import MemberTooLargeError, RemoteFolderStore, ZipStore, list_tar
from auditor.datasets.uri import MAX_BRACE_EXPANSION, expand_braces
from auditor.errors import ArchiveTooLargeError, DatasetFormatError, LimitExceededError

MiB = 1 << 20
BOMB_MEMBER = 256 * MiB  # zeros: the .tar.gz is ~260 KB


class Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


def png(value: int = 7) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8), value).save(buffer, format="PNG")
    return buffer.getvalue()


def add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small .tar.gz: two images, then ``big.png``, 256 MiB of zeros once decompressed."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=6) as archive:
        add(archive, "a.png", png(1))
        add(archive, "b.png", png(2))
        info = tarfile.TarInfo("big.png")
        info.size = BOMB_MEMBER
        archive.addfile(info, io.BufferedReader(Zeros(BOMB_MEMBER), MiB))
    assert path.stat().st_size < 2 * MiB
    return path


def test_a_tar_gz_bomb_is_refused_at_its_header_in_seconds(bomb: Path) -> None:
    start = time.perf_counter()
    with pytest.raises(ArchiveTooLargeError, match=r"bomb\.tar\.gz.*max_archive_bytes=16777216") as caught:
        resolve_dataset(str(bomb), limits=DatasetLimits(max_archive_bytes=16 * MiB))
    assert time.perf_counter() - start < 3.0, "refused at the header, not after inflating 256 MiB"
    assert (caught.value.code, caught.value.http_status, caught.value.exit_code) == (
        "archive_too_large",
        422,
        2,
    )
    with pytest.raises(ArchiveTooLargeError):  # the read path lists the same way
        list_tar(bomb, max_archive_bytes=16 * MiB)


def test_a_webdataset_shard_over_the_cap_refuses_the_dataset(bomb: Path, tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "shard-000.tar", "w") as archive:
        add(archive, "s0.png", png(3))
        add(archive, "s0.cls", b"3")
    shutil.copy(bomb, tmp_path / "shard-001.tar")  # a gzip inside a .tar name: told by its magic bytes
    pattern = str(tmp_path / "shard-{000..001}.tar")
    with pytest.raises(ArchiveTooLargeError, match="shard-001"):
        resolve_dataset(pattern, limits=DatasetLimits(max_archive_bytes=16 * MiB))


def test_a_member_over_max_member_bytes_is_neither_hashed_nor_read(bomb: Path) -> None:
    """Under the archive cap, a member over ``max_member_bytes`` costs the listing (inflating past it)
    and nothing else: the fingerprint does not hash it and reading it stops at its header."""
    resolved = resolve_dataset(str(bomb), options={"max_member_bytes": MiB})
    samples = {sample.key: sample for sample in resolved.image_samples()}
    assert set(samples) == {"a.png", "b.png", "big.png"}
    big = samples["big.png"]
    start = time.perf_counter()
    with pytest.raises(MemberTooLargeError, match="max_member_bytes=1048576"):
        big.store.sha256(big.locator)
    with pytest.raises(MemberTooLargeError):
        big.store.read(big.locator)
    assert time.perf_counter() - start < 1.0
    assert decode_sample(big).reason == "too_large" and decode_sample(samples["a.png"]).reason is None


def test_an_oversized_member_enters_the_fingerprint_by_its_size_only(tmp_path: Path) -> None:
    """It is skipped whenever it is read, so its bytes never change a result: two archives that differ
    only inside such a member share a fingerprint; anything else still changes it."""

    def archive(name: str, filler: bytes) -> Path:
        path = tmp_path / name
        with tarfile.open(path, "w") as handle:
            add(handle, "a.png", png(1))
            add(handle, "huge.png", filler * (2 * MiB))
        return path

    options = {"max_member_bytes": MiB}
    zeros = resolve_dataset(str(archive("zeros.tar", b"\0")), options=options)
    ones = resolve_dataset(str(archive("ones.tar", b"\1")), options=options)
    assert zeros.content_fingerprint == ones.content_fingerprint
    assert TOO_LARGE_DIGEST == "too-large"
    read_whole = resolve_dataset(str(tmp_path / "zeros.tar"), options={"max_member_bytes": 4 * MiB})
    assert read_whole.content_fingerprint != zeros.content_fingerprint


def test_a_pax_header_larger_than_a_member_may_be_is_refused(tmp_path: Path) -> None:
    """``tarfile`` reads extended headers whole while listing: one of 2 MiB (in a 10 KB .tar.gz) is
    refused instead of being read into memory."""
    path = tmp_path / "pax.tar.gz"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo("a.png")
        data = png()
        info.size = len(data)
        info.pax_headers = {"comment": "x" * (2 * MiB)}
        archive.addfile(info, io.BytesIO(data))
    with pytest.raises(ArchiveTooLargeError, match="tar header entry"):
        resolve_dataset(str(path), options={"max_member_bytes": MiB})


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_zip_bombs_are_refused_from_the_central_directory(tmp_path: Path) -> None:
    many = _zip(tmp_path / "many.zip", {f"{i:03d}.png": bytes(MiB) for i in range(40)})
    big = _zip(tmp_path / "big.zip", {"ok.png": png(), "big.png": bytes(64 * MiB)})
    assert many.stat().st_size < 200_000 and big.stat().st_size < 200_000
    limits = DatasetLimits(max_archive_bytes=16 * MiB)
    for path in (many, big):
        start = time.perf_counter()
        with pytest.raises(ArchiveTooLargeError, match=path.name):
            resolve_dataset(str(path), limits=limits)
        assert time.perf_counter() - start < 1.0, "nothing was decompressed"


def test_a_zip_member_over_the_cap_is_not_hashed(tmp_path: Path) -> None:
    path = _zip(tmp_path / "d.zip", {"ok.png": png(), "big.png": bytes(8 * MiB)})
    store = ZipStore(path, max_member_bytes=MiB)
    with pytest.raises(MemberTooLargeError):
        store.sha256("big.png")
    assert len(store.sha256("ok.png")) == 64
    resolved = resolve_dataset(str(path), options={"max_member_bytes": MiB})
    assert resolved.n_total == 2


def test_a_zip_member_that_lies_about_its_size_is_a_format_error(tmp_path: Path) -> None:
    """Declared 1000 bytes, holds 2 MiB: ``zipfile`` stops at the declared size and the CRC fails;
    that is a clear error (fingerprint) or an unreadable sample (reads), never a traceback."""
    path = _zip(tmp_path / "liar.zip", {"liar.png": bytes(2 * MiB)})
    data = bytearray(path.read_bytes())
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, 22, 1000)  # the local header's uncompressed size
    struct.pack_into("<I", data, central + 24, 1000)  # the central directory's
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetFormatError, match=r"liar\.png is corrupt"):
        resolve_dataset(str(path))
    store = ZipStore(path)
    with pytest.raises(OSError, match="corrupt"):
        store.read("liar.png")


def test_remote_folder_members_are_hashed_within_the_cap(tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    root = f"memory://{tmp_path.name}-capped"
    fs.pipe(f"{root}/a.png", png())
    fs.pipe(f"{root}/big.png", bytes(2 * MiB))
    try:
        resolved = resolve_dataset(root, allowed_schemes={"memory"}, options={"max_member_bytes": MiB})
        assert resolved.n_total == 2
        store = RemoteFolderStore(fs, root, max_member_bytes=MiB)
        with pytest.raises(MemberTooLargeError):
            store.sha256(f"{root}/big.png")
    finally:
        fs.rm(root, recursive=True)


# -- operator maxima of the dataset options ------------------------------------------------------------------


def test_max_member_bytes_may_be_lowered_never_raised(tmp_path: Path) -> None:
    path = _zip(tmp_path / "d.zip", {"ok.png": png()})
    limits = DatasetLimits(max_member_bytes=MiB)
    with pytest.raises(
        LimitExceededError, match=r"max_member_bytes=1073741824 is above .* maximum 1048576"
    ) as caught:
        resolve_dataset(str(path), options={"max_member_bytes": 1 << 30}, limits=limits)
    assert (caught.value.code, caught.value.http_status, caught.value.exit_code) == ("limit_exceeded", 422, 2)
    assert caught.value.details["setting"] == "AUDITOR_MAX_MEMBER_BYTES"
    assert resolve_dataset(str(path), limits=limits).options.max_member_bytes == MiB, (
        "the default is the maximum"
    )
    lowered = resolve_dataset(str(path), options={"max_member_bytes": 4096}, limits=limits)
    assert lowered.options.max_member_bytes == 4096
    with pytest.raises(LimitExceededError):  # the default operator maximum is the old default, 64 MiB
        resolve_dataset(str(path), options={"max_member_bytes": 64 * MiB + 1})


def test_max_samples_has_an_operator_maximum(tmp_path: Path) -> None:
    (tmp_path / "corpus.txt").write_text("\n".join(f"line {i}" for i in range(50)) + "\n", encoding="utf-8")
    corpus = str(tmp_path / "corpus.txt")
    limits = DatasetLimits(max_samples=20)
    with pytest.raises(LimitExceededError, match="AUDITOR_MAX_SAMPLES"):
        resolve_dataset(corpus, options={"max_samples": 21}, limits=limits)
    capped = resolve_dataset(corpus, limits=limits)
    assert (capped.n_total, capped.n_samples) == (50, 20)
    assert capped.fingerprint == resolve_dataset(corpus, options={"max_samples": 20}).fingerprint
    assert resolve_dataset(corpus, options={"max_samples": 5}, limits=limits).n_samples == 5
    assert resolve_dataset(corpus).n_samples == 50, "no maximum unless the operator sets one"


def test_brace_patterns_are_bounded_before_expansion() -> None:
    start = time.perf_counter()
    with pytest.raises(DatasetFormatError, match=f"more than {MAX_BRACE_EXPANSION}"):
        expand_braces("shard-{0..999999999}.tar")
    with pytest.raises(DatasetFormatError):
        expand_braces("s-{0..999}-{0..999}.tar")
    assert time.perf_counter() - start < 1.0
    assert len(expand_braces("s-{0..99}-{a,b}.tar")) == 200
