"""Real HTTP and HTTPS receivers on 127.0.0.1 standing in for Slack and PagerDuty.

Each receiver records every request (method, path, headers, JSON body) and answers from a script:
``receiver.script(500, 200)`` or ``receiver.script(Reply(429, {"Retry-After": "1"}), 202)``; once the
script is used up it answers ``default_status``. ``stop()`` closes the port (connection refused) and
``start()`` reopens the same port. Fixtures: ``http_receiver`` (Slack-like, 200 "ok") and
``https_receiver`` (PagerDuty-like, 202 JSON echoing the dedup_key, served with a trustme CA whose
certificate file is ``receiver.ca_file``). Use them with ``pytest_plugins = ("tests.receivers",)``.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0
    """Seconds to wait before answering (client timeouts)."""


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float
    """time.monotonic() when the request arrived."""
    raw: bytes = b""
    """The body's exact bytes (signatures are computed over them)."""


class Receiver:
    """A scripted HTTP(S) endpoint; thread-safe request log."""

    def __init__(
        self, *, default_status: int = 200, tls: ssl.SSLContext | None = None, pagerduty_style: bool = False
    ) -> None:
        self.default_status = default_status
        self.tls = tls
        self.pagerduty_style = pagerduty_style
        self.requests: list[Received] = []
        self._script: list[Reply] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.ca_file: Path | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def script(self, *replies: int | Reply) -> None:
        """Answer the next requests with these replies, in order."""
        with self._lock:
            self._script = [r if isinstance(r, Reply) else Reply(r) for r in replies]

    def next_reply(self, body: Any) -> Reply:
        with self._lock:
            if self._script:
                return self._script.pop(0)
        if self.pagerduty_style:
            key = body.get("dedup_key") if isinstance(body, dict) else None
            return Reply(
                self.default_status,
                body={"status": "success", "message": "Event processed", "dedup_key": key or "generated"},
            )
        return Reply(self.default_status, body="ok")

    def record(self, received: Received) -> None:
        with self._lock:
            self.requests.append(received)

    def bodies(self, path: str | None = None) -> list[Any]:
        with self._lock:
            return [r.body for r in self.requests if path is None or r.path == path]

    def start(self) -> None:
        server = _QuietServer(("127.0.0.1", self.port), _handler_for(self))
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up (timeouts, failed TLS handshakes) are part of the tests, not errors."""


def _handler_for(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            receiver.record(Received("POST", self.path, dict(self.headers.items()), body, time.monotonic(), raw))
            reply = receiver.next_reply(body)
            if reply.delay:
                time.sleep(reply.delay)
            payload = reply.body if reply.body is not None else ("ok" if reply.status < 300 else "error")
            data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            content_type = "text/plain" if isinstance(payload, str) else "application/json"
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Silence the default stderr access log."""

    return Handler


@pytest.fixture
def http_receiver() -> Iterator[Receiver]:
    """A Slack-like plain-HTTP receiver (answers 200 "ok" unless scripted)."""
    receiver = Receiver(default_status=200)
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def _trustme_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def https_receiver(_trustme_ca: trustme.CA, tmp_path: Path) -> Iterator[Receiver]:
    """A PagerDuty-like HTTPS receiver (202 + dedup_key) with a certificate from a test-only CA."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _trustme_ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    receiver = Receiver(default_status=202, tls=server_context, pagerduty_style=True)
    receiver.ca_file = tmp_path / "receiver-ca.pem"
    _trustme_ca.cert_pem.write_to_path(str(receiver.ca_file))
    receiver.start()
    yield receiver
    receiver.stop()
