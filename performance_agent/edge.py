"""The one middleware every API request passes: request id, rate limit, auth, request metrics.

One plain ASGI layer instead of three (two `ASGIMiddleware`s and a guard) because on the hot
path each Litestar layer costs more than the work it does; the benchmark compares the agent's
health endpoint with a bare Litestar app, and this is where the difference would come from.
"""

from __future__ import annotations

import ipaddress
import time
from typing import TYPE_CHECKING, Any

from litestar.enums import ScopeType

from performance_agent.errors import ApiError
from performance_agent.observability import request_id_of
from performance_agent.ratelimit import RateLimiter, client_identity
from performance_agent.security import ApiKeyRing, authorize

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from performance_agent.observability import RequestMetrics

__all__ = ("EdgeMiddleware",)


class EdgeMiddleware:
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
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._timers: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        request_id_of(scope)  # bind the id to this task's log context before anything logs
        started = time.perf_counter()
        handler: Any = scope.get("route_handler")
        opt = handler.opt if handler is not None else {}
        status = 500
        extra_headers: list[tuple[bytes, bytes]] = []

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if extra_headers:
                    message["headers"] = [*message.get("headers", ()), *extra_headers]
            await send(message)

        try:
            if self.limiter.enabled and opt.get("rate_limit", True):
                self._limit(scope, extra_headers)
            authorize(scope, opt, self.ring)
            await self.app(scope, receive, tracking_send)
        except ApiError as exc:
            status = exc.status_code
            raise
        except BaseException as exc:
            status = getattr(exc, "status_code", 500)
            raise
        finally:
            self._record(scope.get("path_template") or "unmatched", str(scope.get("method", "GET")), status, started)

    def _limit(self, scope: Scope, extra_headers: list[tuple[bytes, bytes]]) -> None:
        allowed, state = self.limiter.hit(client_identity(scope, self.ring, self.trusted))
        headers = {
            "RateLimit-Limit": str(state.limit),
            "RateLimit-Remaining": str(state.remaining),
            "RateLimit-Reset": str(state.reset_s),
            "RateLimit-Policy": self.limiter.policy,
        }
        if not allowed:
            raise ApiError(
                f"Rate limit of {state.limit} requests per {state.window_s} s exceeded; retry in {state.reset_s} s.",
                error="rate_limited",
                status_code=429,
                headers={**headers, "Retry-After": str(state.reset_s)},
                context={"limit": state.limit, "window_s": state.window_s, "retry_after_s": state.reset_s},
            )
        extra_headers.extend((name.lower().encode(), value.encode()) for name, value in headers.items())

    def _record(self, route: str, method: str, status: int, started: float) -> None:
        counter = self._counters.get((route, method, status))
        if counter is None:
            counter = self._counters[(route, method, status)] = self.metrics.requests.labels(route, method, str(status))
        timer = self._timers.get((route, method))
        if timer is None:
            timer = self._timers[(route, method)] = self.metrics.latency.labels(route, method)
        counter.inc()
        timer.observe(time.perf_counter() - started)
