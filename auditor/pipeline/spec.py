"""What an audit is asked to do: plain, serialisable, validated (the API and the workers pass it as JSON)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from auditor.pipeline.evaluate import MetricParams


class DatasetRef(BaseModel):
    """A dataset reference: a path/URI, plus options (e.g. ``column`` for parquet embeddings)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    uri: str = Field(min_length=1)
    format: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class AuditSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    real: DatasetRef
    synthetic: DatasetRef
    holdout: DatasetRef | None = None
    extractor: str = "precomputed"
    extractor_options: dict[str, Any] = Field(default_factory=dict)
    params: MetricParams = Field(default_factory=MetricParams)
    device: str = Field("auto", pattern="^(auto|cpu|cuda(:[0-9]+)?)$")
    policy: dict[str, Any] | None = None
    project: str = Field("default", min_length=1, max_length=200)
    parent_audit_id: str | None = None
    generation: int | None = Field(None, ge=0)
    tags: list[str] = Field(default_factory=list)
    previews: bool = Field(
        True,
        description="Store previews of the samples the report's galleries show (thumbnails, texts, table "
        "rows: real data, kept with the audit and shown only in its report); false: none.",
    )
    baselines: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="The policy's history baselines (parent, last_passed, audit:<id>) as resolved when "
        "the audit was created (auditor.gates.baselines); set by the service, never by a caller.",
    )
