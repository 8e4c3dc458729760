"""Arrays for the HTML report's plots: a light module (no torch), so that renderers need not load the
pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class ReportData:
    """Arrays for the HTML report's plots (not part of the stable JSON document)."""

    projection_real: list[list[float]] = field(default_factory=list)
    projection_synthetic: list[list[float]] = field(default_factory=list)
    mode_real_share: list[float] = field(default_factory=list)
    mode_synthetic_share: list[float] = field(default_factory=list)
    spectrum_real: list[float] = field(default_factory=list)
    spectrum_synthetic: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict for storage, sharing the lists (``dataclasses.asdict`` would deep-copy
        thousands of point pairs for nothing)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
