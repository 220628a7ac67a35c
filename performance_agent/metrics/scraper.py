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
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import httpcore
import httpx

from performance_agent.operator_files import OperatorFileError, read_operator_file
from performance_agent.outbound.connection_pool import LinearConnectionPool

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from performance_agent.outbound.target_guard import ResolvedTarget

__all__ = (
    "ACCEPT_HEADER",
    "ANSWER_MAX_BYTES",
    "MAX_COMPRESSION_RATIO",
    "BodyEncodingError",
    "BodyTooLargeError",
    "BoundedDecoder",
    "FailureReason",
    "FetchedPage",
    "PinnedNetworkBackend",
    "PostAnswer",
    "ScrapeClients",
    "ScrapeFailure",
    "TlsOptions",
    "fetch_page",
    "post_json_pinned",
    "read_answer_head",
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
#: Bytes of an outbound call's answer (webhook, Alertmanager) that are ever read: only the status
#: and the start of an error text are used, so a receiver cannot make the agent buffer more.
ANSWER_MAX_BYTES = 16 * 1024
#: Asking for no compression; a server that compresses anyway may use one of `_ZLIB_WINDOW`.
_ACCEPT_ENCODING = "identity"
#: zlib window bits by HTTP content coding: gzip framing, zlib framing (HTTP's "deflate").
#: Output of one inflate call: a bomb is caught after this much work, and memory stays small.
_INFLATE_SLICE = 256 * 1024
#: Text metric pages compress about 10:1 with gzip (a very repetitive one maybe 50:1); only a
#: bomb inflates beyond this, checked once 1 MiB has come out.
MAX_COMPRESSION_RATIO = 200
_RATIO_FLOOR = 1024 * 1024
_ZLIB_WINDOW = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}

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
    """The page as read: UTF-8 `body` bytes (checked), decoded by whoever parses it (maybe another process)."""

    body: bytes
    openmetrics: bool | None
    size_bytes: int
    duration_s: float

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


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
    """The TLS context of `tls`; the CA bundle is read as a capped regular file (never a pipe or device)."""
    try:
        if tls.ca_bundle is None:
            context = ssl.create_default_context()
        else:
            context = ssl.create_default_context(cadata=read_operator_file(tls.ca_bundle).decode("ascii"))
    except (OperatorFileError, OSError, ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
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

    async def client_for(self, tls: TlsOptions) -> httpx.AsyncClient:
        """`client`, with a new TLS context (and its CA bundle) built in a worker thread, off the loop."""
        if tls in self._clients or self._closed:
            return self.client(tls)
        context = await asyncio.to_thread(_ssl_context, tls)
        return self.client(tls, context)

    def client(self, tls: TlsOptions, context: ssl.SSLContext | None = None) -> httpx.AsyncClient:
        if self._closed:
            raise ScrapeFailure("internal_error", "the scrape client is shut down")
        client = self._clients.get(tls)
        if client is None:
            context = context if context is not None else _ssl_context(tls)
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


class BodyTooLargeError(Exception):
    """The body, once decompressed, is larger than the budget; reading stopped there."""


class BodyEncodingError(Exception):
    """The body's `Content-Encoding` is stacked, unknown, or its compressed stream is broken."""


class BoundedDecoder:
    """Undoes at most one known content coding, never producing more than `max_bytes` in total.

    Why not httpx's own decoding: it inflates every chunk whole, so a 1 MB gzip page becomes
    1 GiB in memory before any cap is looked at, and it undoes `gzip, gzip, gzip` layer by layer
    (a 278-byte answer costing gigabytes). Here the output of each `feed` is capped by zlib
    itself (`max_length`), so memory stays within the budget whatever the ratio.
    """

    def __init__(self, content_encoding: str | None, max_bytes: int, *, truncate: bool = False) -> None:
        codings = [part.strip().lower() for part in (content_encoding or "").split(",") if part.strip()]
        codings = [coding for coding in codings if coding != "identity"]
        if len(codings) > 1:
            raise BodyEncodingError(f"stacked content encodings ({content_encoding}) are refused")
        if codings and codings[0] not in _ZLIB_WINDOW:
            raise BodyEncodingError(f"the content encoding {codings[0]!r} is not supported (gzip or deflate)")
        self._inflater = zlib.decompressobj(_ZLIB_WINDOW[codings[0]]) if codings else None
        #: Whether `feed` inflates: 10 MB of output costs about 100 ms of CPU, so callers on the
        #: event loop run it in a thread (zlib releases the GIL while it inflates).
        self.compressed = self._inflater is not None
        self._left = max_bytes
        self._raw_left = max_bytes
        #: Whether the budget is spent; with `truncate`, output stops there instead of raising.
        self.full = False
        self._truncate = truncate
        self._consumed = 0
        self._inflated = 0

    def _over_budget(self) -> None:
        if not self._truncate:
            raise BodyTooLargeError
        self.full = True

    def feed(self, data: bytes) -> bytes:
        """The decoded bytes of the next raw `data`; raises `BodyTooLargeError` past the budget."""
        if self.full:
            return b""
        self._raw_left -= len(data)
        if self._raw_left < 0:
            self._over_budget()
            data = data[: len(data) + self._raw_left]
        out = data if self._inflater is None else self._inflate(data)
        if len(out) > self._left:
            self._over_budget()
            out = out[: self._left]
        self._left -= len(out)
        return out

    def _inflate(self, data: bytes) -> bytes:
        """Inflate in slices of `_INFLATE_SLICE`, stopping past the budget or at a bomb's ratio."""
        inflater = self._inflater
        assert inflater is not None
        parts: list[bytes] = []
        produced = 0
        while True:
            if inflater.eof:
                if data:
                    raise BodyEncodingError("data follows the end of the compressed stream")
                break
            try:
                part = inflater.decompress(data, min(self._left - produced + 1, _INFLATE_SLICE))
            except zlib.error as exc:
                raise BodyEncodingError(f"the compressed stream is broken: {exc}") from None
            self._consumed += len(data) - len(inflater.unconsumed_tail)
            data = inflater.unconsumed_tail
            parts.append(part)
            produced += len(part)
            self._inflated += len(part)
            if produced > self._left:
                break
            if self._inflated > _RATIO_FLOOR and self._inflated > MAX_COMPRESSION_RATIO * self._consumed:
                raise BodyEncodingError(
                    f"the answer inflates more than {MAX_COMPRESSION_RATIO}:1, as only a decompression bomb does"
                )
            if not data:
                break
        if inflater.eof and inflater.unused_data:
            raise BodyEncodingError("data follows the end of the compressed stream")
        return b"".join(parts)

    def finish(self) -> None:
        if self._inflater is not None and not self.full and not self._inflater.eof:
            raise BodyEncodingError("the compressed stream ends early")


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ScrapeFailure(
            "upstream_invalid_metrics",
            f"the page is {declared} bytes, more than PERF_AGENT_SCRAPE_MAX_BYTES ({max_bytes})",
        )
    try:
        decoder = BoundedDecoder(response.headers.get("content-encoding"), max_bytes)
        chunks: list[bytes] = []
        async for chunk in response.aiter_raw(_CHUNK):
            chunks.append(await asyncio.to_thread(decoder.feed, chunk) if decoder.compressed else decoder.feed(chunk))
        decoder.finish()
    except BodyTooLargeError:
        raise ScrapeFailure(
            "upstream_invalid_metrics",
            f"the page is larger than PERF_AGENT_SCRAPE_MAX_BYTES ({max_bytes} bytes) once decompressed; "
            "reading stopped there",
        ) from None
    except BodyEncodingError as exc:
        raise ScrapeFailure("upstream_invalid_metrics", f"the page cannot be decoded: {exc}") from None
    return b"".join(chunks)


async def read_answer_head(response: httpx.Response, max_bytes: int = ANSWER_MAX_BYTES) -> str:
    """At most `max_bytes` of an answer's text, decompressed within that cap; the rest is never read."""
    head = bytearray()
    try:
        decoder = BoundedDecoder(response.headers.get("content-encoding"), max_bytes, truncate=True)
        async for chunk in response.aiter_raw(_CHUNK):
            head += await asyncio.to_thread(decoder.feed, chunk) if decoder.compressed else decoder.feed(chunk)
            if decoder.full:
                break
    except BodyEncodingError as exc:
        return f"(answer not read: {exc})"
    return head.decode("utf-8", errors="replace")


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
    client = await clients.client_for(tls if tls is not None and target.scheme == "https" else TlsOptions())
    request_headers = {"Accept": ACCEPT_HEADER, **headers, "Accept-Encoding": _ACCEPT_ENCODING}
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
    if not body.isascii():  # checked without a decoded copy in the common, ASCII case
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ScrapeFailure("upstream_invalid_metrics", f"the page is not UTF-8 text: {exc}") from None
    return FetchedPage(body=body, openmetrics=_is_openmetrics(content_type), size_bytes=len(body), duration_s=duration)


@dataclass(frozen=True, slots=True)
class PostAnswer:
    """What an outbound POST answered: the status and at most `ANSWER_MAX_BYTES` of its text."""

    status_code: int
    text: str


async def post_json_pinned(
    clients: ScrapeClients,
    target: ResolvedTarget,
    body: bytes,
    *,
    timeout_s: float,
    headers: Mapping[str, str] | None = None,
) -> PostAnswer:
    """POST a JSON `body` to the checked target, connecting only to the address the guard checked.

    Why it raises instead of answering a failure: its callers (actuators, the alert webhook) each
    report timeouts and transport errors in their own terms. Raises `TimeoutError` or
    `httpx.TimeoutException` when no answer comes within `timeout_s`, and another `httpx.HTTPError`
    when the target cannot be reached; any HTTP status is returned, redirects are not followed.
    The answer is read only up to `ANSWER_MAX_BYTES` (decompressed), never whole.
    """
    client = clients.client(TlsOptions())
    with _pinned_to(target):
        async with asyncio.timeout(timeout_s):
            async with client.stream(
                "POST",
                target.url,
                content=body,
                headers={"Content-Type": "application/json", **(headers or {}), "Accept-Encoding": _ACCEPT_ENCODING},
                timeout=httpx.Timeout(timeout_s),
            ) as response:
                return PostAnswer(response.status_code, await read_answer_head(response))
