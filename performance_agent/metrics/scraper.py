"""Fetching one `/metrics` page over HTTP, safely and within a budget of time and bytes.

Why a pinned network backend: the target guard checks the addresses a host name resolves to,
and the connection must go to one of exactly those (a second lookup could answer differently:
DNS rebinding). The HTTP client still sees the host name, so the `Host` header, TLS SNI and
certificate checks use the name. Every connection the client opens asks the backend, which
dials only the address pinned for the current task, and refuses to dial anything unpinned: a
caller that forgot the guard fails closed.

Why one client per TLS setting: `verify` and the CA bundle belong to the connection pool, so
instances with the default TLS settings share one pooled client and each distinct setting gets
its own, all closed at shutdown. Redirects are never followed (a 3xx is an `upstream_error`),
and proxies from the environment are ignored, so nothing bypasses the pinned backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ssl
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import httpcore
import httpx

from performance_agent.outbound.connection_pool import LinearConnectionPool

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from performance_agent.outbound.target_guard import ResolvedTarget

__all__ = (
    "ACCEPT_HEADER",
    "FailureReason",
    "FetchedPage",
    "PinnedNetworkBackend",
    "ScrapeClients",
    "ScrapeFailure",
    "TlsOptions",
    "fetch_page",
    "post_json_pinned",
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
_CHUNK = 64 * 1024

_pinned: contextvars.ContextVar[ResolvedTarget | None] = contextvars.ContextVar("pinned_target", default=None)


@contextlib.contextmanager
def _pinned_to(target: ResolvedTarget) -> Iterator[None]:
    """Lets the pinned backend dial `target` for connections this task opens inside the block."""
    token = _pinned.set(target)
    try:
        yield
    finally:
        _pinned.reset(token)


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
class TlsOptions:
    verify: bool = True
    ca_bundle: str | None = None


@dataclass(frozen=True, slots=True)
class FetchedPage:
    text: str
    openmetrics: bool | None
    size_bytes: int
    duration_s: float


class PinnedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Dials only the address the target guard checked for the current task."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner if inner is not None else httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's backend interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        target = _pinned.get()
        wanted = host.strip("[]").lower()
        if target is None or target.host != wanted or target.port != port:
            raise httpcore.ConnectError(f"refusing to connect to {host}:{port}: not checked by the target guard")
        return await self._inner.connect_tcp(
            target.address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's backend interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are never scrape targets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _ssl_context(tls: TlsOptions) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=tls.ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        raise ScrapeFailure(
            "scrape_config_invalid", f"the CA bundle {tls.ca_bundle!r} cannot be loaded: {exc}"
        ) from None
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class ScrapeClients:
    """Pooled HTTP clients by TLS setting, all dialing through the pinned backend."""

    def __init__(self, *, max_connections: int = 256, keepalive_expiry_s: float = 30.0) -> None:
        self._limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=keepalive_expiry_s,
        )
        self._clients: dict[TlsOptions, httpx.AsyncClient] = {}
        self._closed = False

    def client(self, tls: TlsOptions) -> httpx.AsyncClient:
        if self._closed:
            raise ScrapeFailure("internal_error", "the scrape client is shut down")
        client = self._clients.get(tls)
        if client is None:
            context = _ssl_context(tls)
            transport = httpx.AsyncHTTPTransport(verify=context, limits=self._limits, trust_env=False)
            # httpx has no public hook for the network backend; swap the pool it built for one that
            # dials through the pinned backend (and keeps its bookkeeping linear, see connection_pool).
            transport._pool = LinearConnectionPool(
                ssl_context=context,
                max_connections=self._limits.max_connections,
                max_keepalive_connections=self._limits.max_keepalive_connections,
                keepalive_expiry=self._limits.keepalive_expiry,
                http1=True,
                http2=False,
                network_backend=PinnedNetworkBackend(),
            )
            client = httpx.AsyncClient(transport=transport, trust_env=False, follow_redirects=False)
            self._clients[tls] = client
        return client

    async def aclose(self) -> None:
        self._closed = True
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


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
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ScrapeFailure(
            "upstream_invalid_metrics",
            f"the page is {declared} bytes, more than PERF_AGENT_SCRAPE_MAX_BYTES ({max_bytes})",
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes(_CHUNK):  # decoded bytes: a compressed bomb is capped too
        size += len(chunk)
        if size > max_bytes:
            raise ScrapeFailure(
                "upstream_invalid_metrics",
                f"the page is larger than PERF_AGENT_SCRAPE_MAX_BYTES ({max_bytes} bytes); reading stopped there",
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def fetch_page(
    clients: ScrapeClients,
    target: ResolvedTarget,
    *,
    headers: Mapping[str, str],
    timeout_s: float,
    max_bytes: int,
    tls: TlsOptions | None = None,
) -> FetchedPage:
    """GET the page at the checked target, within `timeout_s` overall and `max_bytes` of body."""
    client = clients.client(tls if tls is not None and target.scheme == "https" else TlsOptions())
    request_headers = {"Accept": ACCEPT_HEADER, **headers}
    started = time.perf_counter()
    try:
        with _pinned_to(target):
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
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScrapeFailure("upstream_invalid_metrics", f"the page is not UTF-8 text: {exc}") from None
    return FetchedPage(text=text, openmetrics=_is_openmetrics(content_type), size_bytes=len(body), duration_s=duration)


async def post_json_pinned(
    clients: ScrapeClients,
    target: ResolvedTarget,
    body: bytes,
    *,
    timeout_s: float,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """POST a JSON `body` to the checked target, connecting only to the address the guard checked.

    Why it raises instead of answering a failure: its callers (actuators, the alert webhook) each
    report timeouts and transport errors in their own terms. Raises `TimeoutError` or
    `httpx.TimeoutException` when no answer comes within `timeout_s`, and another `httpx.HTTPError`
    when the target cannot be reached; any HTTP status is returned, redirects are not followed.
    """
    client = clients.client(TlsOptions())
    with _pinned_to(target):
        async with asyncio.timeout(timeout_s):
            return await client.post(
                target.url,
                content=body,
                headers={"Content-Type": "application/json", **(headers or {})},
                timeout=httpx.Timeout(timeout_s),
            )
