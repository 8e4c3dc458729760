"""Request and response bodies, named by role (``AuditCreate``, ``AuditPublic``, ``AuditsPage``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from auditor.pipeline.spec import AuditSpec


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable error code, e.g. dataset_not_found.")
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    """The one error shape of every non-2xx answer."""

    error: ErrorDetail


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class ProjectPublic(BaseModel):
    name: str
    created_at: datetime


class AuditCreate(AuditSpec):
    """An audit job: what to compare, how, the gate, and where it sits in a lineage.

    The pipeline's :class:`AuditSpec`, plus a stored policy by name (resolved to its body at submit, so
    the recorded spec holds the exact rules) and a bound on tags.
    """

    policy: dict[str, Any] | None = Field(None, description="An inline gate policy (same shape as the YAML).")
    policy_name: str | None = Field(None, description="A stored policy of the project, by name.")
    policy_version: int | None = Field(None, ge=1, description="With policy_name; default: the latest.")
    tags: list[str] = Field(default_factory=list, max_length=50)


class AuditPublic(BaseModel):
    id: str
    project: str
    state: str
    extractor: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None
    heartbeat_at: datetime | None
    attempts: int
    cancel_requested: bool
    progress: dict[str, Any]
    parent_audit_id: str | None
    generation: int | None
    tags: list[str]
    passed: bool | None
    error: ErrorDetail | None
    result: dict[str, Any] | None = Field(None, description="The result document, once succeeded.")
    events: list[dict[str, Any]] = Field(default_factory=list)


class AuditsPage(BaseModel):
    items: list[AuditPublic]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page; null at the end.")


class TrendPointPublic(BaseModel):
    audit_id: str
    created_at: datetime
    generation: int | None
    value: float | None
    ci_low: float | None
    ci_high: float | None
    baseline: float | None


class TrendSeries(BaseModel):
    """One metric's series under one protocol (values under different protocols never mix)."""

    protocol_fingerprint: str | None
    points: list[TrendPointPublic]


class TrendsPublic(BaseModel):
    project: str
    metric: str
    series: list[TrendSeries]


class PolicyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    body: dict[str, Any] = Field(description="The policy (same shape as the YAML file).")


class PolicyPublic(BaseModel):
    project: str
    name: str
    version: int
    body: dict[str, Any]
    created_at: datetime


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    project: str | None = Field(None, description="Scope; omit (admin only) for another admin key.")


class KeyCreated(BaseModel):
    key: str = Field(description="The secret: shown once, never again.")
    prefix: str
    is_admin: bool
    project: str | None
