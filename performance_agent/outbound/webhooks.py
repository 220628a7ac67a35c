"""Signed webhooks: POSTs through the target guard and the pinned clients, with an HMAC signature.

Signature: HMAC-SHA256 over `timestamp + "." + body`, hex, sent as
`X-Signature-SHA256: sha256=<hex>` with `X-Signature-Timestamp: <unix seconds>`, as Stripe and
GitHub do; without a secret neither header is sent. Only the timestamp changes between retries
of one stored body, so a receiver rejecting stale timestamps does not reject a legitimate retry.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from performance_agent.outbound.pinned import post_json_pinned
from performance_agent.outbound.target_guard import ResolutionError, TargetRefusedError, check_url

if TYPE_CHECKING:
    from performance_agent.outbound.pinned import PinnedClients
    from performance_agent.outbound.target_guard import Resolver, TargetAllowlist

__all__ = (
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Delivery",
    "HttpPoster",
    "signature_headers",
    "verify_signature",
)

SIGNATURE_HEADER = "X-Signature-SHA256"
TIMESTAMP_HEADER = "X-Signature-Timestamp"


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one POST: ok, or why not (the reason shown to operators).

    `sent=False` only when the call certainly never reached the receiver: one refused by the
    guard, whose host does not resolve or whose connection was refused changed nothing, so a
    rollback has nothing to undo for it.
    """

    ok: bool
    error: str | None = None
    sent: bool = True


class HttpPoster:
    """POSTs through the guard and the pinned clients: the only way actuators reach the network."""

    def __init__(
        self, clients: PinnedClients, allowlist: TargetAllowlist, resolver: Resolver, timeout_s: float
    ) -> None:
        self._clients = clients
        self._allowlist = allowlist
        self._resolver = resolver
        self._timeout_s = timeout_s

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Delivery:
        try:
            target = await check_url(url, self._allowlist, self._resolver)
        except TargetRefusedError as refused:
            return Delivery(False, f"target_not_allowed: {refused.reason}", sent=False)
        except ResolutionError as unresolved:
            return Delivery(False, f"unreachable: {unresolved}", sent=False)
        try:
            answer = await post_json_pinned(self._clients, target, body, timeout_s=self._timeout_s, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # no connection, so no byte of the call left
            return Delivery(False, f"unreachable: {type(exc).__name__}: {exc}", sent=False)
        except (TimeoutError, httpx.TimeoutException):
            return Delivery(False, f"timeout: no answer within {self._timeout_s:g} s")
        except httpx.HTTPError as exc:
            return Delivery(False, f"unreachable: {type(exc).__name__}: {exc}")
        if 200 <= answer.status_code < 300:
            return Delivery(True)
        return Delivery(False, f"HTTP {answer.status_code}: {answer.text[:200]}")


def _digest(secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_headers(secret: str | None, timestamp: int, body: bytes) -> dict[str, str]:
    if not secret:
        return {}
    stamp = str(timestamp)
    return {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: "sha256=" + _digest(secret, stamp, body)}


def verify_signature(secret: str, timestamp: str, signature: str, body: bytes) -> bool:
    """What a receiver does (used by tests and documented for integrators)."""
    expected = "sha256=" + _digest(secret, timestamp, body)
    return hmac.compare_digest(expected, signature)
