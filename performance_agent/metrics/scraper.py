"""Fetching one `/metrics` page over HTTP, safely and within a budget of time and bytes.

The connection goes through the pinned outbound clients (`outbound.pinned`), so only the address
the target guard checked is dialled. Redirects are never followed (a 3xx is an
`upstream_error`); the page is read up to `PERF_AGENT_SCRAPE_MAX_BYTES` of decoded body, decoded by
the agent itself within that budget (`outbound.bounded`: one known content coding, bombs refused).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import httpx

from performance_agent.outbound.bounded import ACCEPT_ENCODING, BodyEncodingError, BodyTooLargeError, read_bounded
from performance_agent.outbound.pinned import ClientsClosedError, OutboundConfigError, TlsOptions, pinned_to

if TYPE_CHECKING:
    from collections.abc import Mapping

    from performance_agent.outbound.pinned import PinnedClients
    from performance_agent.outbound.target_guard import ResolvedTarget

__all__ = (
    "ACCEPT_HEADER",
    "FailureReason",
    "FetchedPage",
    "ScrapeFailure",
    "fetch_page",
)

FailureReason = Literal[
    "target_not_allowed",
    "upstream_unreachable",
    "upstream_timeout",
    "upstream_error",
    "upstream_invalid_metrics",
    "engine_mismatch",
    "scrape_config_invalid",
    "internal_error",
]

ACCEPT_HEADER = "text/plain;version=0.0.4;q=1.0, application/openmetrics-text;version=1.0.0;q=0.5, */*;q=0.1"


class ScrapeFailure(Exception):
    """A scrape that produced no page; `reason` is the API error code and the metrics label."""

    def __init__(
        self,
        reason: FailureReason,
        message: str,
        *,
        upstream_status: int | None = None,
        context: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason: FailureReason = reason
        self.message = message
        self.upstream_status = upstream_status
        self.context = dict(context or {})


@dataclass(frozen=True, slots=True)
class FetchedPage:
    """The page as read: UTF-8 `body` bytes (checked), decoded by whoever parses it (maybe another process)."""

    body: bytes
    openmetrics: bool | None
    size_bytes: int
    duration_s: float

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def _is_openmetrics(content_type: str | None) -> bool | None:
    if not content_type:
        return None
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/openmetrics-text":
        return True
    if media == "text/plain":
        return False
    return None


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    try:
        return await read_bounded(response, max_bytes)
    except BodyTooLargeError:
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise ScrapeFailure(
                "upstream_invalid_metrics",
                f"the page is {declared} bytes, more than PERF_AGENT_SCRAPE_MAX_BYTES ({max_bytes})",
            ) from None
        raise ScrapeFailure(
            "upstream_invalid_metrics",
            f"the page is larger than PERF_AGENT_SCRAPE_MAX_BYTES ({max_bytes} bytes) once decompressed; "
            "reading stopped there",
        ) from None
    except BodyEncodingError as exc:
        raise ScrapeFailure("upstream_invalid_metrics", f"the page cannot be decoded: {exc}") from None


async def fetch_page(
    clients: PinnedClients,
    target: ResolvedTarget,
    *,
    headers: Mapping[str, str],
    timeout_s: float,
    max_bytes: int,
    tls: TlsOptions | None = None,
) -> FetchedPage:
    """GET the page at the checked target, within `timeout_s` overall and `max_bytes` of body."""
    try:
        client = await clients.client_for(tls if tls is not None and target.scheme == "https" else TlsOptions())
    except OutboundConfigError as exc:
        raise ScrapeFailure("scrape_config_invalid", str(exc)) from None
    except ClientsClosedError:
        raise ScrapeFailure("internal_error", "the scrape client is shut down") from None
    request_headers = {"Accept": ACCEPT_HEADER, **headers, "Accept-Encoding": ACCEPT_ENCODING}
    started = time.perf_counter()
    try:
        with pinned_to(target):
            async with asyncio.timeout(timeout_s):
                async with client.stream(
                    "GET", target.url, headers=request_headers, timeout=httpx.Timeout(timeout_s)
                ) as response:
                    if not 200 <= response.status_code < 300:
                        note = " (redirects are not followed)" if 300 <= response.status_code < 400 else ""
                        raise ScrapeFailure(
                            "upstream_error",
                            f"the server answered HTTP {response.status_code}{note}",
                            upstream_status=response.status_code,
                        )
                    body = await _read_capped(response, max_bytes)
                    content_type = response.headers.get("content-type")
    except (TimeoutError, httpx.TimeoutException):
        raise ScrapeFailure("upstream_timeout", f"no complete answer within {timeout_s:g} s") from None
    except httpx.RemoteProtocolError as exc:
        raise ScrapeFailure("upstream_error", f"the server broke the HTTP protocol: {exc}") from None
    except httpx.TransportError as exc:
        raise ScrapeFailure("upstream_unreachable", f"cannot reach {target.host}:{target.port}: {exc}") from None
    except httpx.DecodingError as exc:
        raise ScrapeFailure("upstream_invalid_metrics", f"the page cannot be decoded: {exc}") from None
    except httpx.RequestError as exc:
        raise ScrapeFailure("upstream_error", f"the request failed: {exc}") from None
    duration = time.perf_counter() - started
    if not body.isascii():  # checked without a decoded copy in the common, ASCII case
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ScrapeFailure("upstream_invalid_metrics", f"the page is not UTF-8 text: {exc}") from None
    return FetchedPage(body=body, openmetrics=_is_openmetrics(content_type), size_bytes=len(body), duration_s=duration)
