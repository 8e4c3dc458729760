"""The dataset options this package reads from ``DatasetRef.options`` (other keys pass through untouched:
the readers use ``key`` and ``column``).

======================  =========  ==========================================================================
option                  default    meaning
======================  =========  ==========================================================================
``max_samples``         None       keep at most this many samples, a seeded choice (see ``sampling``)
``seed``                0          seed of that choice: the same samples on every machine
``labels``              None       ``"folder"``: an image's label is its first directory (folder per class)
``label_field``         None       JSONL field / table column holding a label, kept aligned with samples
``text_field``          ``text``   JSONL field holding the text
``max_bad_fraction``    0.05       skipped (corrupt, empty, non-UTF-8) samples allowed before failing
``max_member_bytes``    64 MiB     largest image file / archive member read (bounds zip bombs)
``modality``            None       ``image`` | ``text`` | ``embeddings`` | ``table``, overriding detection
======================  =========  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from auditor.datasets.skips import DEFAULT_MAX_BAD_FRACTION
from auditor.datasets.sources import DEFAULT_MAX_MEMBER_BYTES
from auditor.errors import BadInputError, describe_validation_error

Modality = Literal["image", "text", "embeddings", "table"]


class DatasetOptionError(BadInputError):
    code = "invalid_dataset_option"


class DatasetOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    max_samples: int | None = Field(default=None, ge=1)
    seed: int = 0
    labels: Literal["folder"] | None = None
    label_field: str | None = Field(default=None, min_length=1)
    text_field: str = Field(default="text", min_length=1)
    max_bad_fraction: float = Field(default=DEFAULT_MAX_BAD_FRACTION, ge=0.0, le=1.0)
    max_member_bytes: int = Field(default=DEFAULT_MAX_MEMBER_BYTES, ge=1)
    modality: Modality | None = None

    @classmethod
    def parse(cls, options: Mapping[str, Any] | None) -> DatasetOptions:
        """Validated options; a :class:`DatasetOptionError` names each bad one and why."""
        try:
            return cls.model_validate(dict(options or {}))
        except ValidationError as exc:
            raise DatasetOptionError(
                f"invalid dataset options: {describe_validation_error(exc, root='options')}",
                details={"options": {k: repr(v) for k, v in (options or {}).items()}},
            ) from exc
