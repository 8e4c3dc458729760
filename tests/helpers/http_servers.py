"""A real HTTP server on a loopback address for the remote-dataset tests: fixed replies per path (files,
redirects, bodies streamed without a length), and a record of every request it received, so a test can
assert that a refused URL was never fetched; and a webhook receiver (scripted statuses, every POST
recorded, requests held on demand)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_STREAM_BLOCK = 1 << 16


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up early (a refused download) is expected here, not worth a traceback."""


@dataclass
class Reply:
    """``body`` with its Content-Length; or ``stream`` zero bytes, generated as they are sent, with no
    Content-Length (the connection closes at the end) unless ``declared_length`` gives one (which also
    overrides a ``body``'s)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    stream: int = 0
    declared_length: int | None = None


class HttpServer:
    """``ThreadingHTTPServer`` on ``host`` (any 127.x address works on Linux), in a daemon thread."""

    def __init__(self, routes: dict[str, Reply] | None = None, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, Reply] = dict(routes or {})
        self.requests: list[tuple[str, str]] = []
        self.body_bytes_sent = 0
        self._lock = threading.Lock()
        self._server = _QuietServer((host, 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._server.server_address[0]}:{self.port}"

    def paths(self, method: str | None = None) -> list[str]:
        with self._lock:
            return [path for m, path in self.requests if method is None or m == method]

    def __enter__(self) -> HttpServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """Keep test output clean."""

            def do_HEAD(self) -> None:
                self._reply(send_body=False)

            def do_GET(self) -> None:
                self._reply(send_body=True)

            def _reply(self, *, send_body: bool) -> None:
                with server._lock:
                    server.requests.append((self.command, self.path))
                reply = server.routes.get(self.path.split("?", 1)[0])
                if reply is None:
                    reply = Reply(status=404, body=b"not found")
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.stream and reply.declared_length is None:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                else:
                    length = reply.declared_length if reply.declared_length is not None else len(reply.body)
                    self.send_header("Content-Length", str(length))
                self.end_headers()
                if not send_body:
                    return
                try:
                    if reply.stream:
                        left = reply.stream
                        block = bytes(_STREAM_BLOCK)
                        while left > 0:
                            chunk = block[: min(left, _STREAM_BLOCK)]
                            self.wfile.write(chunk)
                            left -= len(chunk)
                            with server._lock:
                                server.body_bytes_sent += len(chunk)
                    else:
                        self.wfile.write(reply.body)
                        with server._lock:
                            server.body_bytes_sent += len(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client stopped reading: what a cap does

        return Handler


@dataclass
class Received:
    """One POST a :class:`WebhookReceiver` received: path, headers (lower-case names), exact body."""

    path: str
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    """A loopback HTTP server that receives webhooks: it records every POST and answers the statuses
    of ``statuses`` in turn (the last one repeats). ``hold``: the first that many requests wait for
    :meth:`release` before they are answered (a sender can be killed mid-attempt); :attr:`arrived` is
    set as the first request arrives."""

    def __init__(self, statuses: list[int] | None = None, *, hold: int = 0, host: str = "127.0.0.1") -> None:
        self.statuses = list(statuses or [200])
        self.received: list[Received] = []
        self.hold = hold
        self.arrived = threading.Event()
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._server = _QuietServer((host, 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self._server.server_address[0]}:{self._server.server_address[1]}"

    def release(self) -> None:
        self._released.set()

    def bodies(self) -> list[dict[str, Any]]:
        import json

        with self._lock:
            return [json.loads(item.body) for item in self.received]

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """Keep test output clean."""

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    number = len(receiver.received)
                    receiver.received.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    status = receiver.statuses[min(number, len(receiver.statuses) - 1)]
                receiver.arrived.set()
                if number < receiver.hold:
                    receiver._released.wait(60)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the sender is gone (killed, or timed out)

        return Handler
