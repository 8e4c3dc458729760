"""Service benchmark: submit latency under load, and end-to-end audits per minute with 1 and 2 workers.

    python bench/bench_service.py [--rate 100] [--seconds 15] [--audits 24] [--out bench/RESULTS_service.md]

Everything real, on loopback: a private ``redis-server``, a fresh PostgreSQL database on the local
server (``AUDITOR_BENCH_PG``, default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres`` as
admin), ``auditor serve`` as a subprocess with the Celery dispatcher (the deployment mode), and
``auditor worker`` subprocesses.

1. Submit latency: after a 5 s warm-up at the same rate (excluded), ``POST /v1/audits`` fired
   open-loop at ``--rate`` requests/s for ``--seconds``
   (each request starts at its scheduled time whether or not earlier ones finished, so a slow server
   shows up as latency, not as a lower rate), no workers running (pure submit cost). p50/p99/max.
   Then closed-loop with 16 concurrent clients for the maximum sustained submit throughput.
2. Throughput: ``--audits`` small precomputed-embedding audits submitted at once, completed by 1 and
   then 2 CPU workers (``--pool solo``, one torch thread each: one worker per core is the deployment
   rule for CPU workers); audits per minute from first submit to last completion. The 1- and
   2-worker runs alternate ``--repeats`` times and the medians are compared, so a slow spell of the
   shared machine does not land on one side only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import sqlalchemy as sa

AUDITOR = str(Path(sys.executable).parent / "auditor")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


class Stack:
    def __init__(self, workdir: Path, api_workers: int = 1) -> None:
        self.workdir = workdir
        self.api_workers = api_workers
        self.processes: list[subprocess.Popen[bytes]] = []
        self.redis_port = free_port()
        self.api_port = free_port()
        admin = os.environ.get("AUDITOR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
        self.db_name = f"auditor_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{self.db_name}"')
        self.admin_url = admin
        self._poll_engine: sa.Engine | None = None
        base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        self.database_url = f"{base}/{self.db_name}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
        self.env.update(
            AUDITOR_DATABASE_URL=self.database_url,
            AUDITOR_BROKER_URL=f"redis://127.0.0.1:{self.redis_port}/0",
            AUDITOR_HOME=str(workdir / "home"),
            OMP_NUM_THREADS="1",
            PYTHONUNBUFFERED="1",
        )

    def spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        handle = (self.workdir / log).open("ab")
        process = subprocess.Popen(
            args, env=self.env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes.append(process)
        return process

    def start(self) -> str:
        redis_bin = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.spawn(
            [redis_bin, "--port", str(self.redis_port), "--save", "", "--appendonly", "no"], "redis.log"
        )
        subprocess.run([AUDITOR, "db", "upgrade"], env=self.env, check=True, capture_output=True)
        key = subprocess.run(
            [AUDITOR, "keys", "create", "--admin"], env=self.env, check=True, capture_output=True, text=True
        ).stdout.strip()
        serve = [AUDITOR, "serve", "--host", "127.0.0.1", "--port", str(self.api_port)]
        self.spawn([*serve, "--workers", str(self.api_workers)], "api.log")
        wait_until(lambda: httpx.get(f"{self.url}/readyz").status_code == 200, 60, "the API")
        return key

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start_worker(self, index: int) -> subprocess.Popen[bytes]:
        log = self.workdir / f"worker-{index}.log"
        # Logs are appended to across runs: only this start's "ready." counts.
        offset = log.stat().st_size if log.exists() else 0
        process = self.spawn([AUDITOR, "worker", "--queues", "cpu,gpu", "--pool", "solo"], log.name)
        wait_until(lambda: b"ready." in log.read_bytes()[offset:], 60, "a worker")
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    def close(self) -> None:
        if self._poll_engine is not None:
            self._poll_engine.dispose()
        for process in reversed(self.processes):
            self.stop(process)
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')

    @property
    def db(self) -> sa.Engine:
        # One kept connection: a new PostgreSQL connection per poll would fork a backend five times a
        # second, CPU taken from the workers being measured.
        if self._poll_engine is None:
            self._poll_engine = sa.create_engine(self.database_url, pool_size=1)
        return self._poll_engine

    def count_finished(self, ids: list[str]) -> int:
        with self.db.connect() as connection:
            query = sa.text(
                "SELECT count(*) FROM audits WHERE id = ANY(:ids) AND state IN ('succeeded','failed')"
            )
            return int(connection.execute(query, {"ids": ids}).scalar() or 0)

    def cancel_queued(self) -> None:
        with self.db.begin() as connection:
            connection.execute(
                sa.text(
                    "UPDATE audits SET state = 'cancelled', cancel_requested = true, "
                    "finished_at = now() WHERE state = 'queued'"
                )
            )
        self.flush_queue()

    def last_finished_at(self, ids: list[str]) -> float:
        with self.db.connect() as connection:
            query = sa.text("SELECT max(finished_at) FROM audits WHERE id = ANY(:ids)")
            return float(connection.execute(query, {"ids": ids}).scalar().timestamp())

    def flush_queue(self) -> None:
        import redis

        redis.Redis(port=self.redis_port).flushall()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class RawClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: one pre-encoded request, bytes out,
    status line and body in. The load generator shares the 2 cores with the server, so it must cost
    far less per request than the server does (httpx costs about as much as the endpoint itself)."""

    def __init__(self, port: int, request: bytes) -> None:
        self.port = port
        self.request = request
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self) -> int:
        return (await self.post_for_body())[0]

    async def post_for_body(self) -> tuple[int, bytes]:
        connection = self.idle.pop() if self.idle else await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = connection
        writer.write(self.request)
        status_line = await reader.readline()
        if not status_line:  # the server closed an idle keep-alive connection: reconnect once
            writer.close()
            reader, writer = connection = await asyncio.open_connection("127.0.0.1", self.port)
            writer.write(self.request)
            status_line = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await reader.readexactly(length)
        self.idle.append(connection)
        return int(status_line.split()[1]), body

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


def encode_submit(port: int, key: str, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body).encode()
    head = (
        f"POST /v1/audits HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def open_loop(port: int, key: str, body: dict[str, Any], rate: float, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    total = int(rate * seconds)
    client = RawClient(port, encode_submit(port, key, body))
    start = time.perf_counter()

    async def one(i: int) -> None:
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        t = time.perf_counter()
        status = await client.post()
        latencies.append(time.perf_counter() - t)
        statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(one(i) for i in range(total)))
    elapsed = time.perf_counter() - start
    client.close()
    return {
        "requests": total,
        "achieved_rate": total / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
        "statuses": statuses,
    }


async def closed_loop(
    port: int, key: str, body: dict[str, Any], clients: int, seconds: float
) -> dict[str, Any]:
    done = 0
    latencies: list[float] = []
    client = RawClient(port, encode_submit(port, key, body))
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            status = await client.post()
            latencies.append(time.perf_counter() - t)
            done += status == 202

    start = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(clients)))
    elapsed = time.perf_counter() - start
    client.close()
    return {
        "throughput": done / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def audits_per_minute(
    stack: Stack, key: str, body: dict[str, Any], workers: int, audits: int
) -> dict[str, Any]:
    stack.flush_queue()
    processes = [stack.start_worker(100 * workers + i) for i in range(workers)]

    async def submit_all() -> list[str]:
        # The raw client, not httpx: the submitting pipeline's own CPU would be taken from the workers.
        client = RawClient(stack.api_port, encode_submit(stack.api_port, key, body))
        replies = [await client.post_for_body() for _ in range(audits)]
        client.close()
        assert all(status == 202 for status, _ in replies), replies[:3]
        return [json.loads(reply)["id"] for _, reply in replies]

    with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        start = time.time()
        ids = asyncio.run(submit_all())
        wait_until(lambda: stack.count_finished(ids) == audits, 1800, "the audits")
        # From the first submit to the last finished_at the workers recorded (same machine, same
        # clock), not to when the 0.2 s poll noticed: the poll interval would be 5% of a 4 s run.
        elapsed = stack.last_finished_at(ids) - start
        states = [client.get(f"/v1/audits/{i}").json()["state"] for i in ids]
    for process in processes:
        stack.stop(process)
    return {
        "workers": workers,
        "audits": audits,
        "seconds": elapsed,
        "per_minute": audits / elapsed * 60,
        "succeeded": states.count("succeeded"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--audits", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3, help="Alternating 1- and 2-worker runs.")
    parser.add_argument("--n", type=int, default=1000, help="Samples per side of each throughput audit.")
    parser.add_argument("--api-workers", type=int, default=1, help="`auditor serve --workers`.")
    parser.add_argument("--out", type=Path, default=Path("bench/RESULTS_service.md"))
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="auditor-bench-"))
    rng = np.random.default_rng(0)
    np.save(workdir / "real.npy", rng.normal(size=(args.n, 64)).astype(np.float32))
    np.save(workdir / "synthetic.npy", (rng.normal(size=(args.n, 64)) + 0.2).astype(np.float32))
    body = {
        "real": {"uri": str(workdir / "real.npy")},
        "synthetic": {"uri": str(workdir / "synthetic.npy")},
        "params": {
            "metrics": ["fid", "precision", "recall", "density", "coverage"],
            "bootstrap": 50,
            "spectral_bootstrap": 5,
        },
    }
    stack = Stack(workdir, args.api_workers)
    try:
        key = stack.start()
        # Warm-up at the target rate, excluded: connection pools, threadpools and statement caches of
        # every API process fill up here, so the measurement is the steady state.
        asyncio.run(open_loop(stack.api_port, key, body, args.rate, 5))
        time.sleep(2)
        latency = asyncio.run(open_loop(stack.api_port, key, body, args.rate, args.seconds))
        print("open loop:", latency, flush=True)
        time.sleep(2)  # let the backlog drain
        half = asyncio.run(open_loop(stack.api_port, key, body, args.rate / 2, args.seconds))
        print("open loop, half rate:", half, flush=True)
        saturation = asyncio.run(closed_loop(stack.api_port, key, body, 16, 10))
        print("closed loop:", saturation, flush=True)
        # The thousands of audits the latency phases queued are not part of the throughput runs: the
        # sweeper would re-send them to the workers a minute later (a queued audit that old looks like
        # one whose message was lost). Retire them.
        stack.cancel_queued()
        runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        for _ in range(args.repeats):
            for workers in (1, 2):
                runs[workers].append(audits_per_minute(stack, key, body, workers, args.audits))
                print(f"{workers} worker(s):", runs[workers][-1], flush=True)
    finally:
        stack.close()

    medians = {w: statistics.median(r["per_minute"] for r in runs[w]) for w in runs}
    scaling = medians[2] / medians[1]
    latency_met = "met" if latency["p99_ms"] < 50 and args.rate >= 100 else "not met"
    scaling_met = "met" if scaling >= 1.8 else "not met"
    rows = [
        f"| {r['workers']} | {i + 1} | {r['seconds']:.2f} | {r['per_minute']:.1f} "
        f"| {r['succeeded']}/{r['audits']} |"
        for i in range(args.repeats)
        for r in (runs[1][i], runs[2][i])
    ]
    command = "python bench/bench_service.py " + " ".join(sys.argv[1:])
    lines = [
        "# Service benchmark",
        "",
        f"Command: `{command.strip()}`  ",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        "API, Redis, PostgreSQL, workers and the load generator all on this machine (loopback); "
        f"API processes: {args.api_workers}.",
        "",
        "## Submit latency (`POST /v1/audits`, open loop, no workers running)",
        "",
        "| target rate | achieved | requests | p50 | p99 | max | statuses |",
        "|---|---|---|---|---|---|---|",
        f"| {args.rate:.0f}/s | {latency['achieved_rate']:.1f}/s | {latency['requests']} "
        f"| {latency['p50_ms']:.1f} ms | {latency['p99_ms']:.1f} ms | {latency['max_ms']:.1f} ms "
        f"| {latency['statuses']} |",
        f"| {args.rate / 2:.0f}/s | {half['achieved_rate']:.1f}/s | {half['requests']} "
        f"| {half['p50_ms']:.1f} ms | {half['p99_ms']:.1f} ms | {half['max_ms']:.1f} ms "
        f"| {half['statuses']} |",
        "",
        f"Closed loop, 16 concurrent clients, 10 s: **{saturation['throughput']:.0f} submits/s** "
        f"(p50 {saturation['p50_ms']:.1f} ms, p99 {saturation['p99_ms']:.1f} ms).",
        "",
        f"Target p99 < 50 ms at 100 requests/s: **{latency_met}**.",
        "",
        f"## End-to-end audits per minute ({args.audits} audits, {args.n} x 64 precomputed embeddings "
        "per side, fid/precision/recall/density/coverage, 50 bootstrap replicates)",
        "",
        "| CPU workers | run | seconds | audits/min | succeeded |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Median audits/min: 1 worker {medians[1]:.1f}, 2 workers {medians[2]:.1f}. "
        f"Scaling 2 vs 1 worker: **{scaling:.2f}x** (target 1.8x: **{scaling_met}**).",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
