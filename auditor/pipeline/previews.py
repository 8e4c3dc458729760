"""Previews: what a person recognises a sample by, for the samples the report's galleries show.

An image becomes a small thumbnail (at most :data:`THUMBNAIL_PX` a side, WebP, or PNG where Pillow
lacks WebP), a text its string (truncated to :data:`TEXT_CHARS`), a table row its cells (``column:
value``, at most :data:`ROW_COLUMNS` columns of :data:`CELL_CHARS` characters), precomputed embeddings
their key; each carries its key and, where the dataset has labels, its label.

They are made by the score stage after scoring, only for the samples the galleries name
(:func:`auditor.pipeline.galleries.gallery_refs`, at most :data:`MAX_PREVIEWS` and
:data:`MAX_PREVIEW_BYTES`), re-read by key from the resolved dataset references (folders, archives,
shards, remote collections, text files, tables), and stored with the audit as one artifact
(:data:`ARTIFACT_NAME`, in ``audit_artifacts``, written with the result by whoever scores: on a worker
straight to SQL, never through the broker).

Privacy: previews are real data. They are served only inside the audit's report (whose access rules
they follow), are not made when the audit spec says ``previews: false`` or the operator sets
``AUDITOR_PREVIEWS=off`` (:func:`switched_off`; a report rendered while the operator's switch is off
shows none of those already stored either), and never enter logs, warnings or error messages: a sample
that cannot be previewed is counted, not described.

Decoding the artifact (:func:`decode_previews`) needs only the standard library: the report of a
recorded audit renders without NumPy, pandas or Pillow.
"""

from __future__ import annotations

import base64
import io
import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from auditor.datasets.images import ImageSample
    from auditor.extractors.base import LoadedDataset
    from auditor.pipeline.result import Artifact

ARTIFACT_NAME = "report/previews.json"
MEDIA_TYPE = "application/json"
FORMAT_VERSION = 1
MAX_PREVIEWS = 256
# Thumbnails of 96 px are 1-6 KB as WebP: 256 of them stay well under this; it bounds odd cases
# (noise images, long texts of many-byte characters).
MAX_PREVIEW_BYTES = 4 << 20
THUMBNAIL_PX = 96
TEXT_CHARS = 280
ROW_COLUMNS = 16
CELL_CHARS = 40
WEBP_QUALITY = 80
ELLIPSIS = "…"

OPERATOR_OFF = "switched off by the operator (AUDITOR_PREVIEWS=off)"
SPEC_OFF = "switched off for this audit (previews: false)"

Preview = dict[str, Any]
# side -> str(row index) -> preview (string keys: the artifact is JSON).
Previews = dict[str, dict[str, Preview]]


def switched_off(spec_previews: bool, operator_previews: bool) -> str | None:
    """Why no previews are made for an audit, or None when they are."""
    if not operator_previews:
        return OPERATOR_OFF
    if not spec_previews:
        return SPEC_OFF
    return None


@dataclass
class PreviewSet:
    """The previews made, and how many of the samples asked for could not be previewed."""

    items: Previews = field(default_factory=dict)
    failed: int = 0
    capped: int = 0  # asked for beyond MAX_PREVIEWS / MAX_PREVIEW_BYTES
    key_only: int = 0  # unlabelled embeddings: nothing to show beyond the key the galleries have

    @property
    def count(self) -> int:
        return sum(len(side) for side in self.items.values())


def _clip(text: str, limit: int) -> tuple[str, bool]:
    return (text, False) if len(text) <= limit else (text[: limit - 1] + ELLIPSIS, True)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def thumbnail(data: bytes) -> Preview:
    """An encoded image (PNG, JPEG, WebP, ...) as a thumbnail preview; raises on data Pillow cannot
    read (the caller counts it)."""
    from PIL import Image, ImageOps, features

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as image:
            # A reduced JPEG decode is fine here: a preview is for eyes, not for the metrics.
            image.draft(None, (THUMBNAIL_PX * 2, THUMBNAIL_PX * 2))
            image.load()
            oriented = ImageOps.exif_transpose(image)
    has_alpha = oriented.mode in ("RGBA", "LA", "PA") or "transparency" in oriented.info
    small = oriented.convert("RGBA" if has_alpha else "RGB")
    small.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if features.check("webp"):
        small.save(buffer, format="WEBP", quality=WEBP_QUALITY, method=4)
        media_type = "image/webp"
    else:
        small.save(buffer, format="PNG", optimize=True)
        media_type = "image/png"
    return {
        "kind": "image",
        "media_type": media_type,
        "data": base64.b64encode(buffer.getvalue()).decode("ascii"),
        "width": small.width,
        "height": small.height,
    }


def text_preview(text: str) -> Preview:
    clipped, truncated = _clip(text, TEXT_CHARS)
    return {"kind": "text", "text": clipped, "truncated": truncated, "chars": len(text)}


def row_preview(columns: Sequence[str], values: Sequence[Any]) -> Preview:
    cells = [
        [_clip(str(c), CELL_CHARS)[0], _clip(_cell(v), CELL_CHARS)[0]]
        for c, v in zip(columns, values, strict=True)
    ]
    return {"kind": "row", "cells": cells[:ROW_COLUMNS], "more_columns": max(0, len(cells) - ROW_COLUMNS)}


class _SideReader:
    """Previews of one side's rows, looked up by the rows' keys in the resolved dataset."""

    def __init__(self, dataset: LoadedDataset, keys: Sequence[str | None] | None, frame: pd.DataFrame | None):
        self.keys = keys
        self.frame = frame
        resolved = dataset.resolved
        self.modality = resolved.modality if resolved is not None else None
        self.images: dict[str, ImageSample] = {}
        self.texts: dict[str, str] = {}
        self.labels: dict[str, str | None] = {}
        if resolved is None:
            return
        if self.modality == "image":
            self.images = {sample.key: sample for sample in resolved.image_samples()}
        elif self.modality == "text":
            self.texts = dict(zip(resolved.sample_keys(), resolved.texts(), strict=True))
        labels = resolved.labels()
        if labels is not None:
            sample_keys = resolved.sample_keys()
            if len(sample_keys) == len(labels):
                self.labels = dict(zip(sample_keys, labels, strict=True))

    @property
    def useful(self) -> bool:
        """Whether a preview shows more than the key (unlabelled embeddings have nothing more)."""
        return self.modality in ("image", "text") or self.frame is not None or bool(self.labels)

    def key(self, index: int) -> str | None:
        return self.keys[index] if self.keys is not None and index < len(self.keys) else None

    def preview(self, index: int) -> Preview | None:
        """The row's preview; None when the row cannot be named or read (counted by the caller)."""
        key = self.key(index)
        preview: Preview
        if self.modality == "image":
            sample = self.images.get(key) if key is not None else None
            if sample is None:
                return None
            preview = thumbnail(sample.read_bytes())
        elif self.modality == "text":
            text = self.texts.get(key) if key is not None else None
            if text is None:
                return None
            preview = text_preview(text)
        elif self.modality == "table" and self.frame is not None:
            if not 0 <= index < len(self.frame):
                return None
            row = self.frame.iloc[index]
            preview = row_preview([str(c) for c in self.frame.columns], row.tolist())
        else:
            preview = {"kind": "key"}
        preview["key"] = key
        preview["label"] = self.labels.get(key) if key is not None else None
        return preview


def make_previews(
    loaded: Mapping[str, LoadedDataset],
    refs: Iterable[tuple[str, int]],
    keys: Mapping[str, Sequence[str | None] | None],
    *,
    frames: Mapping[str, pd.DataFrame] | None = None,
    max_previews: int = MAX_PREVIEWS,
    max_bytes: int = MAX_PREVIEW_BYTES,
) -> PreviewSet:
    """The previews of ``refs`` (``(side, row)``, duplicates ignored) in order, until either bound.

    ``keys``: each side's row keys (:func:`auditor.pipeline.stages.sample_keys`); ``frames``: the table
    sides as read for the audit. A sample whose bytes cannot be read or decoded is counted in
    ``failed`` and has no preview.
    """
    frames = frames or {}
    readers: dict[str, _SideReader] = {}
    out = PreviewSet()
    size = 0
    seen: set[tuple[str, int]] = set()
    for side, index in refs:
        if (side, index) in seen or side not in loaded:
            continue
        seen.add((side, index))
        if out.count >= max_previews or size >= max_bytes:
            out.capped += 1
            continue
        reader = readers.get(side)
        if reader is None:
            reader = readers[side] = _SideReader(loaded[side], keys.get(side), frames.get(side))
        if not reader.useful:
            out.key_only += 1
            continue
        try:
            preview = reader.preview(index)
        except Exception:  # what one sample's bytes do must not fail the audit, nor be described
            preview = None
        if preview is None:
            out.failed += 1
            continue
        encoded = len(json.dumps(preview, ensure_ascii=False).encode())
        if size + encoded > max_bytes:
            out.capped += 1
            size = max_bytes
            continue
        size += encoded
        out.items.setdefault(side, {})[str(index)] = preview
    return out


def encode_previews(previews: PreviewSet) -> Artifact:
    from auditor.pipeline.result import Artifact

    document = {"version": FORMAT_VERSION, "previews": previews.items}
    content = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    return Artifact(ARTIFACT_NAME, MEDIA_TYPE, content)


def decode_previews(content: bytes) -> Previews:
    """The stored previews (side -> row -> preview); empty for a version this code does not read."""
    document = json.loads(content)
    if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
        return {}
    previews = document.get("previews")
    return previews if isinstance(previews, dict) else {}


__all__ = [
    "ARTIFACT_NAME",
    "MAX_PREVIEWS",
    "MAX_PREVIEW_BYTES",
    "THUMBNAIL_PX",
    "PreviewSet",
    "Previews",
    "decode_previews",
    "encode_previews",
    "make_previews",
    "row_preview",
    "switched_off",
    "text_preview",
    "thumbnail",
]
