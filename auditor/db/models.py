"""Tables: projects, datasets, audits (state, timings, lineage, the result document), metric values and
the files stored with an audit (its per-sample diagnostics as parquet); webhook subscriptions, their
deliveries (the outbox) and every delivery attempt.

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
# The range of the INTEGER columns callers write through the API (audits.generation, policies.version):
# 32-bit on PostgreSQL, so the API bounds those numbers to it (a larger one would be a 500 at INSERT).
SQL_INT_MAX = 2**31 - 1


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
        # An index, not a constraint: SQLite can add it without rebuilding the table; NULLs never collide.
        sa.Index(None, "project_id", "idempotency_key", unique=True),
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
    # Arrays for the HTML report's plots (auditor.pipeline.report_data.ReportData as a dict); not part of
    # the stable document, kept so `auditor show --report` can redraw the plots later.
    report_data: Mapped[dict[str, Any] | None] = mapped_column(StrictJSON(none_as_null=True))
    # --- service state (migration 0002); progress/artifacts are NULL on audits recorded before it ---
    # Per stage: {"load": {"done": 2, "total": 3, "state": "running"}, ...}; what GET /v1/audits/{id} shows.
    progress: Mapped[dict[str, Any] | None] = mapped_column(StrictJSON, default=dict)
    # Where the audit came from (cli | api) and, once a worker holds it, which one (hostname:pid).
    source: Mapped[str] = mapped_column(sa.String(16), default="cli", server_default="cli")
    worker: Mapped[str | None] = mapped_column(sa.String(200))
    # Refreshed by whoever works on the audit; a running audit whose heartbeat is too old is stuck.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # How many times a worker has started this audit (a killed worker's redelivery counts again).
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    cancel_requested: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    # Idempotency-Key of the submit request: a retried POST returns the same audit (unique per project).
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(200))
    # Features of each side in the artifact store once embedded: {"real": {"key", "from_cache"}, ...}.
    artifacts: Mapped[dict[str, Any] | None] = mapped_column(StrictJSON, default=dict)

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


class AuditArtifact(Base):
    """A file stored with an audit (``samples/<side>.parquet``: its per-sample diagnostics).

    Written in the transaction that completes the audit, so a result and its evidence are never out of
    step; a re-scored audit replaces them. In SQL rather than the artifact store: they are small (bounded
    by ``AUDITOR_MAX_ARTIFACT_MB``), belong to one audit, and go with it (ON DELETE CASCADE), backed up
    with the rest of the history. Readers select the metadata first and load ``content`` only when the
    file is needed (:func:`auditor.db.queries.audit_artifact_content`).
    """

    __tablename__ = "audit_artifacts"
    __table_args__ = (sa.UniqueConstraint("audit_id", "name"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    audit_id: Mapped[str] = mapped_column(sa.ForeignKey("audits.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(200))
    media_type: Mapped[str] = mapped_column(sa.String(100))
    sha256: Mapped[str] = mapped_column(sa.String(64))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    content: Mapped[bytes] = mapped_column(sa.LargeBinary, deferred=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    audit: Mapped[Audit] = relationship(lazy="raise")

    def __repr__(self) -> str:
        return f"AuditArtifact(audit_id={self.audit_id!r}, name={self.name!r}, size={self.size!r})"


class AuditEvent(Base):
    """One state transition of one audit (queued -> running -> succeeded, retries, cancellation)."""

    __tablename__ = "audit_events"
    __table_args__ = (sa.Index(None, "audit_id", "id"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    audit_id: Mapped[str] = mapped_column(sa.ForeignKey("audits.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(sa.String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    message: Mapped[str | None] = mapped_column(sa.Text)

    # Lets the unit of work insert an audit and its first event in one flush, in the right order.
    audit: Mapped[Audit] = relationship(lazy="raise")

    def __repr__(self) -> str:
        return f"AuditEvent(audit_id={self.audit_id!r}, state={self.state!r}, at={self.at!r})"


class ApiKey(Base):
    """An API key: the secret is shown once; only its SHA-256 is stored.

    A key is either an admin key (``is_admin``: every project, key management) or scoped to one project.
    SHA-256 without a salt is enough here: the secret is 32 random bytes, not a password, so there is
    nothing to brute-force and lookups stay one indexed equality.
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    # The public part shown in listings ("sda_ab12cd34"), never enough to authenticate.
    prefix: Mapped[str] = mapped_column(sa.String(32), unique=True)
    secret_sha256: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    is_admin: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    project_id: Mapped[int | None] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    project: Mapped[Project | None] = relationship(lazy="raise")

    def __repr__(self) -> str:
        return f"ApiKey(prefix={self.prefix!r}, admin={self.is_admin!r}, project_id={self.project_id!r})"


class PolicyVersion(Base):
    """A named gate policy of a project; every update is a new version, audits reference one version."""

    __tablename__ = "policies"
    __table_args__ = (sa.UniqueConstraint("project_id", "name", "version"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(200))
    version: Mapped[int] = mapped_column(sa.Integer)
    body: Mapped[dict[str, Any]] = mapped_column(StrictJSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"PolicyVersion(name={self.name!r}, version={self.version!r})"


# --- webhooks (migration 0004) ----------------------------------------------------------------------------

WEBHOOK_URL_MAX = 2048
WEBHOOK_SECRET_MAX = 256
DELIVERY_STATES = ("pending", "delivered", "failed")


class Webhook(Base):
    """A project's subscription: audit events POSTed to ``url``, signed with ``secret``.

    The secret is stored as given (not hashed, unlike API keys): signing needs it. It is shown once, at
    creation, and never returned or logged again.
    """

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)  # uuid4 hex
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(sa.String(WEBHOOK_URL_MAX))
    events: Mapped[list[str]] = mapped_column(StrictJSON)
    secret: Mapped[str] = mapped_column(sa.String(WEBHOOK_SECRET_MAX))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:  # never the secret
        return f"Webhook(id={self.id!r}, url={self.url!r}, events={self.events!r})"


class WebhookDelivery(Base):
    """One event for one subscription: the outbox row, written in the transaction that finished the
    audit, and the state of its delivery (at least once; ``id`` is the receiver's idempotency key).

    ``next_attempt_at`` is when a sender may next take it: on a claim it moves to the end of the
    attempt's lease, so a sender killed mid-attempt leaves it to be taken again once the lease is over.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.CheckConstraint(
            "state IN ({})".format(", ".join(f"'{state}'" for state in DELIVERY_STATES)), name="state"
        ),
        # One delivery per (subscription, audit, event): a re-scored audit does not notify twice.
        sa.UniqueConstraint("webhook_id", "audit_id", "event"),
        # What the senders poll: pending rows by due time.
        sa.Index(None, "state", "next_attempt_at"),
        # The deliveries of one subscription, newest first.
        sa.Index(None, "webhook_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)  # uuid4 hex: X-Auditor-Delivery
    webhook_id: Mapped[str] = mapped_column(sa.ForeignKey("webhooks.id", ondelete="CASCADE"))
    audit_id: Mapped[str] = mapped_column(sa.ForeignKey("audits.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(sa.String(32))
    # The body without its absolute links (rendered at each attempt: auditor.webhooks.render_body).
    payload: Mapped[dict[str, Any]] = mapped_column(StrictJSON)
    state: Mapped[str] = mapped_column(sa.String(16), default="pending")
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(sa.Integer)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"WebhookDelivery(id={self.id!r}, event={self.event!r}, state={self.state!r})"


class WebhookAttempt(Base):
    """One attempt of one delivery: written when a sender takes the delivery, completed when it ends
    (an attempt never completed was interrupted: its sender died; the next attempt records that)."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (sa.UniqueConstraint("delivery_id", "number"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    delivery_id: Mapped[str] = mapped_column(sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(sa.Integer)
    sender: Mapped[str] = mapped_column(sa.String(200))  # hostname:pid
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_s: Mapped[float | None] = mapped_column(sa.Float)
    status_code: Mapped[int | None] = mapped_column(sa.Integer)
    # Machine-readable: http_status, timeout, connection_error, host_not_allowed, interrupted, ...
    error_code: Mapped[str | None] = mapped_column(sa.String(64))
    error: Mapped[str | None] = mapped_column(sa.Text)

    def __repr__(self) -> str:
        return f"WebhookAttempt(delivery_id={self.delivery_id!r}, number={self.number!r})"


WAIVER_REASON_MAX = 1000


class Waiver(Base):
    """A gate rule waived: every rule on ``metric`` in the project's audits (``audit_id`` null) or in one
    audit, until ``expires_at``, for ``reason``, by ``created_by`` (the API key's prefix, or ``cli``).

    Rows are never changed but by revocation (``revoked_at``, ``revoked_by``): the table is the waivers'
    history, each row one version, and a verdict records the id of the waiver that waived a rule.
    """

    __tablename__ = "waivers"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)  # uuid4 hex
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    audit_id: Mapped[str | None] = mapped_column(sa.ForeignKey("audits.id", ondelete="CASCADE"), index=True)
    metric: Mapped[str] = mapped_column(sa.String(64))
    reason: Mapped[str] = mapped_column(sa.String(WAIVER_REASON_MAX))
    created_by: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(sa.String(64))

    def __repr__(self) -> str:
        return f"Waiver(id={self.id!r}, metric={self.metric!r}, audit_id={self.audit_id!r})"
