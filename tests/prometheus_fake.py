"""A small fake of the Prometheus HTTP API on 127.0.0.1, for API tests over real sockets.

It serves instant queries (`/api/v1/query`) and series lists (`/api/v1/series`) under any path
prefix (Mimir's `/prometheus`) from scripted series, evaluating only what the agent sends: a
selector of equality matchers plus a `__name__=~` regex. Each request's path, form and headers
are recorded. Scripted failures (a status with an error body, a stall) replace the answer.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import pytest

from performance_agent.metrics.exposition import parse_page
from tests.unit.test_exposition_properties import render_value as go_float  # Go's float text, as in the API

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ("Failure", "FakePrometheus", "fake_prometheus", "go_float", "vector_of_page")

_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)(=~|!~|!=|=)"((?:[^"\\]|\\.)*)"')


def vector_of_page(page_text: str, target_labels: dict[str, str]) -> list[tuple[dict[str, str], float]]:
    """Every sample of an exposition page as Prometheus stores it after scraping it with `target_labels`, and `up`."""
    page = parse_page(page_text)
    series: list[tuple[dict[str, str], float]] = [({"__name__": "up", **target_labels}, 1.0)]
    for name, samples in page.series.items():
        for sample in samples:
            series.append(({"__name__": name, **sample.labels, **target_labels}, sample.value))
    return series


@dataclass(slots=True)
class Failure:
    status: int = 200
    body: bytes = b""
    stall: bool = False


@dataclass(slots=True)
class FakePrometheus:
    series: list[tuple[dict[str, str], float]] = field(default_factory=list)
    failure: Failure | None = None
    #: How long before each query the fake's target was scraped (None: answer without the scrape time).
    scraped_ago_s: float | None = 0.25
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def selected(self, selector: str) -> list[tuple[dict[str, str], float]]:
        matchers = _MATCHER.findall(selector)
        chosen = []
        for labels, value in self.series:
            if all(
                _matches(labels.get(name, ""), op, text.replace('\\"', '"').replace("\\\\", "\\"))
                for name, op, text in matchers
            ):
                chosen.append((labels, value))
        return chosen

    def answer(self, path: str, form: dict[str, list[str]]) -> tuple[int, bytes]:
        if self.failure is not None:
            return self.failure.status, self.failure.body
        if path.endswith("/api/v1/query"):
            when = float(form["time"][0])
            # The agent's query: a selector, then `or` the scrape time of the selected `up` series.
            selector, _, scrape_time = form["query"][0].partition(" or ")
            chosen = self.selected(selector)
            result = [{"metric": labels, "value": [when, go_float(value)]} for labels, value in chosen]
            if scrape_time.startswith("label_replace(timestamp(") and self.scraped_ago_s is not None:
                result += [
                    {
                        "metric": {
                            **{k: v for k, v in labels.items() if k != "__name__"},
                            "perf_agent_reading": "scraped_at",
                        },
                        "value": [when, go_float(when - self.scraped_ago_s)],
                    }
                    for labels, _ in chosen
                    if labels["__name__"] == "up"
                ]
            data: Any = {"resultType": "vector", "result": result}
        elif path.endswith("/api/v1/series"):
            seen: list[dict[str, str]] = []
            for selector in form["match[]"]:
                seen.extend(labels for labels, _ in self.selected(selector) if labels not in seen)
            data = seen
        else:
            return 404, b"404 page not found"
        return 200, json.dumps({"status": "success", "data": data}).encode()


def _matches(value: str, op: str, text: str) -> bool:
    if op == "=":
        return value == text
    if op == "!=":
        return value != text
    found = re.fullmatch(text, value) is not None
    return found if op == "=~" else not found


@pytest.fixture
def fake_prometheus() -> Iterator[FakePrometheus]:
    fake = FakePrometheus()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(length).decode())
            fake.requests.append({"path": self.path, "form": form, "headers": dict(self.headers.items())})
            if fake.failure is not None and fake.failure.stall:
                fake.release.wait(10)
                return
            status, body = fake.answer(self.path, form)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.release.set()
    server.shutdown()
    server.server_close()
