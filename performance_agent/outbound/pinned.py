"""Outbound HTTP clients that connect only to the address the target guard checked.

Why a pinned network backend: the target guard checks the addresses a host name resolves to,
and the connection must go to one of exactly those (a second lookup could answer differently:
DNS rebinding). The HTTP client still sees the host name, so the `Host` header, TLS SNI and
certificate checks use the name. Every connection the client opens asks the backend, which
dials only the address pinned for the current task, and refuses to dial anything unpinned: a
caller that forgot the guard fails closed.

Why one client per TLS setting: `verify` and the CA bundle belong to the connection pool, so
targets with the default TLS settings share one pooled client and each distinct setting gets
its own, all closed at shutdown. Redirects are never followed, and proxies from the
environment are ignored, so nothing bypasses the pinned backend. Used by scrapes, actuator
webhooks and the Alertmanager webhook alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpcore
import httpx

from performance_agent.operator_files import OperatorFileError, read_operator_file
from performance_agent.outbound.bounded import ACCEPT_ENCODING, read_answer_head
from performance_agent.outbound.connection_pool import LinearConnectionPool

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from performance_agent.outbound.target_guard import ResolvedTarget

__all__ = (
    "ClientsClosedError",
    "OutboundConfigError",
    "PinnedClients",
    "PinnedNetworkBackend",
    "PostAnswer",
    "TlsOptions",
    "pinned_to",
    "post_json_pinned",
)


class OutboundConfigError(Exception):
    """A TLS setting that cannot be used (an unreadable CA bundle)."""


class ClientsClosedError(Exception):
    """A request after shutdown closed the clients."""


_pinned: contextvars.ContextVar[ResolvedTarget | None] = contextvars.ContextVar("pinned_target", default=None)


@contextlib.contextmanager
def pinned_to(target: ResolvedTarget) -> Iterator[None]:
    """Lets the pinned backend dial `target` for connections this task opens inside the block."""
    token = _pinned.set(target)
    try:
        yield
    finally:
        _pinned.reset(token)


@dataclass(frozen=True, slots=True)
class TlsOptions:
    verify: bool = True
    ca_bundle: str | None = None


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
        raise httpcore.ConnectError("unix sockets are never outbound targets")

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
        raise OutboundConfigError(f"the CA bundle {tls.ca_bundle!r} cannot be loaded: {exc}") from None
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class PinnedClients:
    """Pooled HTTP clients by TLS setting, all dialing through the pinned backend."""

    def __init__(self, *, max_connections: int = 256, keepalive_expiry_s: float = 30.0) -> None:
        self._limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=keepalive_expiry_s,
        )
        self._clients: dict[TlsOptions, httpx.AsyncClient] = {}
        #: TLS contexts being built, one per setting: the first collection cycle asks for the same
        #: setting from every concurrent scrape, and each context loads the system CA store (~5 ms).
        self._building: dict[TlsOptions, asyncio.Future[ssl.SSLContext]] = {}
        self._closed = False

    async def client_for(self, tls: TlsOptions) -> httpx.AsyncClient:
        """`client`, with a new TLS context (and its CA bundle) built once, in a worker thread, off the loop."""
        if tls in self._clients or self._closed:
            return self.client(tls)
        building = self._building.get(tls)
        if building is None:
            building = asyncio.ensure_future(asyncio.to_thread(_ssl_context, tls))
            self._building[tls] = building
            building.add_done_callback(lambda _: self._building.pop(tls, None))
        context = await asyncio.shield(building)  # a cancelled caller leaves the build to the others
        return self.client(tls, context)

    def client(self, tls: TlsOptions, context: ssl.SSLContext | None = None) -> httpx.AsyncClient:
        if self._closed:
            raise ClientsClosedError("the outbound HTTP clients are shut down")
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


@dataclass(frozen=True, slots=True)
class PostAnswer:
    """What an outbound POST answered: the status and at most `ANSWER_MAX_BYTES` of its text."""

    status_code: int
    text: str


async def post_json_pinned(
    clients: PinnedClients,
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
    with pinned_to(target):
        async with asyncio.timeout(timeout_s):
            async with client.stream(
                "POST",
                target.url,
                content=body,
                headers={"Content-Type": "application/json", **(headers or {}), "Accept-Encoding": ACCEPT_ENCODING},
                timeout=httpx.Timeout(timeout_s),
            ) as response:
                return PostAnswer(response.status_code, await read_answer_head(response))
