"""A real HTTP server on 127.0.0.1 whose answers each test scripts (pages, statuses, stalls, redirects).

Scrape tests talk to it over real sockets, so the agent's HTTP client, guard and timeouts are
exercised exactly as in production; nothing in httpx is mocked.
"""

from __future__ import annotations

import http.server
import ssl
import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from tests.paths import METRIC_PAGES

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ("Answer", "ScriptedServer", "fixture_page", "scripted_server")


def fixture_page(name: str) -> bytes:
    return (METRIC_PAGES / name).read_bytes()


@dataclass(slots=True)
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/plain; version=0.0.4"})
    stall: bool = False  # hold the connection open without answering until the server stops
    declared_length: int | None = None  # lie about Content-Length (None: the real length)
    close_delimited: bool = False  # no Content-Length: the body ends when the connection closes


class _QuietServer(http.server.ThreadingHTTPServer):
    """A client hanging up mid-answer (the agent refusing a page) is part of the script, not an error."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class ScriptedServer:
    def __init__(self, tls: tuple[str, str] | None = None) -> None:
        """`tls`: (certificate file, key file) to serve HTTPS."""
        self.routes: dict[str, Answer] = {}
        self.requests: list[dict[str, Any]] = []
        self.release = threading.Event()
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with server._lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers.items())})
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                try:
                    self._answer()
                finally:
                    with server._lock:
                        server.active -= 1

            def do_POST(self) -> None:
                """Webhook receivers: the body is read and dropped, the route's answer scripted as for GET."""
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.do_GET()

            def _answer(self) -> None:
                answer = server.routes.get(self.path, Answer(status=404, body=b"not found"))
                if answer.stall:
                    server.release.wait()
                    self.close_connection = True  # hang up without an answer
                    return
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                if answer.close_delimited:
                    self.close_connection = True
                    self.send_header("Connection", "close")
                else:
                    length = answer.declared_length if answer.declared_length is not None else len(answer.body)
                    self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def header_of(self, index: int, name: str) -> str | None:
        """A header of the `index`-th request received, matched case-insensitively."""
        headers: dict[str, str] = self.requests[index]["headers"]
        return next((value for key, value in headers.items() if key.lower() == name.lower()), None)

    def serve(self, path: str, body: bytes = b"", **options: Any) -> None:
        self.routes[path] = Answer(body=body, **options)

    def start(self) -> ScriptedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    server = ScriptedServer().start()
    yield server
    server.stop()
