"""The baseline for the HTTP benchmark: a bare Litestar app answering the same health route."""

from __future__ import annotations

import msgspec
from litestar import Litestar, get


class Health(msgspec.Struct):
    status: str
    version: str
    uptime_s: float


@get("/api/v1/health", sync_to_thread=False)
def health() -> Health:
    return Health(status="ok", version="0.0.0", uptime_s=0.0)


def create_app() -> Litestar:
    return Litestar(route_handlers=[health], openapi_config=None, logging_config=None)
