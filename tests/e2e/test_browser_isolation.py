"""The browser helper really cuts the page off from every host but 127.0.0.1.

An offline docs test is only worth something if the browser could not have fetched a CDN
asset. The machine itself may reach some outside hosts, so the isolation is proven locally:
``localhost`` (a name other than 127.0.0.1) and 127.0.0.2 (another loopback address) stand in
for the internet; both answer when isolation is off and must be unreachable when it is on.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import pytest

from tests.browser import BrowserError, outside_requests, render_page, take_screenshot, visible_text

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@dataclass
class HitLog:
    paths: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str) -> None:
        with self.lock:
            self.paths.append(path)


@dataclass(frozen=True)
class ProbeServer:
    host: str
    port: int
    hits: HitLog

    def url(self, path: str, host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"


PROBE_PAGE = """<!DOCTYPE html><html><body><pre id="out">pending</pre><script>
const targets = %s;
const attempt = t => fetch(t, {mode: "no-cors", cache: "no-store"}).then(() => t + " reached", () => t + " blocked");
Promise.all(targets.map(attempt))
  .then(lines => { document.getElementById("out").textContent = lines.join(" | "); });
</script></body></html>"""


def start_server(host: str, page: list[str]) -> tuple[ThreadingHTTPServer, ProbeServer]:
    hits = HitLog()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.add(self.path)
            if self.path == "/probe.html":
                targets = "[" + ", ".join(f'"{target}"' for target in page) + "]"
                body = (PROBE_PAGE % targets).encode()
                content_type = "text/html; charset=utf-8"
            else:
                body, content_type = b"ok", "text/plain"
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer((host, 0), Handler)
    return server, ProbeServer(host=host, port=server.server_address[1], hits=hits)


@dataclass(frozen=True)
class ProbeSetup:
    local: ProbeServer
    other_loopback: ProbeServer
    targets: list[str]


@pytest.fixture
def probe_setup() -> Iterator[ProbeSetup]:
    targets: list[str] = []
    local_server, local = start_server("127.0.0.1", targets)
    other_server, other = start_server("127.0.0.2", targets)
    targets.extend(
        [
            local.url("/allowed"),
            local.url("/by-name", host="localhost"),
            other.url("/other-address"),
        ]
    )
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (local_server, other_server)]
    for thread in threads:
        thread.start()
    try:
        yield ProbeSetup(local=local, other_loopback=other, targets=targets)
    finally:
        for server in (local_server, other_server):
            server.shutdown()
            server.server_close()


def outcome(text: str, target: str) -> str:
    for line in text.split(" | "):
        if line.startswith(target + " "):
            return line.rsplit(" ", 1)[1]
    raise AssertionError(f"{target} missing from the probe page's output: {text!r}")


def test_isolated_browser_reaches_only_127_0_0_1(probe_setup: ProbeSetup) -> None:
    allowed, by_name, other_address = probe_setup.targets
    page = render_page(probe_setup.local.url("/probe.html"))
    text = visible_text(page.dom)
    assert outcome(text, allowed) == "reached"
    assert outcome(text, by_name) == "blocked"
    assert outcome(text, other_address) == "blocked"
    assert probe_setup.other_loopback.hits.paths == []
    assert "/by-name" not in probe_setup.local.hits.paths
    # The blocked attempts still show in the net log, so outside_requests() catches a page that tries.
    assert sorted(outside_requests(page.page_requests)) == sorted([by_name, other_address])


def test_without_isolation_the_same_targets_are_reachable(probe_setup: ProbeSetup) -> None:
    """Proves the test above fails when the isolation flags are missing."""
    allowed, by_name, other_address = probe_setup.targets
    page = render_page(probe_setup.local.url("/probe.html"), block_outside_network=False)
    text = visible_text(page.dom)
    assert [outcome(text, target) for target in (allowed, by_name, other_address)] == ["reached"] * 3
    assert probe_setup.other_loopback.hits.paths == ["/other-address"]


def test_screenshot_is_a_png_of_the_page(probe_setup: ProbeSetup, tmp_path: Path) -> None:
    shot = take_screenshot(probe_setup.local.url("/probe.html"), tmp_path / "probe.png", window_size=(640, 480))
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "/probe.html" in probe_setup.local.hits.paths


def test_page_that_cannot_load_raises() -> None:
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        closed_port = reserved.getsockname()[1]
        # Bound but not listening: connections are refused while we hold the port.
        with pytest.raises(BrowserError, match="ERR_CONNECTION_REFUSED"):
            render_page(f"http://127.0.0.1:{closed_port}/schema/redoc")
