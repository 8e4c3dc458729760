"""Tables: projects, datasets, audits (state, timings, lineage, the result document) and metric values.

Metric values are stored in long form, one row per (audit, metric), so trend queries are plain SQL::

    SELECT a.generation, m.value, m.ci_low, m.ci_high
    FROM metric_values m JOIN audits a ON a.id = m.audit_id
    WHERE a.project_id = :project AND m.metric = 'fid' AND a.state = 'succeeded'
    ORDER BY a.generation;

Choices worth knowing:

* Datasets are recorded when an audit *completes*: their fingerprint, size and format are known only
  after loading. So ``audits.real_dataset_id`` / ``synthetic_dataset_id`` are nullable: a queued, running
  or failed audit has no dataset rows, and its ``spec`` keeps the references it was asked to audit.
* ``metric_values.value`` is nullable: a metric can be NaN (e.g. undefined on degenerate data) and SQLite
  cannot store NaN, so every non-finite value is stored as NULL on both backends. The result document
  keeps ``null`` in the same place (see :class:`auditor.db.base.StrictJSON`).
* Every relationship is ``lazy="raise"``: loading is always explicit (``joinedload`` / ``selectinload`` in
  :mod:`auditor.db.queries`), so a template or API handler cannot trigger hidden N+1 queries.
* Timestamps are timezone-aware UTC (:class:`auditor.db.base.UTCDateTime`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from auditor.db.base import Base, StrictJSON, UTCDateTime, utcnow

AUDIT_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
PROJECT_NAME_MAX = 200  # AuditSpec.project has the same limit.


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(PROJECT_NAME_MAX), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    audits: Mapped[list[Audit]] = relationship(back_populates="project", lazy="raise")

    def __repr__(self) -> str:
        return f"Project(id={self.id!r}, name={self.name!r})"


class Dataset(Base):
    """One dataset as seen by one project: the same file with the same content is one row."""

    __tablename__ = "datasets"
    # Reference is part of the key: the same bytes under two paths are two rows, so a report can say
    # which path was audited; the same path with changed content is a new row too.
    __table_args__ = (sa.UniqueConstraint("project_id", "fingerprint", "reference"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id"))
    reference: Mapped[str] = mapped_column(sa.Text)
    # "sha256:<64 hex>" today (auditor.datasets.fingerprint); room for a longer algorithm tag.
    fingerprint: Mapped[str] = mapped_column(sa.String(128))
    format: Mapped[str] = mapped_column(sa.String(32))
    n_samples: Mapped[int] = mapped_column(sa.Integer)
    dim: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    project: Mapped[Project] = relationship(lazy="raise")

    def __repr__(self) -> str:
        return f"Dataset(id={self.id!r}, reference={self.reference!r}, fingerprint={self.fingerprint!r})"


class Audit(Base):
    __tablename__ = "audits"
    __table_args__ = (
        sa.CheckConstraint(
            "state IN ({})".format(", ".join(f"'{state}'" for state in AUDIT_STATES)), name="state"
        ),
        # history: newest first, optionally per project.
        sa.Index(None, "project_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)  # uuid4 hex
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id"))
    real_dataset_id: Mapped[int | None] = mapped_column(sa.ForeignKey("datasets.id"))
    synthetic_dataset_id: Mapped[int | None] = mapped_column(sa.ForeignKey("datasets.id"))
    holdout_dataset_id: Mapped[int | None] = mapped_column(sa.ForeignKey("datasets.id"))
    state: Mapped[str] = mapped_column(sa.String(16), index=True)
    extractor: Mapped[str] = mapped_column(sa.String(200))
    protocol_fingerprint: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(StrictJSON)
    spec: Mapped[dict[str, Any]] = mapped_column(StrictJSON)
    # SET NULL: deleting an old audit must not delete (or block on) the generations audited after it.
    parent_audit_id: Mapped[str | None] = mapped_column(
        sa.ForeignKey("audits.id", ondelete="SET NULL"), index=True
    )
    generation: Mapped[int | None] = mapped_column(sa.Integer)
    tags: Mapped[list[str]] = mapped_column(StrictJSON, default=list)
    passed: Mapped[bool | None] = mapped_column(sa.Boolean)
    error_code: Mapped[str | None] = mapped_column(sa.String(64))
    error_message: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_s: Mapped[float | None] = mapped_column(sa.Float)
    # none_as_null: "no result yet" is SQL NULL (queryable with IS NULL), not the JSON value null.
    result: Mapped[dict[str, Any] | None] = mapped_column(StrictJSON(none_as_null=True))
    # Arrays for the HTML report's plots (auditor.pipeline.evaluate.ReportData as a dict); not part of
    # the stable document, kept so `auditor show --report` can redraw the plots later.
    report_data: Mapped[dict[str, Any] | None] = mapped_column(StrictJSON(none_as_null=True))

    project: Mapped[Project] = relationship(back_populates="audits", lazy="raise")
    real_dataset: Mapped[Dataset | None] = relationship(foreign_keys=[real_dataset_id], lazy="raise")
    synthetic_dataset: Mapped[Dataset | None] = relationship(
        foreign_keys=[synthetic_dataset_id], lazy="raise"
    )
    holdout_dataset: Mapped[Dataset | None] = relationship(foreign_keys=[holdout_dataset_id], lazy="raise")
    parent: Mapped[Audit | None] = relationship(remote_side=[id], lazy="raise")
    # passive_deletes: the database's ON DELETE CASCADE removes the rows; no load just to delete them.
    metric_values: Mapped[list[MetricValue]] = relationship(
        back_populates="audit",
        lazy="raise",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="MetricValue.metric",
    )

    def __repr__(self) -> str:
        return f"Audit(id={self.id!r}, state={self.state!r}, generation={self.generation!r})"


class MetricValue(Base):
    __tablename__ = "metric_values"
    __table_args__ = (sa.UniqueConstraint("audit_id", "metric"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    audit_id: Mapped[str] = mapped_column(sa.ForeignKey("audits.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(sa.String(64), index=True)
    value: Mapped[float | None] = mapped_column(sa.Float)
    ci_low: Mapped[float | None] = mapped_column(sa.Float)
    ci_high: Mapped[float | None] = mapped_column(sa.Float)
    baseline: Mapped[float | None] = mapped_column(sa.Float)

    audit: Mapped[Audit] = relationship(back_populates="metric_values", lazy="raise")

    def __repr__(self) -> str:
        return f"MetricValue(audit_id={self.audit_id!r}, metric={self.metric!r}, value={self.value!r})"
