"""The one layer every HTTP request passes: request id, rate limit and request metrics.

It wraps Litestar's whole ASGI handler (router and exception middleware included) rather than
sitting in a route's middleware stack, for two reasons:

* It sees every request, the ones the router refuses too: a flood of 404s or 405s is counted
  against its sender like any other request (issue 13), and is counted in the request metrics.
* It is cheap. The health endpoint's budget is 0.8x the throughput of a bare Litestar app; as a
  route middleware this layer cost a second exception-handling layer per request, and the
  request id header a `before_send` hook that copied every response's headers. Here one plain
  ASGI call does all of it (see docs/benchmarks.md for the figures).

Authentication stays at the route (`security.access_check`), where the handler's `opt` is known.

Which requests count against the caller's budget:
* every request under `/api/v1` except a GET of the health probes (`EXEMPT_PROBES`),
  counted before it is handled, so the 429 is answered without touching the route;
* any other request whose answer is 401, 404 or 405 (a scanner probing `/admin`, a POST to a
  probe), counted when the answer starts; an answer past the budget becomes the 429.
"""

from __future__ import annotations

import ipaddress
from time import perf_counter
from typing import TYPE_CHECKING

import msgspec
from litestar.enums import ScopeType

from performance_agent.errors import ApiError, envelope_of
from performance_agent.observability import request_id_of
from performance_agent.ratelimit import RateLimiter, WindowState, client_identity

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from litestar import Litestar
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from performance_agent.observability import RequestMetrics
    from performance_agent.security import ApiKeyRing

__all__ = ("API_PREFIX", "COUNTED_REFUSALS", "EXEMPT_PROBES", "EdgeMiddleware", "install_edge")

API_PREFIX = "/api/v1"
#: Liveness and readiness probes: orchestrators call them constantly, so they never count.
EXEMPT_PROBES = frozenset({f"{API_PREFIX}/health", f"{API_PREFIX}/health/ready", f"{API_PREFIX}/health/detailed"})
#: Answers that cost the caller budget even on paths that are otherwise free.
COUNTED_REFUSALS = frozenset({401, 404, 405})
_API_PATHS = API_PREFIX + "/"
_JSON = (b"content-type", b"application/json")
#: Methods named as themselves in the request metrics; any other token a client sends is `OTHER`,
#: so a scanner cannot grow the label set.
_METRIC_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class EdgeMiddleware:
    """Wraps an ASGI app (Litestar's `asgi_handler`); see the module docstring.

    Every request pays for this layer, the health probe included, so the hot path is written for
    the interpreter: no per-request method lookups or property calls, and a send wrapper that is a
    plain function handing back `send`'s own awaitable rather than a coroutine of its own (an
    extra coroutine per ASGI message was a third of this layer's cost).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: RateLimiter,
        ring: ApiKeyRing,
        trusted_proxies: list[str],
        metrics: RequestMetrics,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.limiter = limiter
        self.ring = ring
        self.trusted = [ipaddress.ip_network(cidr, strict=False) for cidr in trusted_proxies]
        self._encoder = msgspec.json.Encoder()
        self._limited = limiter.enabled  # the windows are fixed when the limiter is built
        self._record = metrics.record

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        request_id = request_id_of(scope)  # also binds the id to this task's log context
        method: str = scope["method"]
        extra_headers = [(b"x-request-id", request_id.encode("latin-1"))]
        limited = self._limited
        if limited:
            path: str = scope["path"]
            if (method != "GET") if path in EXEMPT_PROBES else (path == API_PREFIX or path.startswith(_API_PATHS)):
                limited = False  # counted once, here
                allowed, state = self.limiter.hit(client_identity(scope, self.ring, self.trusted))
                if not allowed:
                    await self._refuse(scope, send, state, request_id)
                    self._finish(scope, method, 429, started)
                    return
                extra_headers += self._headers(state)
        status = 500
        replaced = False

        def edge_send(message: Message) -> Awaitable[None]:
            nonlocal status, replaced
            if message["type"] == "http.response.start":
                status = message["status"]
                if limited and status in COUNTED_REFUSALS:
                    allowed, state = self.limiter.hit(client_identity(scope, self.ring, self.trusted))
                    if not allowed:
                        replaced, status = True, 429
                        return self._refuse(scope, send, state, request_id)
                message["headers"] = [*message.get("headers", ()), *extra_headers]
            elif replaced:
                return _nothing()  # the body of the answer the 429 replaced
            return send(message)

        try:
            await self.app(scope, receive, edge_send)
        finally:
            # The route template, set by Litestar's router, keeps the label set bounded; unmatched
            # paths share one. Inline rather than `_finish`: one call less on every request.
            self._record(
                scope.get("path_template") or "unmatched",
                method if method in _METRIC_METHODS else "OTHER",
                status,
                perf_counter() - started,
            )

    def _headers(self, state: WindowState) -> list[tuple[bytes, bytes]]:
        return [
            (b"ratelimit-limit", str(state.limit).encode()),
            (b"ratelimit-remaining", str(state.remaining).encode()),
            (b"ratelimit-reset", str(state.reset_s).encode()),
            (b"ratelimit-policy", self.limiter.policy.encode()),
        ]

    async def _refuse(self, scope: Scope, send: Send, state: WindowState, request_id: str) -> None:
        """The 429 in the standard envelope, answered here without entering Litestar."""
        error = ApiError(
            f"Rate limit of {state.limit} requests per {state.window_s} s exceeded; retry in {state.reset_s} s.",
            error="rate_limited",
            status_code=429,
            context={"limit": state.limit, "window_s": state.window_s, "retry_after_s": state.reset_s},
        )
        body = self._encoder.encode(envelope_of(error, scope["path"], request_id))
        headers = [
            _JSON,
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id.encode("latin-1")),
            *self._headers(state),
            (b"retry-after", str(state.reset_s).encode()),
        ]
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def _finish(self, scope: Scope, method: str, status: int, started: float) -> None:
        """Record an answer the edge gave itself (the 429)."""
        self._record(
            scope.get("path_template") or "unmatched",
            method if method in _METRIC_METHODS else "OTHER",
            status,
            perf_counter() - started,
        )


async def _nothing() -> None:
    """What a swallowed message's send returns: an awaitable that does nothing."""


def install_edge(
    app: Litestar,
    *,
    limiter: RateLimiter,
    ring: ApiKeyRing,
    trusted_proxies: list[str],
    metrics: RequestMetrics,
) -> Litestar:
    """Put the edge around Litestar's handler: outside its router and exception handling, inside `app(...)`.

    `Litestar.__call__` sets up the scope (app, state) and then calls `asgi_handler`, which is
    the router wrapped in the exception middleware (and CORS when configured); wrapping that
    attribute is the one place that sees every request and still gets Litestar's scope set-up.
    """
    app.asgi_handler = EdgeMiddleware(
        app.asgi_handler, limiter=limiter, ring=ring, trusted_proxies=trusted_proxies, metrics=metrics
    )
    return app
