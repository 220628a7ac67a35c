"""Request ids, JSON logs and the agent's own Prometheus metrics.

The request id is computed once per request, lazily, from whichever code needs it first (the
error handler, a log line, or the response hook), and cached in the ASGI scope: so 404s that
never reach a route handler carry the same id in their header and body.
"""

from __future__ import annotations

import contextvars
import logging
import random
import re
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from litestar.types import Scope

__all__ = (
    "REQUESTS",
    "REQUEST_ID_HEADER",
    "REQUEST_LATENCY",
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

REQUESTS = Counter(
    "performance_agent_http_requests_total",
    "HTTP requests answered by the agent, by route template, method and status.",
    ("route", "method", "status"),
)
REQUEST_LATENCY = Histogram(
    "performance_agent_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template and method.",
    ("route", "method"),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BUILD_INFO = Gauge("performance_agent_build_info", "Version of the running agent (value is always 1).", ("version",))


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
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
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
