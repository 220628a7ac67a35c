"""The linear pool makes the same keep-alive decisions as httpcore's, over real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpcore
import pytest

from performance_agent.outbound import connection_pool
from performance_agent.outbound.connection_pool import LinearConnectionPool

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class KeepAliveServer:
    """HTTP/1.1 server on 127.0.0.1 that counts connections and can hang up on idle ones."""

    def __init__(self) -> None:
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def hang_up_all(self) -> None:
        for writer in self.writers:
            writer.close()
        await asyncio.sleep(0.05)


@pytest.fixture
async def server() -> AsyncIterator[KeepAliveServer]:
    state = KeepAliveServer()
    listener = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield state


async def _get(pool: httpcore.AsyncConnectionPool, port: int) -> bytes:
    response = await pool.request("GET", f"http://127.0.0.1:{port}/metrics")
    return response.content


async def test_sequential_requests_reuse_one_connection(server: KeepAliveServer) -> None:
    async with LinearConnectionPool(max_connections=8, max_keepalive_connections=8) as pool:
        for _ in range(5):
            assert await _get(pool, server.port) == b"ok"
    assert server.connections == 1


async def test_concurrent_requests_open_at_most_max_connections(server: KeepAliveServer) -> None:
    async with LinearConnectionPool(max_connections=3, max_keepalive_connections=3) as pool:
        results = await asyncio.gather(*(_get(pool, server.port) for _ in range(12)))
        assert results == [b"ok"] * 12
        assert len(pool.connections) <= 3
    assert server.connections <= 3


async def test_a_connection_the_server_closed_is_not_reused(server: KeepAliveServer) -> None:
    async with LinearConnectionPool(max_connections=4, max_keepalive_connections=4) as pool:
        assert await _get(pool, server.port) == b"ok"
        await server.hang_up_all()
        assert await _get(pool, server.port) == b"ok"  # would raise on the dead socket
    assert server.connections == 2


async def test_sweep_closes_surplus_idle_connections(server: KeepAliveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection_pool, "SWEEP_INTERVAL_S", 0.0)
    async with LinearConnectionPool(max_connections=6, max_keepalive_connections=2) as pool:
        await asyncio.gather(*(_get(pool, server.port) for _ in range(6)))
        await _get(pool, server.port)  # the next assignment sweeps
        idle = [c for c in pool.connections if c.is_idle()]
        assert len(idle) <= 2


async def test_full_pool_waits_for_a_free_connection(server: KeepAliveServer) -> None:
    async with LinearConnectionPool(max_connections=1, max_keepalive_connections=1) as pool:
        results = await asyncio.gather(*(_get(pool, server.port) for _ in range(4)))
    assert results == [b"ok"] * 4
    assert server.connections == 1


def test_it_is_an_httpcore_pool() -> None:
    assert issubclass(LinearConnectionPool, httpcore.AsyncConnectionPool)
