"""Per-client rate limiting over two windows (per minute and per hour), in constant memory per client.

Each window is a GCRA bucket (the generic cell rate algorithm of ATM networks, ITU-T I.371;
equivalent to a token bucket): a client may send up to `limit` requests at once, and its budget
refills continuously at `limit` per window. One float per window is all a client costs, where the
sliding log this replaces kept every timestamp of the last hour (up to 1,000 floats per client).

Clients live in an LRU table with a hard cap: a new client past the cap evicts the one seen
longest ago, in O(1), so a flood of distinct identities costs bounded memory and constant time
per request (the old table scanned every client on each newcomer once it was full). An evicted
client merely starts again from a full budget, which it would also have after one idle window.

Litestar's built-in limiter knows one window and sends no Retry-After, and keys on the raw
header value; ours keys on the API key's *name* (else the peer address), enforces both windows,
and reports the tighter one in the `RateLimit-*` headers.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

import msgspec

from performance_agent.security import ApiKeyRing, principal_of

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar.types import Scope

__all__ = ("DEFAULT_MAX_CLIENTS", "RateLimiter", "WindowState", "client_identity")

#: Default cap on tracked clients; about 30 MiB of buckets at the ~280 bytes one costs
#: (identity string, table entry, one float per window; docs/operations.md#rate-limiter).
DEFAULT_MAX_CLIENTS = 100_000


class WindowState(msgspec.Struct, frozen=True):
    limit: int
    remaining: int
    reset_s: int
    window_s: int


class RateLimiter:
    """GCRA buckets per client and window; the client table is an LRU with a hard cap."""

    def __init__(
        self,
        windows: list[tuple[int, int]],
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = DEFAULT_MAX_CLIENTS,
    ) -> None:
        if max_clients < 1:
            raise ValueError("max_clients must be at least 1")
        self._windows = [(limit, seconds, seconds / limit) for limit, seconds in windows if limit > 0]
        self._clock = clock
        self._max_clients = max_clients
        #: client -> the theoretical arrival time of its next request in each window (GCRA's TAT).
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return bool(self._windows)

    @property
    def policy(self) -> str:
        """The `RateLimit-Policy` header value, e.g. `100;w=60, 1000;w=3600`."""
        return ", ".join(f"{limit};w={seconds}" for limit, seconds, _ in self._windows)

    @property
    def tracked_clients(self) -> int:
        return len(self._buckets)

    def clients_oldest_first(self) -> list[str]:
        """The tracked clients in eviction order (the next one evicted first)."""
        return list(self._buckets)

    def hit(self, client: str) -> tuple[bool, WindowState]:
        """Count one request; return whether it is allowed and the tightest window's state.

        A refused request is not counted: a client that keeps knocking while blocked is let in
        again as soon as its budget allows, not pushed further out.
        """
        if not self._windows:
            raise RuntimeError("the rate limiter is disabled: no window has a limit above 0")
        now = self._clock()
        buckets = self._buckets
        arrivals = buckets.get(client)
        if arrivals is None:
            if len(buckets) >= self._max_clients:
                buckets.popitem(last=False)
            arrivals = buckets[client] = [now] * len(self._windows)
        else:
            buckets.move_to_end(client)
        next_arrivals: list[float] = []
        refused: WindowState | None = None
        states: list[WindowState] = []
        for (limit, seconds, interval), arrival in zip(self._windows, arrivals, strict=True):
            next_arrival = max(arrival, now) + interval
            backlog = next_arrival - now  # seconds of budget this request would leave in use
            if backlog > seconds + 1e-9:
                retry = max(1, math.ceil(backlog - seconds))
                state = WindowState(limit, 0, retry, seconds)
                if refused is None or state.reset_s > refused.reset_s:
                    refused = state
                continue
            remaining = min(limit, math.floor((seconds - backlog) / interval + 1e-9))
            states.append(WindowState(limit, remaining, max(1, math.ceil(backlog)), seconds))
            next_arrivals.append(next_arrival)
        if refused is not None:
            return False, refused
        arrivals[:] = next_arrivals
        return True, min(states, key=lambda state: (state.remaining, state.reset_s))


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
