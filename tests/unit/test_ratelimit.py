from __future__ import annotations

import ipaddress
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import pytest

from performance_agent.ratelimit import RateLimiter, client_identity
from performance_agent.security import ApiKeyRing, Role

if TYPE_CHECKING:
    from collections.abc import Iterator


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
    # The bucket is full again 20 s per request later: 60 s after three at once.
    assert results[-1][1].reset_s == 60
    allowed, state = limiter.hit("a")
    assert not allowed
    # One request's worth (60 s / 3) must drain before the next is let in.
    assert (state.limit, state.window_s, state.reset_s, state.remaining) == (3, 60, 20, 0)
    clock.now += 10
    allowed, state = limiter.hit("a")
    assert not allowed
    assert state.reset_s == 10
    clock.now += 10
    allowed, state = limiter.hit("a")
    assert allowed
    assert state.remaining == 0
    assert not limiter.hit("a")[0]


def test_refused_requests_do_not_push_the_client_further_out() -> None:
    clock = FakeClock()
    limiter = RateLimiter([(2, 60)], clock=clock)
    assert limiter.hit("a")[0]
    assert limiter.hit("a")[0]
    for _ in range(50):
        assert not limiter.hit("a")[0]
    clock.now += 30
    assert limiter.hit("a")[0]


def test_budget_refills_at_the_window_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter([(100, 60)], clock=clock)
    assert all(limiter.hit("a")[0] for _ in range(100))
    assert not limiter.hit("a")[0]
    clock.now += 6  # 6 s refill 10 requests at 100 per minute
    assert [limiter.hit("a")[0] for _ in range(11)] == [True] * 10 + [False]
    clock.now += 60
    assert limiter.hit("a")[1].remaining == 99


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
    # Five hit at 61 s intervals used 5 x 720 s of the hour's budget, 305 s of which have drained.
    assert state.reset_s == 5 * 720 - 5 * 61 + 720 - 3600


def test_headers_report_the_tighter_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter([(100, 60), (3, 3600)], clock=clock)
    _, state = limiter.hit("a")
    assert (state.limit, state.remaining, state.window_s) == (3, 2, 3600)


def test_zero_limits_disable_the_limiter() -> None:
    limiter = RateLimiter([(0, 60), (0, 3600)])
    assert not limiter.enabled
    with pytest.raises(RuntimeError, match="disabled"):
        limiter.hit("a")


def test_a_cap_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_clients"):
        RateLimiter([(10, 60)], max_clients=0)


def test_the_table_never_exceeds_its_cap_and_evicts_the_least_recently_seen() -> None:
    limiter = RateLimiter([(10, 60)], clock=FakeClock(), max_clients=3)
    for client in ("a", "b", "c"):
        limiter.hit(client)
    limiter.hit("a")  # a is now the most recently seen
    limiter.hit("d")
    assert limiter.tracked_clients == 3
    assert limiter.clients_oldest_first() == ["c", "a", "d"]
    limiter.hit("e")
    assert limiter.clients_oldest_first() == ["a", "d", "e"]


def test_active_clients_are_evicted_too_when_newcomers_flood_the_table() -> None:
    """The old table only dropped idle clients, so a flood of busy ones grew it without bound."""
    limiter = RateLimiter([(10, 60)], clock=FakeClock(), max_clients=100)
    for number in range(10_000):
        limiter.hit(f"ip:{number}")
    assert limiter.tracked_clients == 100
    assert limiter.clients_oldest_first() == [f"ip:{number}" for number in range(9_900, 10_000)]


def test_an_evicted_client_starts_again_from_a_full_budget() -> None:
    limiter = RateLimiter([(1, 60)], clock=FakeClock(), max_clients=1)
    assert limiter.hit("a")[0]
    assert not limiter.hit("a")[0]
    assert limiter.hit("b")[0]  # evicts a
    assert limiter.hit("a")[0]


class _CountingTable(OrderedDict[str, list[float]]):
    """Counts every walk over the table; a hit must never walk it, however full it is."""

    walks = 0

    def __iter__(self) -> Iterator[str]:
        type(self).walks += 1
        return super().__iter__()

    def items(self) -> Any:
        type(self).walks += 1
        return super().items()

    def values(self) -> Any:
        type(self).walks += 1
        return super().values()


def test_a_hit_never_walks_the_client_table() -> None:
    limiter = RateLimiter([(10, 60), (100, 3600)], clock=FakeClock(), max_clients=1_000)
    table = _CountingTable()
    limiter._buckets = table
    for number in range(5_000):  # fills the table, then evicts on every newcomer
        limiter.hit(f"ip:{number}")
        limiter.hit("ip:0")
    assert len(table) == 1_000
    assert _CountingTable.walks == 0


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
