"""The extractor an audit uses when the caller names none (``auditor audit`` without ``--extractor``,
``auditor.audit(...)`` without ``extractor=``): the one the data's modality calls for.

=============  ================  ====================================================================
modality       extractor         formats
=============  ================  ====================================================================
embeddings     ``precomputed``   ``.npy``, ``.npz``, ``.pt``, parquet with a list column (in Python:
                                 numpy arrays, torch tensors)
table          ``tabular``       ``.csv``, parquet without one (in Python: pandas DataFrames)
text           ``text-minilm``   ``.txt``, ``.jsonl`` (in Python: lists of strings)
image          none              folders, zip, tar, WebDataset: :class:`ExtractorRequiredError`
                                 listing the image extractors, since none of them is neutral (FID
                                 comparability wants ``inception-v3-fid``, ranking ``dinov2-vitb14``)
=============  ================  ====================================================================

Each side is told by :func:`~auditor.datasets.refs.peek_modality`: from its name and options (and a
local parquet file's schema), never by reading or downloading its samples. Sides that cannot be told
that way (a remote parquet file, a path that is not there) do not vote; when no side can be told, the
audit runs with ``precomputed`` and reports why the data cannot be read, as it did before inference.
The inferred name is written into the spec, so the result document and history record it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from auditor.datasets.refs import WrongModalityError, peek_modality
from auditor.errors import BadInputError, ExtractorRequiredError
from auditor.extractors import EXTRACTORS, RECOMMENDED_IMAGE_EXTRACTOR
from auditor.pipeline.spec import DatasetRef

DEFAULT_EXTRACTORS: dict[str, str] = {
    "embeddings": "precomputed",
    "table": "tabular",
    "text": "text-minilm",
}
FALLBACK_EXTRACTOR = "precomputed"


def image_extractors() -> list[str]:
    """The registry's image extractors, the recommended one first."""
    names = sorted(
        name for name, factory in EXTRACTORS.items() if getattr(factory, "modality", None) == "image"
    )
    return sorted(names, key=lambda name: name != RECOMMENDED_IMAGE_EXTRACTOR)


def infer_extractor(sides: Mapping[str, DatasetRef], data_roots: Sequence[Path] | None = None) -> str:
    """The extractor for ``sides`` (``{"real": ref, "synthetic": ref, ...}``), told from their modality.

    Raises :class:`~auditor.datasets.refs.WrongModalityError` when the sides hold different kinds of
    data, and :class:`~auditor.errors.ExtractorRequiredError` for images.
    """
    told: dict[str, tuple[str, str]] = {}
    for side, ref in sides.items():
        try:
            peeked = peek_modality(ref.uri, format=ref.format, options=ref.options, data_roots=data_roots)
        except BadInputError:
            # The pipeline resolves this reference next and reports the same problem in full, with the
            # audit recorded as failed; inference just does not count this side.
            continue
        if peeked is not None:
            told[side] = peeked
    modalities = {modality for _, modality in told.values()}
    if len(modalities) > 1:
        kinds = ", ".join(f"{side} is {modality} ({fmt})" for side, (fmt, modality) in told.items())
        raise WrongModalityError(
            f"the datasets hold different kinds of data: {kinds}; every side must be the same kind",
            details={"modalities": {side: modality for side, (_, modality) in told.items()}},
        )
    if not modalities:
        return FALLBACK_EXTRACTOR
    modality = modalities.pop()
    if modality in DEFAULT_EXTRACTORS:
        return DEFAULT_EXTRACTORS[modality]
    candidates = image_extractors()
    side, (fmt, _) = next(iter(told.items()))
    raise ExtractorRequiredError(
        f"the {side} dataset {sides[side].uri!r} holds images ({fmt}), and images need the extractor "
        f"named (--extractor, or extractor= in Python): {candidates[0]} (recommended), "
        f"{', '.join(candidates[1:])}; inception-v3-fid for FID comparable with published numbers",
        details={"modality": modality, "extractors": candidates, "recommended": candidates[0]},
    )


__all__ = ["DEFAULT_EXTRACTORS", "image_extractors", "infer_extractor"]
