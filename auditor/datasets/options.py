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

``max_member_bytes`` and ``max_samples`` have an operator maximum (:class:`DatasetLimits`, from the
settings ``AUDITOR_MAX_MEMBER_BYTES`` and ``AUDITOR_MAX_SAMPLES``): a caller may ask for less, never for
more (a :class:`~auditor.errors.LimitExceededError`, ``limit_exceeded``), and a caller who asks nothing
gets the maximum (for ``max_samples``: a seeded subset of that size, when the operator set one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from auditor.datasets.netguard import HostPolicy
from auditor.datasets.skips import DEFAULT_MAX_BAD_FRACTION
from auditor.datasets.sources import (
    DEFAULT_MAX_ARCHIVE_BYTES,
    DEFAULT_MAX_DOWNLOAD_BYTES,
    DEFAULT_MAX_MEMBER_BYTES,
)
from auditor.errors import BadInputError, LimitExceededError, describe_validation_error

if TYPE_CHECKING:
    from auditor.config import Settings

Modality = Literal["image", "text", "embeddings", "table"]


class DatasetOptionError(BadInputError):
    code = "invalid_dataset_option"


class DatasetOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    max_samples: int | None = Field(default=None, ge=1)
    seed: int = Field(default=0, ge=0, le=2**53 - 1)  # exact in JSON; a valid generator seed
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


@dataclass(frozen=True)
class DatasetLimits:
    """What the operator allows (settings), whatever the dataset options say.

    ``max_member_bytes`` and ``max_samples`` are ceilings for the options of the same name;
    ``max_archive_bytes`` caps an archive's decompressed size, ``max_download_bytes`` a remote file, and
    ``remote_hosts`` lists the internal hosts and networks ``http(s)`` datasets may come from. The
    defaults are the settings' defaults, so a direct call is as strict as an unconfigured service.
    """

    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES
    max_samples: int | None = None
    max_archive_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES
    max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES
    remote_hosts: HostPolicy = field(default_factory=HostPolicy)

    @classmethod
    def from_settings(cls, settings: Settings) -> DatasetLimits:
        return cls(
            max_member_bytes=settings.max_member_bytes,
            max_samples=settings.max_samples,
            max_archive_bytes=settings.max_archive_bytes,
            max_download_bytes=settings.max_download_bytes,
            remote_hosts=HostPolicy.parse(settings.remote_allow_host_list()),
        )

    def apply(self, options: DatasetOptions) -> DatasetOptions:
        """``options`` within these ceilings: an option the caller left out takes the ceiling; one above
        it is a :class:`~auditor.errors.LimitExceededError` (refused, never silently clamped)."""
        update: dict[str, int] = {}
        for name, ceiling, setting in (
            ("max_member_bytes", self.max_member_bytes, "AUDITOR_MAX_MEMBER_BYTES"),
            ("max_samples", self.max_samples, "AUDITOR_MAX_SAMPLES"),
        ):
            if ceiling is None:
                continue
            asked = getattr(options, name)
            if name not in options.model_fields_set or asked is None:
                update[name] = ceiling
            elif asked > ceiling:
                raise LimitExceededError(
                    f"dataset option {name}={asked} is above this deployment's maximum {ceiling} "
                    f"({setting}); ask for at most {ceiling}, or ask the operator to raise {setting}",
                    details={"option": name, "value": asked, "maximum": ceiling, "setting": setting},
                )
        return options.model_copy(update=update) if update else options
