"""Chaos benchmark: audits keep arriving while workers are SIGKILLed and Redis is restarted.

    python bench/bench_chaos.py [--audits 200] [--rate 2.5] [--kills 5] [--redis-restarts 2] \
        [--redis-down-s 2] [--seed 0] [--deadline 300] [--out bench/RESULTS_chaos.md [--append]]

Everything real, on loopback, as bench_service.py sets it up: a fresh PostgreSQL database on the local
server (``AUDITOR_BENCH_PG``, default ``postgresql://postgres@127.0.0.1:5432/postgres`` as admin), a
private ``redis-server`` (its own port and data directory, append-only file on, so a restart on the same
port and directory finds what was persisted), ``auditor serve`` with the Celery dispatcher, and two
``auditor worker --pool solo`` processes, each one supervised: when it is killed it is started again.

``--audits`` small audits (300 x 16 float32 precomputed embeddings per side, fid / precision / recall /
coverage, 20 bootstrap replicates: about a tenth of a second each) are submitted open loop at
``--rate`` per second over HTTP, each with its own ``Idempotency-Key`` (a submit that errors is retried
with the same key, as a pipeline would). Spread over the submission window, in a seeded random order:

* ``--kills`` times: a random worker is SIGKILLed (its whole process group) *while it runs an audit*
  (the bench waits, up to 5 s, to catch it with one in the database as ``running``), and the
  supervisor starts a replacement at once;
* ``--redis-restarts`` times: Redis is stopped (the first time SIGTERM, a clean shutdown that writes
  the append-only file; after that SIGKILL, which loses up to a second of it), kept down for
  ``--redis-down-s``, and started again on the same port with the same data directory.

Then the bench waits until every accepted audit is final, at most ``--deadline`` seconds after the last
submit, and classifies each one from the database: succeeded, failed (with its error code), lost (the
API accepted it but the database has no such audit, or one in no known state) or stuck (still queued or
running at the deadline). Recovery after each fault, from the fault's time to finished_at values that
the workers recorded (same machine, same clock):

* next finish: until the first audit finishes after the fault (for Redis: after it is back up);
* interrupted: (kills) until the audit the killed worker was running is final;
* caught up: until every audit submitted before the fault ended is final (the backlog it caused is gone).

Recovery depends on the settings passed to the workers, and the defaults (heartbeat timeout 300 s,
sweep 30 s, visibility timeout 1 h) would make a run take hours; this bench sets
``AUDITOR_HEARTBEAT_TIMEOUT_S=3`` (a worker is presumed dead 3 s after its last heartbeat),
``AUDITOR_SWEEP_INTERVAL_S=1`` (every worker looks for such audits, and for queued audits whose message
was lost, every second) and ``AUDITOR_VISIBILITY_TIMEOUT_S=30`` (Redis redelivers an unacknowledged
message after 30 s; the SQL sweeper, not this, is what recovers an audit quickly). Override with
``--heartbeat-timeout``, ``--sweep-interval``, ``--visibility-timeout``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import platform
import random
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import redis
import sqlalchemy as sa

AUDITOR = str(Path(sys.executable).parent / "auditor")
FINAL = ("succeeded", "failed", "cancelled")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception:
            pass
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


class RedisProcess:
    """redis-server on a fixed port and data directory, restartable; persistence: append-only file."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        client = redis.Redis(port=self.port)
        wait_until(lambda: client.ping(), 20, "redis-server to start", interval=0.05)

    def stop(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(20)
        self.process = None


@dataclass
class Worker:
    slot: int
    process: subprocess.Popen[bytes]
    started: float  # wall clock
    ready: float

    @property
    def pid(self) -> int:
        return self.process.pid


class Stack:
    def __init__(self, workdir: Path, worker_settings: dict[str, str]) -> None:
        self.workdir = workdir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.redis = RedisProcess(workdir / "redis", free_port())
        self.api_port = free_port()
        admin = os.environ.get("AUDITOR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
        self.admin_url = admin
        self.db_name = f"auditor_chaos_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{self.db_name}"')
        base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        self.database_url = f"{base}/{self.db_name}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
        self.env.update(
            AUDITOR_DATABASE_URL=self.database_url,
            AUDITOR_BROKER_URL=self.redis.url,
            AUDITOR_HOME=str(workdir / "home"),
            OMP_NUM_THREADS="1",
            PYTHONUNBUFFERED="1",
            **worker_settings,
        )
        self.workers: dict[int, Worker] = {}
        self.worker_starts = 0
        self._engine: sa.Engine | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def db(self) -> sa.Engine:
        if self._engine is None:
            self._engine = sa.create_engine(self.database_url, pool_size=2, pool_pre_ping=True)
        return self._engine

    def spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        handle = (self.workdir / log).open("ab")
        process = subprocess.Popen(
            args, env=self.env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes.append(process)
        return process

    def start(self) -> str:
        self.redis.start()
        subprocess.run([AUDITOR, "db", "upgrade"], env=self.env, check=True, capture_output=True)
        key = subprocess.run(
            [AUDITOR, "keys", "create", "--admin"], env=self.env, check=True, capture_output=True, text=True
        ).stdout.strip()
        self.spawn([AUDITOR, "serve", "--host", "127.0.0.1", "--port", str(self.api_port)], "api.log")
        wait_until(lambda: httpx.get(f"{self.url}/readyz").status_code == 200, 60, "the API")
        return key

    def start_worker(self, slot: int) -> Worker:
        """Start the worker of ``slot`` (a new log per start) and wait until Celery says it is ready."""
        self.worker_starts += 1
        log = self.workdir / f"worker-{slot}-{self.worker_starts}.log"
        started = time.time()
        process = self.spawn([AUDITOR, "worker", "--queues", "cpu,gpu", "--pool", "solo"], log.name)
        wait_until(lambda: b"ready." in log.read_bytes() or process.poll() is not None, 120, "a worker", 0.05)
        if process.poll() is not None:
            raise RuntimeError(f"worker exited at start:\n{log.read_text()[-3000:]}")
        worker = Worker(slot, process, started, time.time())
        self.workers[slot] = worker
        return worker

    def worker_name(self, worker: Worker) -> str:
        return f"{socket.gethostname()}:{worker.pid}"

    def kill(self, worker: Worker) -> None:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.process.wait(10)

    def running_on(self, worker: Worker) -> list[str]:
        with self.db.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT id FROM audits WHERE state = 'running' AND worker = :w"),
                {"w": self.worker_name(worker)},
            )
            return [row[0] for row in rows]

    def count_final(self, ids: list[str]) -> int:
        with self.db.connect() as connection:
            query = sa.text("SELECT count(*) FROM audits WHERE id = ANY(:ids) AND state = ANY(:final)")
            return int(connection.execute(query, {"ids": ids, "final": list(FINAL)}).scalar() or 0)

    def rows(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        with self.db.connect() as connection:
            result = connection.execute(
                sa.text(
                    "SELECT id, state, error_code, error_message, attempts, created_at, finished_at "
                    "FROM audits WHERE id = ANY(:ids)"
                ),
                {"ids": ids},
            )
            rows = {row.id: dict(row._mapping) for row in result}
            events = connection.execute(
                sa.text("SELECT audit_id, message FROM audit_events WHERE audit_id = ANY(:ids)"),
                {"ids": ids},
            )
            for event in events:
                rows[event.audit_id].setdefault("messages", []).append(event.message or "")
            return rows

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        for process in reversed(self.processes):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(30)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
        self.redis.stop(signal.SIGTERM)
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')


@dataclass
class Submission:
    index: int
    key: str
    scheduled: float
    submitted: float | None = None  # wall clock of the accepting response
    audit_id: str | None = None
    tries: int = 0
    latency_s: float | None = None
    errors: list[str] = field(default_factory=list)


class Submitter:
    """Open-loop submits at a fixed rate from a few threads (a submit blocked on a down broker must not
    delay the next one), each retried with its Idempotency-Key for up to 60 s."""

    def __init__(self, url: str, key: str, body: dict[str, Any], audits: int, rate: float) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {key}"}
        self.body = body
        self.start = time.time() + 0.5
        self.submissions = [
            Submission(i, f"chaos-{uuid.uuid4().hex}", self.start + i / rate) for i in range(audits)
        ]
        self._local = threading.local()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="submit")
        self._futures: list[concurrent.futures.Future[None]] = []

    def _client(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(base_url=self.url, headers=self.headers, timeout=30)
        return client

    def _submit(self, submission: Submission) -> None:
        time.sleep(max(0.0, submission.scheduled - time.time()))
        first = time.time()
        while time.time() - first < 60:
            submission.tries += 1
            try:
                reply = self._client().post(
                    "/v1/audits", json=self.body, headers={"Idempotency-Key": submission.key}
                )
            except httpx.HTTPError as exc:
                submission.errors.append(f"{type(exc).__name__}: {exc}")
            else:
                if reply.status_code in (200, 201, 202):
                    submission.audit_id = reply.json()["id"]
                    submission.submitted = time.time()
                    submission.latency_s = submission.submitted - first
                    return
                submission.errors.append(f"HTTP {reply.status_code}: {reply.text[:200]}")
            time.sleep(0.5)

    def run(self) -> None:
        self._futures = [self._pool.submit(self._submit, s) for s in self.submissions]

    def join(self) -> None:
        concurrent.futures.wait(self._futures)
        self._pool.shutdown()

    @property
    def end(self) -> float:
        return self.submissions[-1].scheduled


@dataclass
class Fault:
    kind: str  # "kill" | "redis-term" | "redis-kill"
    at: float  # wall clock of the fault (the signal)
    detail: str = ""
    interrupted: list[str] = field(default_factory=list)
    back_at: float | None = None  # replacement ready / redis accepting connections again
    recovery: dict[str, float | None] = field(default_factory=dict)


def kill_a_worker(stack: Stack, rng: random.Random) -> Fault:
    slot = rng.choice(sorted(stack.workers))
    worker = stack.workers[slot]
    busy: list[str] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not busy:
        busy = stack.running_on(worker)
        if not busy:
            time.sleep(0.01)
    at = time.time()
    stack.kill(worker)
    fault = Fault("kill", at, f"worker {slot} (pid {worker.pid})", busy)
    replacement = stack.start_worker(slot)  # the supervisor: at once
    fault.back_at = replacement.ready
    fault.detail += f", replacement ready in {replacement.ready - at:.1f} s"
    return fault


def restart_redis(stack: Stack, sig: signal.Signals, down_s: float) -> Fault:
    at = time.time()
    stack.redis.stop(sig)
    time.sleep(down_s)
    stack.redis.start()
    fault = Fault("redis-term" if sig == signal.SIGTERM else "redis-kill", at)
    fault.back_at = time.time()
    fault.detail = f"{sig.name}, back after {fault.back_at - at:.1f} s"
    return fault


def ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def recoveries(faults: list[Fault], submissions: list[Submission], rows: dict[str, dict[str, Any]]) -> None:
    finished = sorted(t for row in rows.values() if (t := ts(row["finished_at"])) is not None)
    for fault in faults:
        after = fault.back_at if fault.kind.startswith("redis") and fault.back_at else fault.at
        nxt = next((t for t in finished if t > after), None)
        fault.recovery["next_finish_s"] = nxt - fault.at if nxt is not None else None
        if fault.interrupted:
            ends = [ts(rows[i]["finished_at"]) if i in rows else None for i in fault.interrupted]
            known = [t for t in ends if t is not None]
            fault.recovery["interrupted_s"] = (
                max(known) - fault.at if known and len(known) == len(ends) else None
            )
        end = fault.back_at or fault.at
        before = [s.audit_id for s in submissions if s.audit_id and s.submitted and s.submitted <= end]
        ends = [ts(rows[i]["finished_at"]) if i in rows else None for i in before]
        known = [t for t in ends if t is not None]
        fault.recovery["caught_up_s"] = (
            max(0.0, max(known) - fault.at) if known and len(known) == len(ends) else None
        )


def seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audits", type=int, default=200)
    parser.add_argument("--rate", type=float, default=2.5, help="Submits per second (open loop).")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--redis-restarts", type=int, default=2)
    parser.add_argument("--redis-down-s", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--deadline", type=float, default=300.0, help="Seconds after the last submit.")
    parser.add_argument("--heartbeat-timeout", type=float, default=3.0)
    parser.add_argument("--sweep-interval", type=float, default=1.0)
    parser.add_argument("--visibility-timeout", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=Path("bench/RESULTS_chaos.md"))
    parser.add_argument("--append", action="store_true", help="Append to --out instead of replacing it.")
    parser.add_argument("--title", default="Chaos benchmark", help="The report's heading.")
    parser.add_argument("--keep", action="store_true", help="Keep the work folder (logs).")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="auditor-chaos-"))
    data = np.random.default_rng(args.seed)
    np.save(workdir / "real.npy", data.normal(size=(300, 16)).astype(np.float32))
    np.save(workdir / "synthetic.npy", (data.normal(size=(300, 16)) + 0.1).astype(np.float32))
    body = {
        "project": "chaos",
        "real": {"uri": str(workdir / "real.npy")},
        "synthetic": {"uri": str(workdir / "synthetic.npy")},
        "params": {
            "metrics": ["fid", "precision", "recall", "coverage"],
            "bootstrap": 20,
            "spectral_bootstrap": 5,
        },
    }
    settings = {
        "AUDITOR_HEARTBEAT_TIMEOUT_S": str(args.heartbeat_timeout),
        "AUDITOR_SWEEP_INTERVAL_S": str(args.sweep_interval),
        "AUDITOR_VISIBILITY_TIMEOUT_S": str(args.visibility_timeout),
    }
    stack = Stack(workdir, settings)
    faults: list[Fault] = []
    try:
        key = stack.start()
        for slot in (0, 1):
            stack.start_worker(slot)
        plan = ["kill"] * args.kills + ["redis"] * args.redis_restarts
        rng.shuffle(plan)
        submitter = Submitter(stack.url, key, body, args.audits, args.rate)
        window = submitter.end - submitter.start
        # Faults evenly spread over the submission window, none in its first or last tenth.
        times = [submitter.start + window * (0.1 + 0.8 * i / max(1, len(plan) - 1)) for i in range(len(plan))]
        submitter.run()
        redis_signals = [signal.SIGTERM] + [signal.SIGKILL] * max(0, args.redis_restarts - 1)
        for kind, when in zip(plan, times, strict=True):
            time.sleep(max(0.0, when - time.time()))
            if kind == "kill":
                fault = kill_a_worker(stack, rng)
            else:
                fault = restart_redis(stack, redis_signals.pop(0), args.redis_down_s)
            faults.append(fault)
            print(f"{time.time() - submitter.start:6.1f} s  {fault.kind}: {fault.detail}", flush=True)
        submitter.join()
        ids = [s.audit_id for s in submitter.submissions if s.audit_id]
        last_submit = max(s.submitted or 0.0 for s in submitter.submissions)
        deadline = last_submit + args.deadline
        while time.time() < deadline and stack.count_final(ids) < len(ids):
            time.sleep(0.5)
        settled = time.time()
        rows = stack.rows(ids)
    finally:
        stack.close()

    recoveries(faults, submitter.submissions, rows)
    outcome: dict[str, int] = {"succeeded": 0, "failed": 0, "lost": 0, "stuck": 0}
    reasons: dict[str, int] = {}
    stuck: list[str] = []
    lost: list[str] = []
    for audit_id in ids:
        row = rows.get(audit_id)
        if row is None or row["state"] not in (*FINAL, "queued", "running"):
            outcome["lost"] += 1
            lost.append(audit_id)
        elif row["state"] in ("queued", "running"):
            outcome["stuck"] += 1
            stuck.append(f"{audit_id} ({row['state']}, attempts {row['attempts']})")
        elif row["state"] == "succeeded":
            outcome["succeeded"] += 1
        else:
            outcome["failed"] += 1
            reason = f"{row['state']}: {row['error_code']}: {row['error_message']}"
            reasons[reason] = reasons.get(reason, 0) + 1
    not_accepted = [s for s in submitter.submissions if s.audit_id is None]
    retried = [s for s in submitter.submissions if s.tries > 1]
    latencies = [s.latency_s for s in submitter.submissions if s.latency_s is not None]
    messages = [m for row in rows.values() for m in row.get("messages", [])]
    requeued = sum("requeued: no heartbeat" in m for m in messages)
    resent = sum("re-sent" in m for m in messages)
    attempts = [row["attempts"] for row in rows.values()]
    first_submit = min(s.submitted or float("inf") for s in submitter.submissions)
    last_finish = max((ts(r["finished_at"]) or 0.0) for r in rows.values()) if rows else first_submit

    command = "python bench/bench_chaos.py " + shlex.join(sys.argv[1:])
    verdict = "met" if outcome["lost"] == 0 and outcome["stuck"] == 0 and not not_accepted else "NOT met"
    fault_rows = []
    for i, fault in enumerate(faults, 1):
        interrupted = ", ".join(a[:8] for a in fault.interrupted) or "none running"
        fault_rows.append(
            f"| {i} | {fault.at - submitter.start:.1f} s | {fault.kind} | {fault.detail} | {interrupted} "
            f"| {seconds(fault.recovery.get('next_finish_s'))} "
            f"| {seconds(fault.recovery.get('interrupted_s')) if fault.kind == 'kill' else '—'} "
            f"| {seconds(fault.recovery.get('caught_up_s'))} |"
        )
    heading = "##" if args.append else "#"
    sub = "###" if args.append else "##"
    lines = [
        f"{heading} {args.title}",
        "",
        f"Command: `{command.strip()}`  ",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs (shared with other work), Python "
        f"{platform.python_version()}; API (`auditor serve`, Celery dispatcher), Redis "
        f"{redis_version()}, PostgreSQL, 2 `auditor worker --pool solo` and the load generator all on "
        "this machine (loopback).  ",
        f"Worker settings: `AUDITOR_HEARTBEAT_TIMEOUT_S={args.heartbeat_timeout:g}`, "
        f"`AUDITOR_SWEEP_INTERVAL_S={args.sweep_interval:g}`, "
        f"`AUDITOR_VISIBILITY_TIMEOUT_S={args.visibility_timeout:g}` (the defaults, 300 / 30 / 3600, "
        "would stretch every recovery to minutes; see bench/README.md).",
        "",
        f"{args.audits} audits (300 x 16 float32 precomputed embeddings per side, fid / precision / "
        f"recall / coverage, 20 bootstrap replicates) submitted at {args.rate:g}/s with an "
        f"Idempotency-Key each; {args.kills} worker SIGKILLs mid-audit (each worker restarted at once) "
        f"and {args.redis_restarts} Redis restarts (down {args.redis_down_s:g} s, same port and "
        "append-only data directory).",
        "",
        f"{sub} Outcome",
        "",
        "| accepted | succeeded | failed | lost | stuck | not accepted |",
        "|---|---|---|---|---|---|",
        f"| {len(ids)}/{args.audits} | {outcome['succeeded']} | {outcome['failed']} | {outcome['lost']} "
        f"| {outcome['stuck']} | {len(not_accepted)} |",
        "",
        f"Required: 0 lost, 0 stuck: **{verdict}**.",
        "",
        *(
            ["Failure reasons: " + "; ".join(f"{n} x {r}" for r, n in sorted(reasons.items())), ""]
            if reasons
            else []
        ),
        *([f"Stuck: {', '.join(stuck)}", ""] if stuck else []),
        *([f"Lost: {', '.join(lost)}", ""] if lost else []),
        f"First submit to last finish: {last_finish - first_submit:.1f} s; all final "
        f"{max(0.0, settled - last_submit):.1f} s after the last submit (deadline {args.deadline:g} s). "
        f"Audits requeued by the sweeper after a lost heartbeat: {requeued}; queued audits re-sent "
        f"(message lost or late): {resent}; attempts per audit: max {max(attempts, default=0)}, "
        f"{sum(a > 1 for a in attempts)} audits with more than one. Submits retried: {len(retried)}; "
        f"submit time (first try to acceptance) median {statistics.median(latencies) * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms.",
        "",
        f"{sub} Faults and recovery",
        "",
        "Times from the fault (the signal). Next finish: the first audit finished after the fault (Redis: "
        "after it was back). Interrupted: the audit the killed worker was running, until final. Caught "
        "up: every audit submitted before the fault ended (Redis back, replacement worker ready) is "
        "final.",
        "",
        "| # | at | fault | detail | interrupted audit | next finish | interrupted | caught up |",
        "|---|---|---|---|---|---|---|---|",
        *fault_rows,
        "",
    ]
    if args.append and args.out.exists():
        with args.out.open("a") as handle:
            handle.write("\n" + "\n".join(lines))
    else:
        args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    if args.keep:
        print(f"work folder kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    if verdict != "met":
        sys.exit(1)


def redis_version() -> str:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    return next((part.removeprefix("v=") for part in out.split() if part.startswith("v=")), "?")


if __name__ == "__main__":
    main()
