"""Arrays for the HTML report's plots: a light module (no torch), so that renderers need not load the
pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

# For the latent map (auditor.pipeline.latent_map): how many nearest map neighbours
# projection_neighbour_share counts, and the fewest real samples t-SNE is fitted on (PCA below).
PROJECTION_NEIGHBOURS = 10
PROJECTION_TSNE_MIN_POINTS = 50


@dataclass
class ReportData:
    """Arrays for the HTML report's plots (not part of the stable JSON document)."""

    projection_real: list[list[float]] = field(default_factory=list)
    projection_synthetic: list[list[float]] = field(default_factory=list)
    # The latent map (auditor.pipeline.latent_map) around those points: how it was made ("tsne" or
    # "pca"; "" in reports stored before it was recorded, which are PCA), each point's input row
    # (the samples table's "index") and mode (empty: no mode metric), the marked points as positions
    # in the point lists ("uncovered": real; "off_manifold", "copy": synthetic; empty: no kNN metric),
    # and the mean share of real points among a synthetic point's nearest map neighbours.
    projection_method: str = ""
    projection_real_index: list[int] = field(default_factory=list)
    projection_synthetic_index: list[int] = field(default_factory=list)
    # Each map point's sample key (filled by the score stage, which knows the datasets; empty where a
    # dataset cannot name its rows): what a page shows a preview of on hover.
    projection_real_key: list[str | None] = field(default_factory=list)
    projection_synthetic_key: list[str | None] = field(default_factory=list)
    projection_real_mode: list[int] = field(default_factory=list)
    projection_synthetic_mode: list[int] = field(default_factory=list)
    projection_marks: dict[str, list[int]] = field(default_factory=dict)
    projection_neighbour_share: float | None = None
    mode_real_share: list[float] = field(default_factory=list)
    mode_synthetic_share: list[float] = field(default_factory=list)
    spectrum_real: list[float] = field(default_factory=list)
    spectrum_synthetic: list[float] = field(default_factory=list)
    # The galleries (auditor.pipeline.galleries) and, for tables, what the synthetic table lost or
    # invented (auditor.pipeline.table_drift): sample references and aggregates, never sample content
    # (the previews are an artifact of their own, auditor.pipeline.previews).
    galleries: dict[str, Any] = field(default_factory=dict)
    table_drift: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict for storage, sharing the lists (``dataclasses.asdict`` would deep-copy
        thousands of point pairs for nothing)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
