"""Every query the auditor runs (the only module with SQL).

Functions take a :class:`~sqlalchemy.orm.Session` and flush, never commit: the caller owns the
transaction (:func:`auditor.db.session.session_scope`). Errors users can cause are
:class:`~auditor.errors.NotFoundError` / :class:`~auditor.errors.BadInputError`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload
from sqlalchemy.orm.interfaces import ORMOption

from auditor.db import waivers as waiver_rows
from auditor.db import webhooks as webhook_outbox
from auditor.db.base import utcnow
from auditor.db.models import (
    PROJECT_NAME_MAX,
    Audit,
    AuditArtifact,
    AuditEvent,
    Dataset,
    MetricValue,
    Project,
)
from auditor.errors import BadInputError, NotFoundError, UnknownNameError
from auditor.gates.waivers import apply_waivers
from auditor.metrics import METRICS

if TYPE_CHECKING:
    from auditor.pipeline.result import Artifact

MIN_PREFIX = 6
AUDIT_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
# A new audit is either waiting for a worker or already being run in-process.
INITIAL_STATES = ("queued", "running")

_T = TypeVar("_T")


@dataclass(frozen=True)
class TrendPoint:
    """One succeeded audit's value of one metric; ``value`` is None where the metric was NaN."""

    audit_id: str
    created_at: datetime
    generation: int | None
    value: float | None
    ci_low: float | None
    ci_high: float | None
    baseline: float | None
    protocol_fingerprint: str | None


@dataclass(frozen=True)
class StoredArtifact:
    """A file stored with an audit, without its content (:func:`audit_artifact_content` reads that)."""

    name: str
    media_type: str
    sha256: str
    size: int
    created_at: datetime


@dataclass(frozen=True)
class MetricRow:
    metric: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    baseline: float | None


# --- projects -------------------------------------------------------------------------------------------


def get_or_create_project(session: Session, name: str) -> Project:
    if not name or len(name) > PROJECT_NAME_MAX:
        raise BadInputError(f"project name must be 1 to {PROJECT_NAME_MAX} characters, got {name!r}")
    return _get_or_create(
        session,
        sa.select(Project).where(Project.name == name),
        lambda: Project(name=name, created_at=utcnow()),
    )


def get_project(session: Session, name: str) -> Project:
    project = session.scalars(sa.select(Project).where(Project.name == name)).one_or_none()
    if project is None:
        raise NotFoundError(f"no project named {name!r}", details={"project": name})
    return project


# --- audits: writing ------------------------------------------------------------------------------------


def create_audit(
    session: Session,
    *,
    audit_id: str,
    project: str,
    spec: dict[str, Any],
    extractor: str,
    parent_audit_id: str | None = None,
    generation: int | None = None,
    tags: list[str] | None = None,
    state: str = "running",
    source: str = "cli",
    idempotency_key: str | None = None,
    fresh_id: bool = False,
    project_id: int | None = None,
) -> Audit:
    """Record a new audit (state ``running``, or ``queued`` for a worker to pick up).

    Lineage: the parent must exist in the same project (:class:`NotFoundError` otherwise, the same
    answer for another project's audit as for an unknown id, so a project key cannot probe other
    projects' ids); without an explicit ``generation`` a child is its parent's generation + 1 (1 when
    the parent has none).
    ``fresh_id``: the caller just generated ``audit_id`` (uuid4), so the existence check is skipped
    (one round trip less on the API's submit path; the primary key still refuses a duplicate).
    ``project_id``: the id of ``project``, known to the caller (the API caches it), so the project is
    not looked up; the foreign key refuses an id that does not exist. The returned audit then has
    ``project_id`` set and ``project`` not loaded.
    """
    if not AUDIT_ID_PATTERN.match(audit_id):
        raise BadInputError(f"audit id must be 32 lowercase hex characters (uuid4 hex), got {audit_id!r}")
    if state not in INITIAL_STATES:
        raise BadInputError(f"a new audit is {' or '.join(INITIAL_STATES)}, not {state!r}")
    if generation is not None and generation < 0:
        raise BadInputError(f"generation must be >= 0, got {generation}")
    if not fresh_id and session.get(Audit, audit_id) is not None:
        raise BadInputError(f"audit {audit_id} already exists", details={"audit_id": audit_id})
    project_row = get_or_create_project(session, project) if project_id is None else None
    if parent_audit_id is not None:
        parent = session.get(Audit, parent_audit_id)
        own_project = project_id if project_row is None else project_row.id
        if parent is None or parent.project_id != own_project:
            raise NotFoundError(
                f"parent audit {parent_audit_id!r} does not exist in project {project!r}",
                details={"parent_audit_id": parent_audit_id, "project": project},
            )
        if generation is None:
            generation = parent.generation + 1 if parent.generation is not None else 1
    now = utcnow()
    audit = Audit(
        id=audit_id,
        **({"project_id": project_id} if project_row is None else {"project": project_row}),
        state=state,
        extractor=extractor,
        spec=spec,
        params=dict(spec.get("params") or {}),
        parent_audit_id=parent_audit_id,
        generation=generation,
        tags=list(tags or []),
        created_at=now,
        started_at=now if state == "running" else None,
        heartbeat_at=now if state == "running" else None,
        attempts=1 if state == "running" else 0,
        source=source,
        idempotency_key=idempotency_key,
        progress={},
        artifacts={},
    )
    session.add(audit)
    # The first event goes in the same flush: one round of INSERTs for a submit.
    session.add(AuditEvent(audit=audit, state=state, at=now))
    session.flush()
    return audit


def complete_audit(
    session: Session,
    audit_id: str,
    document: dict[str, Any],
    report_data: dict[str, Any] | None = None,
    artifacts: Sequence[Artifact] = (),
) -> Audit:
    """Record a finished audit's result document (see :mod:`auditor.pipeline.result`), with the files
    stored beside it (its per-sample diagnostics) and its webhook deliveries in the same transaction.

    Dataset rows are reused when the same reference with the same content was audited before in the
    project; metric values and artifacts are (re)written. Completing twice overwrites, so a retried
    worker cannot leave duplicate metric rows or stale artifacts.
    """
    audit = _audit_for_update(session, audit_id)
    if document.get("audit_id", audit_id) != audit_id:
        raise BadInputError(
            f"result document is for audit {document.get('audit_id')!r}, not {audit_id!r}",
            details={"audit_id": audit_id},
        )
    metrics = _section(document, "metrics")
    verdict = _section(document, "verdict")
    protocol = _section(document, "protocol")
    timings = document.get("timings") or {}

    # No autoflush: the audit's changes (and any pending progress) go out as one UPDATE at the end,
    # not one per query in between.
    with session.no_autoflush:
        real = _record_dataset(session, audit.project_id, _section(document, "real"))
        synthetic = _record_dataset(session, audit.project_id, _section(document, "synthetic"))
        holdout = document.get("holdout")
        holdout_row = _record_dataset(session, audit.project_id, holdout) if holdout is not None else None
        session.execute(sa.delete(MetricValue).where(MetricValue.audit_id == audit_id))
        rows = [
            {
                "audit_id": audit_id,
                "metric": name,
                "value": _finite(entry.get("value")),
                "ci_low": _finite(entry.get("ci_low")),
                "ci_high": _finite(entry.get("ci_high")),
                "baseline": _finite(entry.get("baseline")),
            }
            for name, entry in metrics.items()
        ]
        if rows:  # one multi-row INSERT, not one round trip per metric
            session.execute(sa.insert(MetricValue), rows)
        _write_artifacts(session, audit_id, artifacts)
    audit.real_dataset_id = real.id
    audit.synthetic_dataset_id = synthetic.id
    audit.holdout_dataset_id = holdout_row.id if holdout_row is not None else None

    # The waivers in force as the audit finishes (auditor.gates.waivers) judge its verdict, in the
    # document the caller holds too (the CLI's exit code and print follow the stored verdict).
    waivers = waiver_rows.in_force(session, audit.project_id, audit_id)
    if waivers:
        verdict = apply_waivers(verdict, waivers)
        document["verdict"] = verdict
    finished = utcnow()
    duration = _finite(timings.get("total_s"))
    audit.state = "succeeded"
    audit.passed = verdict.get("passed")
    audit.protocol_fingerprint = protocol.get("fingerprint")
    audit.params = dict(document.get("params") or audit.params)
    if audit.started_at is None:
        audit.started_at = finished - timedelta(seconds=duration or 0.0)
    audit.finished_at = finished
    audit.duration_s = duration
    audit.error_code = None
    audit.error_message = None
    audit.result = document
    audit.report_data = report_data
    session.flush()
    record_event(session, audit_id, "succeeded", at=finished)
    # The outbox: the webhook deliveries commit (or roll back) with the result.
    webhook_outbox.record_audit_events(session, audit)
    return audit


def _write_artifacts(session: Session, audit_id: str, artifacts: Sequence[Artifact]) -> None:
    session.execute(sa.delete(AuditArtifact).where(AuditArtifact.audit_id == audit_id))
    now = utcnow()
    rows = [
        {
            "audit_id": audit_id,
            "name": artifact.name,
            "media_type": artifact.media_type,
            "sha256": artifact.sha256,
            "size": artifact.size,
            "content": artifact.content,
            "created_at": now,
        }
        for artifact in artifacts
    ]
    if rows:
        session.execute(sa.insert(AuditArtifact), rows)


def fail_audit(session: Session, audit_id: str, *, code: str, message: str) -> Audit:
    """Mark an audit failed with the error's machine-readable ``code`` and human message (and write its
    webhook deliveries, in the same transaction)."""
    audit = _audit_for_update(session, audit_id)
    finished = utcnow()
    audit.state = "failed"
    audit.passed = None
    audit.error_code = code[:64]
    audit.error_message = message
    audit.finished_at = finished
    audit.duration_s = (finished - audit.started_at).total_seconds() if audit.started_at else None
    session.flush()
    record_event(session, audit_id, "failed", at=finished, message=f"{code}: {message}")
    webhook_outbox.record_audit_events(session, audit)
    return audit


def record_event(
    session: Session, audit_id: str, state: str, *, at: datetime | None = None, message: str | None = None
) -> None:
    """Append one state transition to ``audit_events`` (the audit's timeline)."""
    session.add(AuditEvent(audit_id=audit_id, state=state, at=at or utcnow(), message=message))
    session.flush()


# --- audits: reading ------------------------------------------------------------------------------------


def get_audit(session: Session, audit_id_or_prefix: str, *, prefix_project: str | None = None) -> Audit:
    """An audit by its full id or a unique prefix of at least six characters.

    The project and the dataset rows come loaded. :class:`NotFoundError` when nothing matches,
    :class:`BadInputError` when the prefix is too short or matches several audits. ``prefix_project``
    limits what a prefix may match to that project's audits (the API, for a project key: an ambiguous
    prefix would otherwise name other projects' audits).
    """
    key = audit_id_or_prefix.strip().lower()
    # populate_existing: an audit already in this session (loaded bare by complete/fail_audit) must
    # still come back with its project and datasets loaded, or touching them would raise (lazy="raise").
    # Flushing first means the reload cannot discard the caller's pending changes.
    session.flush()
    audit = session.get(Audit, key, options=_audit_load_options(), populate_existing=True)
    if audit is not None:
        return audit
    if len(key) < MIN_PREFIX:
        raise BadInputError(
            f"audit id prefix {audit_id_or_prefix!r} is too short: give at least {MIN_PREFIX} characters",
            details={"audit_id": audit_id_or_prefix},
        )
    query = sa.select(Audit).options(*_audit_load_options()).where(Audit.id.startswith(key, autoescape=True))
    if prefix_project is not None:
        query = query.join(Project, Audit.project_id == Project.id).where(Project.name == prefix_project)
    matches = session.scalars(
        query.order_by(Audit.id).limit(2).execution_options(populate_existing=True)
    ).all()
    if not matches:
        raise NotFoundError(
            f"no audit matches {audit_id_or_prefix!r}", details={"audit_id": audit_id_or_prefix}
        )
    if len(matches) > 1:
        raise BadInputError(
            f"audit id prefix {audit_id_or_prefix!r} is ambiguous ({matches[0].id}, {matches[1].id}, ...): "
            "give more characters",
            details={"audit_id": audit_id_or_prefix},
        )
    return matches[0]


def list_audits(session: Session, *, project: str | None = None, limit: int = 50) -> list[Audit]:
    """Audits newest first (ties broken by id), the project loaded; an unknown project lists nothing."""
    if limit < 1:
        raise BadInputError(f"limit must be >= 1, got {limit}")
    return page_audits(
        session, AuditFilter(projects=(project,) if project is not None else None), limit=limit
    )


def find_audit_by_idempotency_key(session: Session, *, project: str, key: str) -> str | None:
    return session.scalar(
        sa.select(Audit.id)
        .join(Project, Audit.project_id == Project.id)
        .where(Project.name == project, Audit.idempotency_key == key)
    )


@dataclass(frozen=True)
class AuditFilter:
    projects: tuple[str, ...] | None = None  # None: every project
    state: str | None = None
    tag: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


def page_audits(
    session: Session, filters: AuditFilter, *, limit: int, after: tuple[datetime, str] | None = None
) -> list[Audit]:
    """Audits newest first, keyset-paginated on (created_at, id): stable while new audits arrive."""
    query = sa.select(Audit).options(joinedload(Audit.project)).join(Audit.project)
    if filters.projects is not None:
        query = query.where(Project.name.in_(filters.projects))
    if filters.state is not None:
        query = query.where(Audit.state == filters.state)
    if filters.tag is not None:
        # Tags are a JSON array of strings on both backends; match the JSON-encoded element.
        encoded = json.dumps(filters.tag)
        query = query.where(sa.cast(Audit.tags, sa.Text).contains(encoded, autoescape=True))
    if filters.created_after is not None:
        query = query.where(Audit.created_at >= filters.created_after)
    if filters.created_before is not None:
        query = query.where(Audit.created_at < filters.created_before)
    if after is not None:
        created, audit_id = after
        query = query.where(
            sa.or_(Audit.created_at < created, sa.and_(Audit.created_at == created, Audit.id < audit_id))
        )
    query = query.order_by(Audit.created_at.desc(), Audit.id.desc()).limit(limit)
    return list(session.scalars(query.execution_options(populate_existing=True)).all())


def protocol_lineage(session: Session, audit: Audit, *, limit: int = 100) -> list[Audit]:
    """Succeeded audits of the audit's project under its protocol, by generation then time (its trend)."""
    query = (
        sa.select(Audit)
        .where(
            Audit.project_id == audit.project_id,
            Audit.state == "succeeded",
            Audit.protocol_fingerprint == audit.protocol_fingerprint,
        )
        .order_by(sa.case((Audit.generation.is_(None), 1), else_=0), Audit.generation, Audit.created_at)
        .limit(limit)
    )
    return list(session.scalars(query).all())


def audit_artifacts(session: Session, audit_id: str, name: str | None = None) -> list[StoredArtifact]:
    """The files stored with an audit (or only the one called ``name``), by name, without content."""
    query = sa.select(
        AuditArtifact.name,
        AuditArtifact.media_type,
        AuditArtifact.sha256,
        AuditArtifact.size,
        AuditArtifact.created_at,
    ).where(AuditArtifact.audit_id == audit_id)
    if name is not None:
        query = query.where(AuditArtifact.name == name)
    return [
        StoredArtifact(
            name=row.name,
            media_type=row.media_type,
            sha256=row.sha256,
            size=row.size,
            created_at=row.created_at,
        )
        for row in session.execute(query.order_by(AuditArtifact.name))
    ]


def audit_artifact(session: Session, audit_id: str, name: str) -> StoredArtifact | None:
    """One stored file's metadata (name, media type, sha256, size), or None."""
    rows = audit_artifacts(session, audit_id, name)
    return rows[0] if rows else None


def audit_artifact_content(session: Session, audit_id: str, name: str) -> bytes | None:
    """One stored file's bytes, or None."""
    content = session.scalar(
        sa.select(AuditArtifact.content).where(AuditArtifact.audit_id == audit_id, AuditArtifact.name == name)
    )
    return bytes(content) if content is not None else None


def audit_events(session: Session, audit_id: str) -> list[AuditEvent]:
    return list(
        session.scalars(sa.select(AuditEvent).where(AuditEvent.audit_id == audit_id).order_by(AuditEvent.id))
    )


def list_projects(session: Session, names: tuple[str, ...] | None = None) -> list[Project]:
    query = sa.select(Project).order_by(Project.name)
    if names is not None:
        query = query.where(Project.name.in_(names))
    return list(session.scalars(query).all())


def audit_metrics(session: Session, audit_id: str) -> dict[str, MetricRow]:
    """One audit's metric values by name, in registry order (unknown names last, alphabetically).

    Empty for an audit without results yet; :class:`NotFoundError` for an id that does not exist.
    """
    rows = session.scalars(sa.select(MetricValue).where(MetricValue.audit_id == audit_id)).all()
    if not rows and session.get(Audit, audit_id) is None:
        raise NotFoundError(f"audit {audit_id!r} does not exist", details={"audit_id": audit_id})
    order = {name: index for index, name in enumerate(METRICS)}
    rows = sorted(rows, key=lambda row: (order.get(row.metric, len(order)), row.metric))
    return {
        row.metric: MetricRow(
            metric=row.metric, value=row.value, ci_low=row.ci_low, ci_high=row.ci_high, baseline=row.baseline
        )
        for row in rows
    }


def metric_trend(
    session: Session, *, project: str, metric: str, protocol_fingerprint: str | None = None
) -> list[TrendPoint]:
    """One metric over a project's succeeded audits, by generation (unset last), then creation time.

    Values are comparable only within one protocol. Without ``protocol_fingerprint`` every point is
    returned with its own fingerprint and the caller must group by it (see :func:`trend_protocols`);
    nothing here merges series. :class:`NotFoundError` for an unknown project,
    :class:`~auditor.errors.UnknownNameError` for a metric not in the registry.
    """
    project_row = _trend_project(session, project, metric)
    query = (
        sa.select(
            Audit.id,
            Audit.created_at,
            Audit.generation,
            MetricValue.value,
            MetricValue.ci_low,
            MetricValue.ci_high,
            MetricValue.baseline,
            Audit.protocol_fingerprint,
        )
        .join(MetricValue, MetricValue.audit_id == Audit.id)
        .where(Audit.project_id == project_row.id, Audit.state == "succeeded", MetricValue.metric == metric)
        # Portable NULLS LAST: (generation IS NULL) sorts false before true on both backends.
        .order_by(
            sa.case((Audit.generation.is_(None), 1), else_=0),
            Audit.generation,
            Audit.created_at,
            Audit.id,
        )
    )
    if protocol_fingerprint is not None:
        query = query.where(Audit.protocol_fingerprint == protocol_fingerprint)
    return [
        TrendPoint(
            audit_id=row.id,
            created_at=row.created_at,
            generation=row.generation,
            value=row.value,
            ci_low=row.ci_low,
            ci_high=row.ci_high,
            baseline=row.baseline,
            protocol_fingerprint=row.protocol_fingerprint,
        )
        for row in session.execute(query)
    ]


def trend_protocols(session: Session, project: str, metric: str) -> list[str]:
    """The protocol fingerprints under which ``metric`` was recorded in ``project``, oldest first."""
    project_row = _trend_project(session, project, metric)
    first_seen = sa.func.min(Audit.created_at)
    query = (
        sa.select(Audit.protocol_fingerprint, first_seen)
        .join(MetricValue, MetricValue.audit_id == Audit.id)
        .where(
            Audit.project_id == project_row.id,
            Audit.state == "succeeded",
            MetricValue.metric == metric,
            Audit.protocol_fingerprint.is_not(None),
        )
        .group_by(Audit.protocol_fingerprint)
        .order_by(first_seen, Audit.protocol_fingerprint)
    )
    return [fingerprint for fingerprint, _ in session.execute(query) if fingerprint is not None]


# --- helpers --------------------------------------------------------------------------------------------


def _audit_load_options() -> list[ORMOption]:
    return [
        joinedload(Audit.project),
        joinedload(Audit.real_dataset),
        joinedload(Audit.synthetic_dataset),
        joinedload(Audit.holdout_dataset),
    ]


def _audit_for_update(session: Session, audit_id: str) -> Audit:
    audit = session.get(Audit, audit_id)
    if audit is None:
        raise NotFoundError(f"audit {audit_id!r} does not exist", details={"audit_id": audit_id})
    return audit


def _trend_project(session: Session, project: str, metric: str) -> Project:
    if metric not in METRICS:
        raise UnknownNameError(
            f"unknown metric {metric!r}; known: {', '.join(METRICS)}", details={"metric": metric}
        )
    return get_project(session, project)


def _record_dataset(session: Session, project_id: int, side: Mapping[str, Any]) -> Dataset:
    """The dataset row for this reference and content in the project, created on first sight."""
    try:
        reference, fingerprint = str(side["reference"]), str(side["fingerprint"])
        fmt, n_samples, dim = str(side["format"]), int(side["n"]), int(side["dim"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInputError(f"result document has a malformed dataset entry: {exc!r}") from exc
    return _get_or_create(
        session,
        sa.select(Dataset).where(
            Dataset.project_id == project_id,
            Dataset.fingerprint == fingerprint,
            Dataset.reference == reference,
        ),
        lambda: Dataset(
            project_id=project_id,
            reference=reference,
            fingerprint=fingerprint,
            format=fmt,
            n_samples=n_samples,
            dim=dim,
            created_at=utcnow(),
        ),
    )


def _get_or_create(session: Session, query: sa.Select[Any], make: Callable[[], _T]) -> _T:
    existing = session.scalars(query).one_or_none()
    if existing is not None:
        return cast(_T, existing)
    row = make()
    try:
        # A savepoint: when a concurrent transaction inserted the same key first, only this insert is
        # undone and the caller's transaction carries on with the other row.
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return cast(_T, session.scalars(query).one())
    return row


def _section(document: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = document.get(key)
    if not isinstance(value, Mapping):
        raise BadInputError(f"result document has no {key!r} section")
    return value


def _finite(value: Any) -> float | None:
    # SQLite cannot store NaN (it becomes NULL); make that the rule on every backend.
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
