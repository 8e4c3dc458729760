"""Image samples: listing image collections, and decoding one sample the standard way.

The extractors' DataLoader workers receive a sequence of :class:`ImageSample` (picklable, indexable);
each worker reads and decodes sample ``i`` itself, so the parent never holds every image's bytes.
:func:`decode_sample` never raises for bad data: it returns ``Decoded(None, reason)``; workers record
that in a :class:`~auditor.datasets.skips.SkipReport`, the parent merges the workers' reports and
calls ``enforce(max_bad_fraction, ...)``.

Decoding is Pillow's full decode then ``convert("RGB")``, what torchvision's ``ImageFolder`` loader,
pytorch-fid and clean-fid do: palette and grey images are expanded and alpha is dropped (not composited
onto a background). ``Image.draft`` is deliberately not used for JPEGs: it decodes at a reduced DCT
scale, which is faster but changes pixels relative to the reference implementations.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from auditor.datasets.sources import Member, MemberTooLargeError, SampleStore
from auditor.errors import DatasetFormatError

IMAGE_EXTENSIONS = frozenset({"png", "jpg", "jpeg", "webp"})
# WebDataset samples with several images use the first extension found in this order.
_WEBDATASET_IMAGE_ORDER = ("jpg", "jpeg", "png", "webp")
_LABEL_EXTENSION = "cls"
_MAX_LABEL_BYTES = 1024

LabelsMode = Literal["folder"] | None
# A member with the store that reads it: what a collection fingerprint hashes.
StoredMember = tuple[SampleStore, Member]


@dataclass(frozen=True)
class ImageSample:
    """One image: a stable ``key`` (relative path or WebDataset sample key), an optional label, and the
    store + locator to read its bytes from (in whichever process asks)."""

    key: str
    label: str | None
    store: SampleStore
    locator: str

    def read_bytes(self) -> bytes:
        return self.store.read(self.locator)


class Decoded(NamedTuple):
    """``image`` (H, W, 3) uint8 RGB, or None with ``reason`` saying why it was skipped."""

    image: np.ndarray | None
    reason: str | None


def decode_image(data: bytes) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of an encoded image (PNG, JPEG, WebP, ...); raises on bad data."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        rgb = image.convert("RGB")
    # np.array, not asarray: a writable copy, as torch.from_numpy in the loaders wants.
    return np.array(rgb, dtype=np.uint8)


def decode_sample(sample: ImageSample) -> Decoded:
    """Read and decode one sample; failures come back as a reason instead of an exception.

    Reasons: ``too_large`` (over ``max_member_bytes``, or Pillow's decompression-bomb limit),
    ``unreadable`` (the bytes could not be read), ``corrupt_image`` (Pillow could not decode them).
    """
    try:
        data = sample.read_bytes()
    except MemberTooLargeError:
        return Decoded(None, "too_large")
    except (OSError, KeyError, EOFError):
        return Decoded(None, "unreadable")
    try:
        with warnings.catch_warnings():
            # A bomb warning is a too-large image too: turn it into the error Pillow raises at 2x.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Decoded(decode_image(data), None)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return Decoded(None, "too_large")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return Decoded(None, "corrupt_image")


def image_extension(key: str) -> str:
    """Lower-case extension after the last dot of the file name (``""`` when there is none)."""
    name = key.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def is_image_key(key: str) -> bool:
    return image_extension(key) in IMAGE_EXTENSIONS


def folder_label(key: str, container: str) -> str:
    """The class of a folder-per-class layout: the first directory of the key (``cat/001.png`` -> cat)."""
    if "/" not in key:
        raise DatasetFormatError(
            f"{container}: labels='folder' needs every image inside a class folder; {key!r} is not",
            details={"member": key},
        )
    return key.split("/", 1)[0]


def images_from_members(
    members: Sequence[Member], store: SampleStore, labels: LabelsMode
) -> tuple[list[ImageSample], list[StoredMember], int]:
    """Image samples of a folder or archive (sorted by key), the members they use with their store (for
    the fingerprint), and the number of non-image members ignored."""
    images = [member for member in members if is_image_key(member.key)]
    samples = [
        ImageSample(
            key=member.key,
            label=folder_label(member.key, store.name) if labels == "folder" else None,
            store=store,
            locator=member.locator,
        )
        for member in images
    ]
    return samples, [(store, member) for member in images], len(members) - len(images)


def _split_webdataset_key(member_key: str) -> tuple[str, str]:
    """WebDataset's rule: the sample key is the path up to the first dot of the file name."""
    directory, _, name = member_key.rpartition("/")
    stem, _, extension = name.partition(".")
    return (f"{directory}/{stem}" if directory else stem), extension.lower()


def webdataset_samples(
    shards: Sequence[tuple[SampleStore, Sequence[Member]]],
) -> tuple[list[ImageSample], list[StoredMember], int]:
    """Image samples of WebDataset shards, keyed by sample key, labelled by their ``cls`` entries.

    Returns the samples sorted by key, the members they use (image + cls, for the fingerprint) and the
    number of members ignored (samples without an image, other entries). Duplicate keys are an error.
    """
    samples: dict[str, ImageSample] = {}
    used: list[StoredMember] = []
    total = 0
    for store, members in shards:
        total += len(members)
        grouped: dict[str, dict[str, Member]] = {}
        for member in members:
            sample_key, extension = _split_webdataset_key(member.key)
            grouped.setdefault(sample_key, {})[extension] = member
        for sample_key, entries in grouped.items():
            image_ext = next((ext for ext in _WEBDATASET_IMAGE_ORDER if ext in entries), None)
            if image_ext is None:
                continue
            if sample_key in samples:
                raise DatasetFormatError(
                    f"{store.name}: WebDataset sample key {sample_key!r} appears in more than one place",
                    details={"key": sample_key},
                )
            image = entries[image_ext]
            label_member = entries.get(_LABEL_EXTENSION)
            label = _read_label(store, label_member) if label_member else None
            samples[sample_key] = ImageSample(sample_key, label, store, image.locator)
            used.extend((store, member) for member in (image, label_member) if member is not None)
    ordered = [samples[key] for key in sorted(samples)]
    return ordered, used, total - len(used)


def _read_label(store: SampleStore, member: Member) -> str:
    if member.size > _MAX_LABEL_BYTES:
        raise DatasetFormatError(f"{store.name}: label entry {member.key} is {member.size} bytes; too large")
    try:
        return store.read(member.locator).decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise DatasetFormatError(f"{store.name}: label entry {member.key} is not UTF-8 text") from exc


def has_webdataset_labels(members: Sequence[Member]) -> bool:
    """Whether a tar looks like a WebDataset shard rather than a plain archive of images."""
    return any(_split_webdataset_key(member.key)[1] == _LABEL_EXTENSION for member in members)
