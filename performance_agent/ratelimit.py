"""Per-client rate limiting over two sliding windows (per minute and per hour).

Litestar's built-in limiter knows one window and sends no Retry-After, and keys on the raw
header value; ours keys on the API key's *name* (else the peer address), enforces both windows,
and reports the tighter one in the `RateLimit-*` headers.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import deque
from typing import TYPE_CHECKING

import msgspec

from performance_agent.security import ApiKeyRing, principal_of

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar.types import Scope

__all__ = ("RateLimiter", "WindowState", "client_identity")


class WindowState(msgspec.Struct, frozen=True):
    limit: int
    remaining: int
    reset_s: int
    window_s: int


class RateLimiter:
    """Sliding-log limiter: exact counts, memory bounded by the largest limit per client."""

    def __init__(
        self, windows: list[tuple[int, int]], clock: Callable[[], float] = time.monotonic, max_clients: int = 100_000
    ) -> None:
        self._windows = [(limit, seconds) for limit, seconds in windows if limit > 0]
        self._clock = clock
        self._max_clients = max_clients
        self._logs: dict[str, deque[float]] = {}

    @property
    def enabled(self) -> bool:
        return bool(self._windows)

    @property
    def policy(self) -> str:
        """The `RateLimit-Policy` header value, e.g. `100;w=60, 1000;w=3600`."""
        return ", ".join(f"{limit};w={seconds}" for limit, seconds in self._windows)

    def hit(self, client: str) -> tuple[bool, WindowState]:
        """Count one request; return whether it is allowed and the tightest window's state."""
        now = self._clock()
        longest = max(seconds for _, seconds in self._windows)
        log = self._logs.get(client)
        if log is None:
            if len(self._logs) >= self._max_clients:
                self._evict(now, longest)
            log = self._logs[client] = deque()
        while log and log[0] <= now - longest:
            log.popleft()
        states: list[tuple[bool, WindowState]] = []
        for limit, seconds in self._windows:
            in_window = [t for t in log if t > now - seconds] if seconds != longest else log
            used = len(in_window)
            allowed = used < limit
            oldest = in_window[0] if in_window else now
            reset = max(1, math.ceil(oldest + seconds - now)) if used else seconds
            states.append((allowed, WindowState(limit, max(0, limit - used - (1 if allowed else 0)), reset, seconds)))
        blocked = [state for ok, state in states if not ok]
        if blocked:
            return False, max(blocked, key=lambda s: s.reset_s)
        log.append(now)
        return True, min((state for _, state in states), key=lambda s: (s.remaining, s.reset_s))

    def _evict(self, now: float, longest: int) -> None:
        for client in [c for c, log in self._logs.items() if not log or log[-1] <= now - longest]:
            del self._logs[client]


def client_identity(
    scope: Scope, ring: ApiKeyRing, trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> str:
    principal = principal_of(scope, ring)
    if principal is not None:
        return f"key:{principal.name}"
    client = scope.get("client")
    peer = client[0] if client else "unknown"
    if trusted and _is_trusted(peer, trusted):
        for name, value in scope.get("headers", ()):
            if name == b"x-forwarded-for":
                hops = [hop.strip() for hop in value.decode("latin-1").split(",") if hop.strip()]
                # Walk from the nearest hop outwards, skipping our own proxies: the first untrusted one is the client.
                for hop in reversed(hops):
                    if not _is_trusted(hop, trusted):
                        return f"ip:{hop}"
                if hops:
                    return f"ip:{hops[0]}"
    return f"ip:{peer}"


def _is_trusted(address: str, trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)
