"""Real services for the API and worker tests: a private redis-server, uvicorn, Celery worker processes.

Each test session starts its own ``redis-server`` on a free port (so a test may restart it without
disturbing anything else on the machine), the API runs in a real uvicorn server on loopback, and
workers are ``auditor worker`` subprocesses (not threads, not eager mode), so killing one is real.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import redis
import uvicorn

REPO = Path(__file__).resolve().parents[2]
AUDITOR_BIN = Path(sys.executable).parent / "auditor"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition, timeout: float, what: str, interval: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class RedisServer:
    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        wait_for(lambda: _pings(client), 10, "redis-server to start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


class ApiServer:
    """``create_app(context)`` served by uvicorn on a free loopback port, in a thread."""

    def __init__(self, app: object) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")  # type: ignore[arg-type]
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ApiServer:
        self.thread.start()
        wait_for(lambda: self.server.started, 15, "uvicorn to start")
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class WorkerProcess:
    """``auditor worker`` as a subprocess with the given environment; its log goes to a file."""

    def __init__(self, env: dict[str, str], log_path: Path, queues: str = "cpu,gpu") -> None:
        self.env = env
        self.log_path = log_path
        self.queues = queues
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        handle = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(AUDITOR_BIN), "worker", "--queues", self.queues, "--pool", "solo", "--loglevel", "INFO"],
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
        wait_for(
            lambda: b"ready." in self.log_path.read_bytes() or self._died(), 60, "the worker to be ready"
        )
        if self._died():
            raise AssertionError(f"worker exited at start:\n{self.log_path.read_text()[-3000:]}")
        return self

    def _died(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def kill(self) -> None:
        """SIGKILL the whole process group: no warm shutdown, no acknowledgement, no cleanup."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def service_env(database_url: str, broker_url: str, home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
    env.update(
        AUDITOR_DATABASE_URL=database_url,
        AUDITOR_BROKER_URL=broker_url,
        AUDITOR_HOME=str(home),
        AUDITOR_ARTIFACT_ROOT=str(home / "artifacts"),
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def write_embeddings(
    directory: Path, *, n: int = 300, d: int = 16, shift: float = 0.0, seed: int = 0
) -> dict[str, str]:
    """A real/synthetic pair of Gaussian embeddings; returns their paths."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    real, synthetic = directory / "real.npy", directory / f"synthetic-{shift}.npy"
    np.save(real, rng.normal(size=(n, d)).astype(np.float32))
    np.save(synthetic, (rng.normal(size=(n, d)) + shift).astype(np.float32))
    return {"real": str(real), "synthetic": str(synthetic)}
