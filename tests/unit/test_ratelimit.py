from __future__ import annotations

import ipaddress
from typing import Any

from performance_agent.ratelimit import RateLimiter, client_identity
from performance_agent.security import ApiKeyRing, Role


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_minute_window_blocks_and_recovers() -> None:
    clock = FakeClock()
    limiter = RateLimiter([(3, 60), (1000, 3600)], clock=clock)
    results = [limiter.hit("a") for _ in range(3)]
    assert [ok for ok, _ in results] == [True, True, True]
    assert [state.remaining for _, state in results] == [2, 1, 0]
    allowed, state = limiter.hit("a")
    assert not allowed
    assert (state.limit, state.window_s, state.reset_s) == (3, 60, 60)
    clock.now += 30
    assert not limiter.hit("a")[0]
    assert limiter.hit("a")[1].reset_s == 30
    clock.now += 30.5
    assert limiter.hit("a")[0]


def test_clients_are_counted_apart() -> None:
    limiter = RateLimiter([(1, 60)], clock=FakeClock())
    assert limiter.hit("a")[0]
    assert limiter.hit("b")[0]
    assert not limiter.hit("a")[0]


def test_hour_window_applies_when_minute_allows() -> None:
    clock = FakeClock()
    limiter = RateLimiter([(100, 60), (5, 3600)], clock=clock)
    for _ in range(5):
        assert limiter.hit("a")[0]
        clock.now += 61
    allowed, state = limiter.hit("a")
    assert not allowed
    assert state.window_s == 3600
    assert state.reset_s == 3600 - 5 * 61


def test_headers_report_the_tighter_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter([(100, 60), (3, 3600)], clock=clock)
    _, state = limiter.hit("a")
    assert (state.limit, state.remaining, state.window_s) == (3, 2, 3600)


def test_zero_limits_disable_the_limiter() -> None:
    assert not RateLimiter([(0, 60), (0, 3600)]).enabled


def test_idle_clients_are_evicted_when_the_table_is_full() -> None:
    clock = FakeClock()
    limiter = RateLimiter([(10, 60)], clock=clock, max_clients=2)
    limiter.hit("a")
    limiter.hit("b")
    clock.now += 120
    limiter.hit("c")
    assert set(limiter._logs) == {"c"}


def _scope(peer: str, headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    return {"type": "http", "client": (peer, 1234), "headers": headers or [], "state": {}}


def test_identity_is_the_key_name_when_authenticated() -> None:
    ring = ApiKeyRing([("ci", Role.operator, "0123456789abcdef")])
    scope = _scope("10.0.0.1", [(b"x-api-key", b"0123456789abcdef")])
    assert client_identity(scope, ring, []) == "key:ci"
    bearer = _scope("10.0.0.1", [(b"authorization", b"Bearer 0123456789abcdef")])
    assert client_identity(bearer, ring, []) == "key:ci"


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    ring = ApiKeyRing([])
    trusted = [ipaddress.ip_network("10.0.0.0/8")]
    forwarded = [(b"x-forwarded-for", b"203.0.113.9, 10.0.0.7")]
    assert client_identity(_scope("10.0.0.2", forwarded), ring, trusted) == "ip:203.0.113.9"
    assert client_identity(_scope("198.51.100.1", forwarded), ring, trusted) == "ip:198.51.100.1"
    assert client_identity(_scope("10.0.0.2", forwarded), ring, []) == "ip:10.0.0.2"
    only_proxies = [(b"x-forwarded-for", b"10.0.0.9")]
    assert client_identity(_scope("10.0.0.2", only_proxies), ring, trusted) == "ip:10.0.0.9"
