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
#: cost a fifth of `uuid.uuid4()` (which reads the kernel's random source on every call). They are
#: made 256 at a time and handed out by `list.pop()`: a request then costs one C call, where
#: drawing and formatting its own id was a tenth of the health endpoint's whole budget.
_new_ids = random.Random()
_ID_BATCH = 256
_spare_ids: list[str] = []


def _more_ids() -> str:
    block = _new_ids.randbytes(16 * _ID_BATCH).hex()
    _spare_ids.extend(block[start : start + 32] for start in range(32, len(block), 32))
    return block[:32]


class RequestMetrics:
    """Requests answered and their latency for one app, kept as plain numbers and read at scrape time.

    Why not prometheus_client's `Counter`/`Histogram` objects: every request would pay for their
    locks and label lookups (about a third of the edge's own cost on the health endpoint, whose
    budget is 0.8x a bare Litestar app). Every request is recorded on the event loop, and `/metrics`
    is served from the same loop, so plain dictionaries are consistent without locks.
    """

    BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self, registry: CollectorRegistry) -> None:
        #: Per (route, method, status): per-bucket counts (the last bucket is +Inf), then the sum of
        #: seconds. One table, so a request costs one lookup; the counter and the histogram (which
        #: has no status label) are both summed from it at scrape time.
        self._series: dict[tuple[str, str, int], list[float]] = {}
        registry.register(self)

    def record(self, route: str, method: str, status: int, seconds: float) -> None:
        slots = self._series.get((route, method, status))
        if slots is None:
            slots = self._series[(route, method, status)] = [0.0] * (len(self.BUCKETS) + 2)
        slots[bisect_left(self.BUCKETS, seconds)] += 1
        slots[-1] += seconds

    def answered(self, route: str, method: str, status: int) -> int:
        slots = self._series.get((route, method, status))
        return 0 if slots is None else int(sum(slots[:-1]))

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        requests = CounterMetricFamily(
            "performance_agent_http_requests",
            "HTTP requests answered by the agent, by route template, method and status.",
            labels=("route", "method", "status"),
        )
        by_route: dict[tuple[str, str], list[float]] = {}
        for (route, method, status), slots in sorted(self._series.items()):
            requests.add_metric((route, method, str(status)), sum(slots[:-1]))
            total = by_route.setdefault((route, method), [0.0] * len(slots))
            for position, value in enumerate(slots):
                total[position] += value
        yield requests
        latency = HistogramMetricFamily(
            "performance_agent_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method.",
            labels=("route", "method"),
        )
        for (route, method), slots in by_route.items():
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
        request_id = _spare_ids.pop() if _spare_ids else _more_ids()
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
