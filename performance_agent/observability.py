"""Request ids, JSON logs, and the agent's own HTTP metrics and `/metrics` registry.

The request id is computed once per request, lazily, from whichever code needs it first (the
error handler, a log line, or the response hook), and cached in the ASGI scope: so 404s that
never reach a route handler carry the same id in their header and body.
"""

from __future__ import annotations

import contextvars
import logging
import math
import random
import re
import sys
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

import msgspec
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from performance_agent import __version__
from performance_agent.clock import utc

if TYPE_CHECKING:
    from collections.abc import Iterator

    from litestar.types import Scope

__all__ = (
    "REQUEST_ID_HEADER",
    "RequestMetrics",
    "agent_registry",
    "configure_logging",
    "current_request_id",
    "request_id_of",
)

REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_STATE_KEY = "performance_agent.request_id"
_current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
#: Request ids need to be unique, not secret: 128 bits from a generator seeded from os.urandom
#: cost a fifth of `uuid.uuid4()` (which reads the kernel's random source on every call).
_new_ids = random.Random()


class RequestMetrics:
    """Requests answered and their latency for one app, kept as plain numbers and read at scrape time.

    Why not prometheus_client's `Counter`/`Histogram` objects: every request would pay for their
    locks and label lookups (about a third of the edge's own cost on the health endpoint, whose
    budget is 0.8x a bare Litestar app). Every request is recorded on the event loop, and `/metrics`
    is served from the same loop, so plain dictionaries are consistent without locks.
    """

    BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self, registry: CollectorRegistry) -> None:
        self._answered: dict[tuple[str, str, int], int] = {}
        #: Per (route, method): per-bucket counts (the last slot is +Inf), then the sum of seconds.
        self._latency: dict[tuple[str, str], list[float]] = {}
        registry.register(self)

    def record(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        self._answered[key] = self._answered.get(key, 0) + 1
        slots = self._latency.get((route, method))
        if slots is None:
            slots = self._latency[(route, method)] = [0.0] * (len(self.BUCKETS) + 2)
        slots[bisect_left(self.BUCKETS, seconds)] += 1
        slots[-1] += seconds

    def answered(self, route: str, method: str, status: int) -> int:
        return self._answered.get((route, method, status), 0)

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        requests = CounterMetricFamily(
            "performance_agent_http_requests",
            "HTTP requests answered by the agent, by route template, method and status.",
            labels=("route", "method", "status"),
        )
        for (route, method, status), count in sorted(self._answered.items()):
            requests.add_metric((route, method, str(status)), count)
        yield requests
        latency = HistogramMetricFamily(
            "performance_agent_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method.",
            labels=("route", "method"),
        )
        for (route, method), slots in sorted(self._latency.items()):
            cumulative, buckets = 0.0, []
            for edge, in_bucket in zip((*self.BUCKETS, math.inf), slots, strict=False):
                cumulative += in_bucket
                buckets.append(("+Inf" if math.isinf(edge) else repr(edge), cumulative))
            latency.add_metric((route, method), buckets, slots[-1])
        yield latency


class _BuildInfo:
    """`performance_agent_build_info{version}` 1, produced at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "performance_agent_build_info", "Version of the running agent (value is always 1).", labels=("version",)
        )
        family.add_metric((__version__,), 1)
        yield family


def agent_registry() -> CollectorRegistry:
    """A new registry for one app: the build info and the process figures the default registry would show.

    Why not the process-wide default registry: two apps in one process (tests, benchmarks, an
    embedding host) would then count into and overwrite the same series.
    """
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(_BuildInfo())
    return registry


def request_id_of(scope: Scope) -> str:
    """The id of this request: the caller's `X-Request-ID` if well-formed, else a new one."""
    state: dict[str, Any] = scope.setdefault("state", {})
    cached = state.get(_STATE_KEY)
    if cached is not None:
        return str(cached)
    incoming = None
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            incoming = value.decode("latin-1")
            break
    if incoming is not None and _VALID_REQUEST_ID.fullmatch(incoming):
        request_id = incoming
    else:
        request_id = f"{_new_ids.getrandbits(128):032x}"
    state[_STATE_KEY] = request_id
    _current_request_id.set(request_id)
    return request_id


def current_request_id() -> str | None:
    return _current_request_id.get()


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request id when the line was logged inside a request."""

    _encoder = msgspec.json.Encoder()
    _skip = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": utc(record.created).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or _current_request_id.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in self._skip and key not in entry:
                entry[key] = value if isinstance(value, str | int | float | bool | type(None)) else repr(value)
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return self._encoder.encode(entry).decode()


def configure_logging(level: str) -> None:
    """JSON lines on stderr for the agent's own loggers and uvicorn's (one format for log shippers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("performance_agent", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
