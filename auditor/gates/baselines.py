"""Baselines from the audit history: what ``baseline: parent | last_passed | audit:<id>`` compares with.

Resolved once, when the audit is submitted (the service) or created (``run_audit`` with a database), into
snapshots recorded in the audit's spec (``AuditSpec.baselines``): the verdict is then computed from the
same numbers wherever and whenever the audit is scored, and a baseline that cannot be found is an error
before any work starts, never a silent pass. A snapshot keeps what a rule reads::

    {"source": "parent", "audit_id": "7f0c...", "protocol": "0123456789abcdef",
     "metrics": {"fid": {"value": 0.046, "ci_low": 0.041, "ci_high": 0.052}, ...}}

Baselines come from the audit's own project only: a project key cannot read another project's numbers
through ``audit:<id>``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from auditor.db import queries
from auditor.db.models import Audit, Project
from auditor.errors import NotFoundError, PolicyError
from auditor.policy import Policy, baseline_source, sample_sizes


def _snapshot(name: str, audit: Audit) -> dict[str, Any]:
    document = audit.result or {}
    metrics = {
        metric: {key: entry.get(key) for key in ("value", "ci_low", "ci_high")}
        for metric, entry in (document.get("metrics") or {}).items()
    }
    return {
        "source": name,
        "audit_id": audit.id,
        "protocol": (document.get("protocol") or {}).get("fingerprint"),
        "sizes": sample_sizes(document),
        "metrics": metrics,
    }


def _finished(name: str, audit: Audit, project: str) -> Audit:
    if audit.project.name != project:
        raise PolicyError(
            f"baseline {name}: audit {audit.id} belongs to another project; baselines come from "
            f"project {project!r}",
            details={"baseline": name},
        )
    if audit.state != "succeeded" or not audit.result:
        raise PolicyError(
            f"baseline {name}: audit {audit.id} is {audit.state}; a baseline must be a finished audit",
            details={"baseline": name, "audit_id": audit.id, "state": audit.state},
        )
    return audit


def _last_passed(session: Session, project: str, exclude: str | None) -> Audit:
    query = (
        sa.select(Audit.id)
        .join(Project, Audit.project_id == Project.id)
        .where(Project.name == project, Audit.state == "succeeded", Audit.passed.is_(True))
        .order_by(Audit.created_at.desc(), Audit.id.desc())
        .limit(1)
    )
    if exclude is not None:
        query = query.where(Audit.id != exclude)
    audit_id = session.scalar(query)
    if audit_id is None:
        raise PolicyError(
            f"baseline last_passed: project {project!r} has no audit that passed its gate yet "
            "(use an absolute rule until one has)",
            details={"baseline": "last_passed", "project": project},
        )
    return queries.get_audit(session, audit_id)


def resolve_baselines(
    session: Session,
    policy: Policy | None,
    *,
    project: str,
    parent_audit_id: str | None,
    exclude_audit_id: str | None = None,
) -> dict[str, dict[str, Any]]:
    """A snapshot per history baseline the policy names (``{}`` when it names none)."""
    if policy is None:
        return {}
    snapshots: dict[str, dict[str, Any]] = {}
    for name in policy.baseline_names():
        kind, audit_id = baseline_source(name)
        try:
            if kind == "parent":
                if parent_audit_id is None:
                    raise PolicyError(
                        "a rule compares with the parent audit, but the audit has none (--parent)",
                        details={"baseline": name},
                    )
                audit = queries.get_audit(session, parent_audit_id, prefix_project=project)
            elif kind == "last_passed":
                audit = _last_passed(session, project, exclude_audit_id)
            else:
                assert audit_id is not None
                audit = queries.get_audit(session, audit_id, prefix_project=project)
        except NotFoundError as exc:
            raise PolicyError(f"baseline {name}: {exc.message}", details={"baseline": name}) from exc
        snapshots[name] = _snapshot(name, _finished(name, audit, project))
    return snapshots


def require_no_history_baselines(policy: Policy | None) -> None:
    """Without an audit history (no database), a rule on parent / last_passed / audit:<id> cannot run."""
    names = policy.baseline_names() if policy is not None else []
    if names:
        raise PolicyError(
            f"the policy compares with {', '.join(names)} from the audit history, which this run does not "
            "record (give the audit a project and a database, or use baseline: holdout)",
            details={"baselines": names},
        )
