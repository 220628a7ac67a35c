"""The agent's one way to read and convert time: aware UTC datetimes, from epoch seconds or now.

Why one place: stored documents keep epoch seconds and the API speaks ISO-8601 UTC, so every
conversion must agree (aware, UTC, never the local zone); services take a `clock` so tests move
time by hand, and `utc_now` is the default each of them falls back to.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ("utc", "utc_now")


def utc(epoch: float) -> datetime:
    """Epoch seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(epoch, UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)
