"""auditor.db.queries against real SQLite and PostgreSQL databases."""

from __future__ import annotations

import math
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from helpers.databases import make_document, reset_postgres_database
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import Session, sessionmaker

from auditor.db import queries
from auditor.db.migrate import current_revisions, ensure_database, head_revisions, upgrade_database
from auditor.db.models import Audit, Dataset, MetricValue, Project
from auditor.db.session import make_engine, make_session_factory, session_scope
from auditor.errors import BadInputError, NotFoundError, UnknownNameError

Factory = sessionmaker[Session]
SPEC: dict[str, Any] = {"real": {"uri": "data/real.npy"}, "params": {"nearest_k": 5}, "project": "default"}
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


def new_id() -> str:
    return uuid.uuid4().hex


def create(
    factory: Factory,
    audit_id: str | None = None,
    *,
    project: str = "default",
    parent: str | None = None,
    generation: int | None = None,
    state: str = "running",
) -> str:
    audit_id = audit_id or new_id()
    with session_scope(factory) as session:
        queries.create_audit(
            session,
            audit_id=audit_id,
            project=project,
            spec=SPEC,
            extractor="precomputed",
            parent_audit_id=parent,
            generation=generation,
            tags=["nightly"],
            state=state,
        )
    return audit_id


def complete(factory: Factory, audit_id: str, **document: Any) -> None:
    with session_scope(factory) as session:
        queries.complete_audit(session, audit_id, make_document(audit_id, **document))


def set_created_at(factory: Factory, audit_id: str, when: datetime) -> None:
    with session_scope(factory) as session:
        session.execute(sa.update(Audit).where(Audit.id == audit_id).values(created_at=when))


# --- create / complete / fail ---------------------------------------------------------------------------


def test_create_complete_round_trip(session_factory: Factory) -> None:
    audit_id = create(session_factory)
    with session_scope(session_factory) as session:
        audit = queries.get_audit(session, audit_id)
        assert audit.state == "running"
        assert audit.project.name == "default"
        assert audit.spec == SPEC
        assert audit.params == {"nearest_k": 5}
        assert audit.tags == ["nightly"]
        assert audit.result is None
        assert audit.started_at is not None
        assert audit.started_at.tzinfo is not None
        assert audit.started_at.utcoffset() == timedelta(0)
        assert audit.real_dataset is None

    document = make_document(audit_id, passed=False, protocol_fingerprint="aaaa000011112222")
    report_data = {"mode_real_share": [0.5, 0.5], "spectrum_real": [3.0, 1.0]}
    with session_scope(session_factory) as session:
        queries.complete_audit(session, audit_id, document, report_data)

    with session_scope(session_factory) as session:
        audit = queries.get_audit(session, audit_id)
        assert audit.state == "succeeded"
        assert audit.passed is False
        assert audit.protocol_fingerprint == "aaaa000011112222"
        assert audit.duration_s == pytest.approx(1.25)
        assert audit.finished_at is not None
        assert audit.finished_at >= audit.created_at
        assert audit.result == document
        assert audit.report_data == report_data
        assert audit.params == document["params"]
        assert audit.real_dataset is not None
        assert audit.real_dataset.reference == "data/real.npy"
        assert audit.real_dataset.n_samples == 500
        assert audit.synthetic_dataset is not None
        assert audit.synthetic_dataset.fingerprint == "sha256:" + "fe" * 32
        assert audit.holdout_dataset is not None
        assert audit.holdout_dataset.dim == 16

        metrics = queries.audit_metrics(session, audit_id)
        assert list(metrics) == ["fid", "precision", "recall"]  # registry order
        assert metrics["fid"].value == pytest.approx(12.5)
        assert metrics["fid"].ci_low == pytest.approx(11.25)
        assert metrics["fid"].ci_high == pytest.approx(13.75)
        assert metrics["fid"].baseline == pytest.approx(0.5)
        assert metrics["recall"].baseline is None


def test_artifacts_are_written_with_the_result_replaced_on_rescore_and_deleted_with_the_audit(
    session_factory: Factory,
) -> None:
    from auditor.db.models import AuditArtifact
    from auditor.pipeline.result import Artifact

    audit_id = create(session_factory)
    blob = bytes(range(256)) * 4096  # 1 MiB, every byte value: binary-safe on both backends
    first = [Artifact("samples/synthetic.parquet", "application/vnd.apache.parquet", blob)]
    with session_scope(session_factory) as session:
        queries.complete_audit(session, audit_id, make_document(audit_id), None, first)
    with session_scope(session_factory) as session:
        [stored] = queries.audit_artifacts(session, audit_id)
        assert (stored.name, stored.size, stored.sha256) == (first[0].name, len(blob), first[0].sha256)
        assert stored.created_at.tzinfo is not None
        assert queries.audit_artifact_content(session, audit_id, stored.name) == blob
        assert queries.audit_artifact(session, audit_id, "samples/real.parquet") is None
        assert queries.audit_artifact_content(session, audit_id, "samples/real.parquet") is None

    # A retried score overwrites: the new set of files, none of the old.
    second = [
        Artifact("samples/real.parquet", "application/vnd.apache.parquet", b"real"),
        Artifact("samples/synthetic.parquet", "application/vnd.apache.parquet", b"synthetic"),
    ]
    with session_scope(session_factory) as session:
        queries.complete_audit(session, audit_id, make_document(audit_id), None, second)
    with session_scope(session_factory) as session:
        assert [(a.name, a.size) for a in queries.audit_artifacts(session, audit_id)] == [
            ("samples/real.parquet", 4),
            ("samples/synthetic.parquet", 9),
        ]
        assert queries.audit_artifact_content(session, audit_id, "samples/synthetic.parquet") == b"synthetic"

    with session_scope(session_factory) as session:  # ON DELETE CASCADE, as for metric values
        session.execute(sa.delete(Audit).where(Audit.id == audit_id))
    with session_scope(session_factory) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(AuditArtifact)) == 0


def test_get_audit_loads_relations_within_the_writing_session(session_factory: Factory) -> None:
    audit_id = create(session_factory, project="same")
    with session_scope(session_factory) as session:
        # Loaded bare and kept referenced, so the session's identity map still holds it.
        completed = queries.complete_audit(session, audit_id, make_document(audit_id))
        for key in (audit_id, audit_id[:8]):
            audit = queries.get_audit(session, key)
            assert audit is completed
            assert audit.project.name == "same"
            assert audit.real_dataset is not None
        audit.tags = ["edited"]
        assert queries.get_audit(session, audit_id).tags == ["edited"]  # pending change survives


def test_metric_values_are_plain_sql_long_form(session_factory: Factory) -> None:
    audit_id = create(session_factory)
    complete(session_factory, audit_id, metrics={"fid": 3.5, "coverage": 0.9})
    with session_scope(session_factory) as session:
        rows = session.execute(
            sa.text("SELECT metric, value FROM metric_values WHERE audit_id = :id ORDER BY metric"),
            {"id": audit_id},
        ).all()
    assert [(metric, value) for metric, value in rows] == [("coverage", 0.9), ("fid", 3.5)]


def test_non_finite_values_are_stored_as_null(session_factory: Factory) -> None:
    audit_id = create(session_factory)
    complete(session_factory, audit_id, metrics={"fid": math.nan, "kid": math.inf, "precision": 0.5})
    with session_scope(session_factory) as session:
        metrics = queries.audit_metrics(session, audit_id)
        assert metrics["fid"].value is None
        assert metrics["kid"].value is None
        assert metrics["kid"].ci_low is None
        assert metrics["precision"].value == 0.5
        # PostgreSQL's json type rejects NaN tokens: the stored document carries null instead.
        result = queries.get_audit(session, audit_id).result
        assert result is not None
        assert result["metrics"]["fid"]["value"] is None
        assert result["metrics"]["precision"]["value"] == 0.5


def test_completing_twice_replaces_metric_rows(session_factory: Factory) -> None:
    audit_id = create(session_factory)
    complete(session_factory, audit_id, metrics={"fid": 1.0, "recall": 0.2})
    complete(session_factory, audit_id, metrics={"fid": 2.0})
    with session_scope(session_factory) as session:
        assert {name: row.value for name, row in queries.audit_metrics(session, audit_id).items()} == {
            "fid": 2.0
        }


def test_fail_audit(session_factory: Factory) -> None:
    audit_id = create(session_factory)
    with session_scope(session_factory) as session:
        queries.fail_audit(session, audit_id, code="dataset_not_found", message="no such file: x.npy")
    with session_scope(session_factory) as session:
        audit = queries.get_audit(session, audit_id)
        assert audit.state == "failed"
        assert audit.error_code == "dataset_not_found"
        assert audit.error_message == "no such file: x.npy"
        assert audit.passed is None
        assert audit.result is None
        assert audit.duration_s is not None
        assert audit.duration_s >= 0
        assert audit.real_dataset_id is None  # datasets are recorded on completion only
        assert queries.audit_metrics(session, audit_id) == {}


def test_queued_audit_has_no_start_time(session_factory: Factory) -> None:
    audit_id = create(session_factory, state="queued")
    with session_scope(session_factory) as session:
        audit = queries.get_audit(session, audit_id)
        assert (audit.state, audit.started_at) == ("queued", None)
    complete(session_factory, audit_id)
    with session_scope(session_factory) as session:
        assert queries.get_audit(session, audit_id).started_at is not None


def test_unknown_audits_and_bad_input(session_factory: Factory) -> None:
    missing = new_id()
    with session_scope(session_factory) as session:
        with pytest.raises(NotFoundError):
            queries.complete_audit(session, missing, make_document(missing))
        with pytest.raises(NotFoundError):
            queries.fail_audit(session, missing, code="x", message="y")
        with pytest.raises(NotFoundError):
            queries.audit_metrics(session, missing)
        with pytest.raises(BadInputError, match="32 lowercase hex"):
            queries.create_audit(session, audit_id="nope", project="p", spec={}, extractor="e")
        with pytest.raises(BadInputError, match="not 'succeeded'"):
            queries.create_audit(
                session, audit_id=new_id(), project="p", spec={}, extractor="e", state="succeeded"
            )
    audit_id = create(session_factory)
    with session_scope(session_factory) as session:
        with pytest.raises(BadInputError, match="already exists"):
            queries.create_audit(session, audit_id=audit_id, project="p", spec={}, extractor="e")
        with pytest.raises(BadInputError, match="not"):
            queries.complete_audit(session, audit_id, make_document(new_id()))


def test_session_scope_rolls_back_on_error(session_factory: Factory) -> None:
    audit_id = new_id()
    with pytest.raises(RuntimeError), session_scope(session_factory) as session:
        queries.create_audit(session, audit_id=audit_id, project="rolled-back", spec={}, extractor="e")
        raise RuntimeError("boom")
    with session_scope(session_factory) as session:
        with pytest.raises(NotFoundError):
            queries.get_audit(session, audit_id)
        with pytest.raises(NotFoundError):
            queries.get_project(session, "rolled-back")


def test_relationships_never_load_implicitly(session_factory: Factory) -> None:
    audit_id = create(session_factory)
    with session_scope(session_factory) as session:
        audit = session.get(Audit, audit_id)
        assert audit is not None
        with pytest.raises(InvalidRequestError):
            _ = audit.metric_values
        with pytest.raises(InvalidRequestError):
            _ = audit.parent


def test_deleting_an_audit_cascades_to_metrics_and_detaches_children(session_factory: Factory) -> None:
    parent = create(session_factory)
    complete(session_factory, parent)
    child = create(session_factory, parent=parent)
    with session_scope(session_factory) as session:
        session.execute(sa.delete(Audit).where(Audit.id == parent))
    with session_scope(session_factory) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(MetricValue)) == 0
        assert queries.get_audit(session, child).parent_audit_id is None


# --- lineage --------------------------------------------------------------------------------------------


def test_generation_follows_the_parent(session_factory: Factory) -> None:
    root = create(session_factory)
    first = create(session_factory, parent=root)
    second = create(session_factory, parent=first)
    explicit = create(session_factory, parent=second, generation=10)
    after_explicit = create(session_factory, parent=explicit)
    with session_scope(session_factory) as session:
        generations = [queries.get_audit(session, i).generation for i in (root, first, second, explicit)]
        assert generations == [None, 1, 2, 10]
        assert queries.get_audit(session, after_explicit).generation == 11
        assert queries.get_audit(session, second).parent_audit_id == first


def test_unknown_parent_is_not_found(session_factory: Factory) -> None:
    audit_id = new_id()
    with session_scope(session_factory) as session, pytest.raises(NotFoundError) as info:
        queries.create_audit(
            session, audit_id=audit_id, project="p", spec={}, extractor="e", parent_audit_id=new_id()
        )
    assert info.value.code == "not_found"
    with session_scope(session_factory) as session, pytest.raises(NotFoundError):
        queries.get_audit(session, audit_id)


def test_a_parent_in_another_project_is_not_found(session_factory: Factory) -> None:
    """Lineage stays in a project; the refusal reads as for an unknown id (nothing about the other one)."""
    parent = create(session_factory, project="alpha")
    for other in (parent, new_id()):
        with session_scope(session_factory) as session, pytest.raises(NotFoundError) as info:
            queries.create_audit(
                session, audit_id=new_id(), project="beta", spec={}, extractor="e", parent_audit_id=other
            )
        assert info.value.message == f"parent audit {other!r} does not exist in project 'beta'"
    child = create(session_factory, project="alpha", parent=parent)
    with session_scope(session_factory) as session:
        assert queries.get_audit(session, child).parent_audit_id == parent


def test_concurrent_policy_versions_get_the_next_numbers(session_factory: Factory) -> None:
    """Two requests storing the same policy at once read the same latest version; the second insert
    hit the unique constraint (a 500 in the API) before it was retried."""
    import threading

    from auditor.db import access

    count = 6
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def store(index: int) -> None:
        try:
            barrier.wait(10)
            with session_scope(session_factory) as session:
                access.create_policy_version(
                    session, project="p", name="gate", body={"rules": [{"metric": "fid", "max": index}]}
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=store, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    with session_scope(session_factory) as session:
        assert [row.version for row in access.list_policies(session, "p")] == list(range(1, count + 1))


# --- lookup and listing ---------------------------------------------------------------------------------


def test_prefix_lookup(session_factory: Factory) -> None:
    one = "abcdef01" + "0" * 24
    two = "abcdef02" + "0" * 24
    create(session_factory, one)
    create(session_factory, two)
    with session_scope(session_factory) as session:
        assert queries.get_audit(session, one).id == one
        assert queries.get_audit(session, "abcdef01").id == one
        assert queries.get_audit(session, "ABCDEF02 ").id == two
        with pytest.raises(BadInputError, match="ambiguous"):
            queries.get_audit(session, "abcdef")
        with pytest.raises(BadInputError, match="at least 6"):
            queries.get_audit(session, "abcde")
        with pytest.raises(NotFoundError):
            queries.get_audit(session, "abcdef03")
        with pytest.raises(NotFoundError):
            queries.get_audit(session, "abcd%_")  # LIKE wildcards are matched literally


def test_list_audits_newest_first(session_factory: Factory) -> None:
    ids = [create(session_factory, project="a") for _ in range(3)]
    other = create(session_factory, project="b")
    set_created_at(session_factory, ids[0], T0 + timedelta(hours=2))
    set_created_at(session_factory, ids[1], T0)
    set_created_at(session_factory, ids[2], T0)
    set_created_at(session_factory, other, T0 + timedelta(hours=1))
    tied = sorted(ids[1:], reverse=True)
    with session_scope(session_factory) as session:
        listed = queries.list_audits(session)
        assert [a.id for a in listed] == [ids[0], other, *tied]
        assert listed[0].project.name == "a"  # loaded with the audit
        assert listed[0].created_at == T0 + timedelta(hours=2)
        assert [a.id for a in queries.list_audits(session, project="a", limit=2)] == [ids[0], tied[0]]
        assert queries.list_audits(session, project="nobody") == []
        with pytest.raises(BadInputError):
            queries.list_audits(session, limit=0)


def test_get_or_create_project(session_factory: Factory) -> None:
    with session_scope(session_factory) as session:
        first = queries.get_or_create_project(session, "vision")
        again = queries.get_or_create_project(session, "vision")
        assert first.id == again.id
        with pytest.raises(BadInputError):
            queries.get_or_create_project(session, "")
    with session_scope(session_factory) as session:
        assert queries.get_or_create_project(session, "vision").id == first.id


# --- datasets -------------------------------------------------------------------------------------------


def test_dataset_rows_are_reused(session_factory: Factory) -> None:
    first, second, changed, moved = (create(session_factory) for _ in range(4))
    complete(session_factory, first)
    complete(session_factory, second)
    complete(session_factory, changed, synthetic_fingerprint="sha256:" + "00" * 32)
    complete(session_factory, moved, synthetic_reference="data/moved.npy")
    other_project = create(session_factory, project="other")
    complete(session_factory, other_project)
    with session_scope(session_factory) as session:
        audits = {i: queries.get_audit(session, i) for i in (first, second, changed, moved, other_project)}
        assert (
            audits[first].real_dataset_id == audits[second].real_dataset_id == audits[changed].real_dataset_id
        )
        assert audits[first].synthetic_dataset_id == audits[second].synthetic_dataset_id
        assert audits[changed].synthetic_dataset_id != audits[first].synthetic_dataset_id
        assert audits[moved].synthetic_dataset_id != audits[first].synthetic_dataset_id
        assert audits[other_project].real_dataset_id != audits[first].real_dataset_id
        # default project: real, holdout, synthetic x3 (original, changed content, moved); other: 3.
        assert session.scalar(sa.select(sa.func.count()).select_from(Dataset)) == 5 + 3


# --- trends ---------------------------------------------------------------------------------------------


def test_metric_trend_orders_by_generation_then_time(session_factory: Factory) -> None:
    root = create(session_factory, project="p")  # generation None: last
    gen2_late = create(session_factory, project="p", generation=2)
    gen2_early = create(session_factory, project="p", generation=2)
    gen0 = create(session_factory, project="p", generation=0)
    gen1 = create(session_factory, project="p", generation=1)
    failed = create(session_factory, project="p", generation=3)
    for offset, audit_id in enumerate([root, gen2_late, gen2_early, gen0, gen1]):
        complete(session_factory, audit_id, metrics={"fid": float(offset)})
    with session_scope(session_factory) as session:
        queries.fail_audit(session, failed, code="internal_error", message="x")
    set_created_at(session_factory, gen2_late, T0 + timedelta(minutes=5))
    set_created_at(session_factory, gen2_early, T0)

    with session_scope(session_factory) as session:
        points = queries.metric_trend(session, project="p", metric="fid")
    assert [p.audit_id for p in points] == [gen0, gen1, gen2_early, gen2_late, root]
    assert [p.generation for p in points] == [0, 1, 2, 2, None]
    assert [p.value for p in points] == [3.0, 4.0, 2.0, 1.0, 0.0]
    assert points[0].ci_low == pytest.approx(2.7)
    assert points[0].baseline == 0.5
    assert points[2].created_at == T0
    assert {p.protocol_fingerprint for p in points} == {"0123456789abcdef"}


def test_metric_trend_keeps_protocols_apart(session_factory: Factory) -> None:
    old, new = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"
    plan = [(0, old, T0), (1, old, T0 + timedelta(hours=1)), (1, new, T0 + timedelta(hours=2)), (2, new, T0)]
    ids = []
    for generation, fingerprint, when in plan:
        audit_id = create(session_factory, project="p", generation=generation)
        complete(session_factory, audit_id, protocol_fingerprint=fingerprint, metrics={"recall": 0.5})
        set_created_at(session_factory, audit_id, when)
        ids.append(audit_id)

    with session_scope(session_factory) as session:
        assert queries.trend_protocols(session, "p", "recall") == [old, new]
        assert queries.trend_protocols(session, "p", "fid") == []
        only_old = queries.metric_trend(session, project="p", metric="recall", protocol_fingerprint=old)
        only_new = queries.metric_trend(session, project="p", metric="recall", protocol_fingerprint=new)
        everything = queries.metric_trend(session, project="p", metric="recall")
    assert [p.audit_id for p in only_old] == ids[:2]
    assert [p.audit_id for p in only_new] == ids[2:]
    assert [(p.audit_id, p.protocol_fingerprint) for p in everything] == [
        (ids[0], old),
        (ids[1], old),
        (ids[2], new),
        (ids[3], new),
    ]


def test_metric_trend_rejects_unknown_names(session_factory: Factory) -> None:
    create(session_factory, project="p")
    with session_scope(session_factory) as session:
        with pytest.raises(NotFoundError):
            queries.metric_trend(session, project="nope", metric="fid")
        with pytest.raises(UnknownNameError):
            queries.metric_trend(session, project="p", metric="fidd")
        with pytest.raises(NotFoundError):
            queries.trend_protocols(session, "nope", "fid")
        assert queries.metric_trend(session, project="p", metric="fid") == []


# --- concurrency ----------------------------------------------------------------------------------------


def test_failed_savepoint_keeps_the_outer_transaction(session_factory: Factory) -> None:
    # SQLite's driver needs help for SAVEPOINT to nest inside the transaction (see make_engine).
    audit_id = new_id()
    with session_scope(session_factory) as session:
        queries.get_or_create_project(session, "taken")
    with session_scope(session_factory) as session:
        queries.create_audit(session, audit_id=audit_id, project="kept", spec={}, extractor="e")
        with pytest.raises(sa.exc.IntegrityError), session.begin_nested():
            session.add(Project(name="taken"))
    with session_scope(session_factory) as session:
        assert queries.get_audit(session, audit_id).project.name == "kept"


@pytest.mark.postgres
def test_concurrent_get_or_create_project_on_postgres(postgres_database_url: str) -> None:
    reset_postgres_database(postgres_database_url)
    upgrade_database(postgres_database_url)
    engine = make_engine(postgres_database_url)
    factory = make_session_factory(engine)
    try:
        with factory() as first:
            created = queries.get_or_create_project(first, "race")  # inserted, not committed
            found: list[int] = []
            errors: list[BaseException] = []

            def second() -> None:
                try:
                    with session_scope(factory) as session:
                        found.append(queries.get_or_create_project(session, "race").id)
                except BaseException as exc:  # re-raised in the main thread
                    errors.append(exc)

            thread = threading.Thread(target=second)
            thread.start()
            _wait_until_blocked_on_a_lock(engine)
            first.commit()
            thread.join(timeout=10)
        assert not errors, errors
        assert found == [created.id]
    finally:
        engine.dispose()


def _wait_until_blocked_on_a_lock(engine: sa.Engine) -> None:
    deadline = time.monotonic() + 10
    with engine.connect() as connection:
        while time.monotonic() < deadline:
            waiting = connection.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
            connection.rollback()  # a fresh snapshot of pg_stat_activity on the next poll
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError("the second session never blocked on the first one's insert")


def test_concurrent_ensure_database(database_url: str) -> None:
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            ensure_database(database_url)
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert current_revisions(database_url) == head_revisions()
