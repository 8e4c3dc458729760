"""The task bodies the workers run, one per stage, each taking an audit id and safe to run twice.

Flow of a submitted audit (every arrow is a queued task; state lives in SQL, never only in the broker)::

    start (cpu) ── claims the audit, resolves the datasets, finds which sides need embedding
      ├── nothing to embed (cache hits, precomputed embeddings) ──> score, in the same task
      └── embed(side) (gpu), one per side, in parallel ──> the last one to finish enqueues score (cpu)

Idempotence: ``start`` claims with a compare-and-set (a duplicate delivery of a live audit's task is
dropped); ``embed`` writes its features to the artifact store under a content key (a second run
overwrites the same entry); ``score`` overwrites the result. A worker killed mid-task leaves the audit
``running`` with a heartbeat that stops: :func:`sweep_stale` requeues it and the next ``start``
re-drives it, reusing every side already embedded.

Errors: bad input (:class:`~auditor.errors.BadInputError`) fails the audit at once with its code, and so
does a full store (:class:`~auditor.errors.StorageFullError`, ``storage_full``);
:data:`TRANSIENT_ERRORS` (database, storage, broker) propagate so the worker retries with backoff;
anything else fails the audit as ``internal_error`` with the exception's text.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
import torch
from sqlalchemy.exc import OperationalError

from auditor.datasets.refs import dataset_scope
from auditor.db import lifecycle, queries
from auditor.db.models import Audit
from auditor.errors import AuditorError, BadInputError, ServiceUnavailableError, StorageFullError
from auditor.extractors.base import LoadedDataset
from auditor.pipeline.spec import AuditSpec
from auditor.pipeline.stages import (
    Prepared,
    SideFeatures,
    StageTimings,
    assemble_shards,
    cache_key,
    embed_shard,
    embed_side,
    load_sides,
    prepare,
    score,
    shard_count,
)
from auditor.service.context import ServiceContext

log = logging.getLogger(__name__)

# Worth retrying: the database or the store was briefly unreachable.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    ConnectionError,
    TimeoutError,
    ServiceUnavailableError,
)
HEARTBEAT_INTERVAL_S = 5.0
_PROGRESS_EVERY_S = 0.5


class AuditCancelled(Exception):
    """Raised inside a stage when the audit's cancel flag is seen; the stage stops and records it."""


# --- progress, heartbeat, cancellation ------------------------------------------------------------------


class DatabaseProgress:
    """A :class:`~auditor.pipeline.progress.ProgressReporter` writing to the audit row, throttled.

    Every write (a stage's start and finish included) waits until :data:`_PROGRESS_EVERY_S` has passed
    since the previous one: a stage that takes longer shows up within half a second, and the many short
    stages of a small audit cost no transaction of their own. What is left unwritten is taken with
    :meth:`take_pending` into the stage's closing transaction, so the final progress is always recorded.
    Each write also reads the cancel flag, so a long stage stops soon after a cancel request.
    """

    def __init__(self, context: ServiceContext, audit_id: str, prefix: str = "") -> None:
        self.context = context
        self.audit_id = audit_id
        self.prefix = prefix
        self._stages: dict[str, dict[str, int | str | None]] = {}
        self._dirty: set[str] = set()
        self._last_write = time.monotonic()

    def start(self, stage: str, total: int | None = None) -> None:
        self._update(stage, done=0, total=total, state="running")

    def advance(self, stage: str, amount: int = 1) -> None:
        entry = self._stages.get(stage) or {"done": 0, "total": None, "state": "running"}
        self._update(stage, done=int(entry["done"] or 0) + amount, total=entry["total"], state="running")

    def finish(self, stage: str) -> None:
        entry = self._stages.get(stage) or {"done": 0, "total": None}
        total = entry["total"]
        self._update(stage, done=total if total is not None else entry["done"], total=total, state="done")

    def take_pending(self) -> dict[str, dict[str, int | str | None]]:
        """The stages changed since the last write (keys prefixed), now counted as written."""
        pending = {f"{self.prefix}{stage}": dict(self._stages[stage]) for stage in sorted(self._dirty)}
        self._dirty.clear()
        return pending

    def _update(self, stage: str, **entry: int | str | None) -> None:
        self._stages[stage] = entry
        self._dirty.add(stage)
        now = time.monotonic()
        if now - self._last_write < _PROGRESS_EVERY_S:
            return
        self._last_write = now
        with self.context.session() as session:
            cancelled = lifecycle.set_progress(session, self.audit_id, self.take_pending())
        if cancelled:
            raise AuditCancelled(self.audit_id)


@contextmanager
def heartbeat(
    context: ServiceContext, audit_id: str, interval_s: float = HEARTBEAT_INTERVAL_S
) -> Iterator[None]:
    """Refresh the audit's heartbeat from a background thread while the block runs.

    Long single steps (one big matrix product) report no progress for a while; the heartbeat says the
    worker is alive regardless, and stops the moment the worker dies, which is what the sweeper detects.
    """
    stop = threading.Event()
    # Several beats per timeout, so one slow write never makes a live worker look dead.
    interval_s = min(interval_s, context.settings.heartbeat_timeout_s / 3)

    def beat() -> None:
        while not stop.wait(interval_s):
            try:
                with context.session() as session:
                    lifecycle.heartbeat(session, audit_id)
            except Exception:  # a missed beat is not fatal; the next one may succeed
                log.warning("heartbeat of audit %s failed", audit_id, exc_info=True)

    thread = threading.Thread(target=beat, name=f"heartbeat-{audit_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval_s + 1)


# --- stages ---------------------------------------------------------------------------------------------


def start_audit(context: ServiceContext, audit_id: str) -> None:
    """Claim the audit, resolve its datasets, and fan out the embedding (or score at once)."""

    def stage(audit: Audit, prepared: Prepared) -> None:
        progress = DatabaseProgress(context, audit_id)
        loaded = load_sides(prepared.spec, progress, extractor=prepared.extractor, settings=context.settings)
        needed = [
            side
            for side in loaded
            if (key := cache_key(prepared.extractor, loaded[side], loaded["real"])) is not None
            and not context.store.has_array(key)
        ]
        # Large image/text sides are split into shards, one task each: more GPU workers, sooner done.
        shards = {side: shard_count(loaded[side], context.settings.embed_shard_size) for side in needed}
        plan = {"sides": needed, "shards": shards}
        if not needed:
            # Precomputed embeddings or every side cached: score here, nothing to hand over.
            _score(context, audit, prepared, plan=plan, loaded=loaded, progress=progress)
            return
        with context.session() as session:
            lifecycle.set_artifact(session, audit_id, "needed", plan, progress=progress.take_pending())
        dispatcher = context.require_dispatcher()
        for side in needed:
            for index in range(shards[side]):
                dispatcher.enqueue_embed(audit_id, side, index, shards[side])

    _run_stage(context, audit_id, "start", stage, claim=True)


def embed_audit_side(
    context: ServiceContext, audit_id: str, side: str, index: int = 0, count: int = 1
) -> None:
    """Embed one shard of one side into the artifact store; the last shard to finish hands over to
    scoring (the fan-in is recorded in SQL, so it survives a broker restart)."""

    def stage(audit: Audit, prepared: Prepared) -> None:
        loaded = load_sides(prepared.spec, extractor=prepared.extractor, settings=context.settings)
        if side not in loaded:
            raise BadInputError(f"audit {audit_id} has no {side!r} side")
        progress = DatabaseProgress(context, audit_id, prefix=f"embed:{side}:{index}:")
        seconds = embed_shard(
            prepared.extractor, loaded, side, index, count, store=context.store, progress=progress
        )
        with context.session() as session:
            artifacts = lifecycle.set_artifact(
                session,
                audit_id,
                f"shard:{side}:{index}",
                {"embed_s": round(seconds, 4), "worker": context.name},
                progress=progress.take_pending(),
            )
        needed = artifacts.get("needed") or {}
        shards = needed.get("shards") or {}
        # Under the row lock (PostgreSQL) exactly one finishing shard sees every shard recorded.
        if all(
            f"shard:{name}:{i}" in artifacts
            for name in needed.get("sides") or []
            for i in range(shards[name])
        ):
            context.require_dispatcher().enqueue_score(audit_id)

    _run_stage(context, audit_id, f"embed:{side}:{index}/{count}", stage)


def score_audit(context: ServiceContext, audit_id: str) -> None:
    """Compute metrics and the verdict from the stored features; record the result."""

    def stage(audit: Audit, prepared: Prepared) -> None:
        _score(context, audit, prepared, plan=(audit.artifacts or {}).get("needed") or {})

    _run_stage(context, audit_id, "score", stage)


def _score(
    context: ServiceContext,
    audit: Audit,
    prepared: Prepared,
    *,
    plan: dict[str, Any],
    loaded: dict[str, LoadedDataset] | None = None,
    progress: DatabaseProgress | None = None,
) -> None:
    """Score from the store (sides in ``plan`` were embedded by GPU workers) or from the data itself.

    ``loaded`` and ``progress`` carry over from ``start`` when it scores in the same task.
    """
    audit_id = audit.id
    progress = progress or DatabaseProgress(context, audit_id)
    timings = StageTimings()
    start = time.perf_counter()
    if loaded is None:
        loaded = load_sides(prepared.spec, extractor=prepared.extractor, settings=context.settings)
    timings.add("load_s", time.perf_counter() - start)
    artifacts = audit.artifacts or {}
    needed = set(plan.get("sides") or [])
    shards = plan.get("shards") or {}
    sides: dict[str, SideFeatures] = {}
    for side in loaded:
        key = cache_key(prepared.extractor, loaded[side], loaded["real"])
        if side in needed and key is not None:
            assemble_shards(context.store, key, int(shards.get(side, 1)))
        # Sides embedded by a GPU worker come from the store; the others (precomputed, tables) are read.
        sides[side] = embed_side(prepared.extractor, loaded, side, store=context.store, progress=progress)
        if side in needed:
            sides[side].from_cache = False
            sides[side].embed_s = sum(
                float(entry.get("embed_s") or 0.0)
                for name, entry in artifacts.items()
                if name.startswith(f"shard:{side}:") and isinstance(entry, dict)
            )
        timings.add("embed_s", sides[side].embed_s)
    result = score(
        prepared,
        loaded,
        sides,
        audit_id=audit_id,
        created_at=audit.created_at,
        generation=audit.generation,
        timings=timings,
        progress=progress,
        settings=context.settings,
    )
    # One closing transaction: the last progress, the cancel check, the result and its per-sample
    # diagnostics (written by this worker straight to SQL: nothing but the audit id crosses the broker).
    with context.session() as session:
        if lifecycle.set_progress(session, audit_id, progress.take_pending()):
            raise AuditCancelled(audit_id)
        queries.complete_audit(session, audit_id, result.document, result.report.to_dict(), result.artifacts)


def _run_stage(
    context: ServiceContext,
    audit_id: str,
    name: str,
    body: Callable[[Audit, Prepared], None],
    *,
    claim: bool = False,
) -> None:
    """Common frame of every stage: (claim,) load, check state, heartbeat, and record the outcome.

    ``claim``: take the audit first with :func:`lifecycle.claim_audit` (the ``start`` stage), in the
    same transaction as the load.
    """
    with context.session() as session:
        if claim:
            stale_after = timedelta(seconds=context.settings.heartbeat_timeout_s)
            if not lifecycle.claim_audit(session, audit_id, context.name, stale_after=stale_after):
                log.info(
                    "audit %s: not claimable (finished, cancelled or held by a live worker); skipped",
                    audit_id,
                )
                return
        audit = session.get(Audit, audit_id)
        if audit is None:
            log.warning("audit %s: %s task for an audit that does not exist; dropped", audit_id, name)
            return
        if audit.state != "running":
            log.info("audit %s is %s; %s task dropped", audit_id, audit.state, name)
            return
        if audit.cancel_requested:
            lifecycle.mark_cancelled(session, audit_id)
            return
        session.expunge(audit)
    try:
        spec = AuditSpec.model_validate(audit.spec)
        prepared = prepare(spec, resolve_devices=True, settings=context.settings)
        # dataset_scope: the stage's downloads are deleted when it ends (each stage resolves anew).
        with heartbeat(context, audit_id), dataset_scope():
            body(audit, prepared)
    except AuditCancelled:
        with context.session() as session:
            lifecycle.mark_cancelled(session, audit_id)
    except StorageFullError as exc:
        # Before TRANSIENT_ERRORS (it is a ServiceUnavailableError): a full store does not empty itself
        # within a retry's backoff, so the audit fails now, saying which store, rather than in minutes
        # as "transient_error". The artifact store left no partial entry (auditor.artifacts).
        _fail(context, audit_id, exc.code, f"{name}: {exc.message}")
    except TRANSIENT_ERRORS:
        raise
    except AuditorError as exc:
        _fail(context, audit_id, exc.code, exc.message)
    except torch.cuda.OutOfMemoryError as exc:
        _fail(context, audit_id, "out_of_memory", f"{name}: {exc}")
    except Exception as exc:
        log.exception("audit %s: %s failed", audit_id, name)
        _fail(context, audit_id, "internal_error", f"{name}: {type(exc).__name__}: {exc}")


def _fail(context: ServiceContext, audit_id: str, code: str, message: str) -> None:
    with context.session() as session:
        state = session.scalar(sa.select(Audit.state).where(Audit.id == audit_id))
        # A duplicate task failing late must not overwrite an audit that another run finished.
        if state in ("queued", "running"):
            queries.fail_audit(session, audit_id, code=code, message=message)


def fail_after_retries(context: ServiceContext, audit_id: str, exc: BaseException) -> None:
    """A transient error that outlived its retries: the audit fails with the reason, never hangs."""
    _fail(context, audit_id, "transient_error", f"gave up after retries: {type(exc).__name__}: {exc}")


# --- stuck audits ---------------------------------------------------------------------------------------


def sweep_stale(context: ServiceContext, *, max_attempts: int = 3) -> list[str]:
    """Requeue audits whose worker died (no heartbeat) and re-send queued audits whose message was lost.

    An audit that has already been started ``max_attempts`` times fails instead: a dataset that kills
    its worker every time (out of memory) must not loop forever. Safe to run from many processes.

    Requeue and message are one unit: the ``start`` message is sent inside the requeue's transaction,
    and if the broker refuses it the requeue rolls back, leaving the audit as it was (stale running, or
    queued and not re-sent), so the first sweep after the broker returns sends it. (Committing first
    marked it re-sent for a message that never existed, and the re-send backoff then held it back for
    up to 8 heartbeat timeouts after the outage: found with bench/bench_chaos.py's faults.) A worker
    that receives the message before the commit waits on the row lock, then claims the queued audit.
    A broker outage ends the sweep: the remaining audits wait for the next one.
    """
    timeout = timedelta(seconds=context.settings.heartbeat_timeout_s)
    with context.session() as session:
        stale = lifecycle.stale_audits(session, heartbeat_older_than=timeout, queued_older_than=timeout)
    requeued: list[str] = []
    for position, audit in enumerate(stale):
        audit_id, seen_heartbeat, attempts = audit.id, audit.heartbeat_at, audit.attempts
        try:
            with context.session() as session:
                row = session.get(Audit, audit_id)
                if row is None:
                    continue
                if attempts >= max_attempts:
                    queries.fail_audit(
                        session,
                        audit_id,
                        code="worker_lost",
                        message=f"no heartbeat from its worker after {attempts} attempts; giving up",
                    )
                    continue
                if not lifecycle.requeue_stale(session, row, seen_heartbeat=seen_heartbeat):
                    continue
                context.require_dispatcher().enqueue_start(audit_id)  # before the commit (see above)
        except ServiceUnavailableError:
            log.warning(
                "broker unreachable: %d stale audit(s) left for the next sweep", len(stale) - position
            )
            break
        requeued.append(audit_id)
    return requeued
