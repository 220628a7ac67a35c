"""The simulator's HTTP/1.1 listeners, all on one asyncio event loop.

Why asyncio streams rather than `http.server.ThreadingHTTPServer`: a scale benchmark runs
hundreds of simulated servers in one process; with asyncio they cost one thread in total (not a
thread per listener plus one per connection), and a listener can be closed and re-opened on the
same port at run time, which is how the `unreachable` fault really refuses connections. The
protocol subset is small and written out here: request line, headers, a `Content-Length`
body, keep-alive (the agent's HTTP client pools connections), and nothing else.

Layout: every instance can be reached through the *hub* listener under `/i/{id}/...` (the
control API there always answers, even while the instance itself is down), and unless
`single_port` is set each instance also has its own port serving the same routes at the root,
as a real server would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from performance_agent.simulator.instance import Reply

if TYPE_CHECKING:
    from performance_agent.simulator.instance import SimulatedInstance

__all__ = ("SimulatorServer",)

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
MAX_HEADERS = 100
IDLE_TIMEOUT_S = 30.0


def _is_connection_task(task: asyncio.Task[object]) -> bool:
    return not task.done() and getattr(task.get_coro(), "__qualname__", "").endswith("_listen.<locals>.on_connect")


class SimulatorServer:
    """Serves a fleet of `SimulatedInstance`s; create, `await start()`, later `await stop()`."""

    def __init__(
        self,
        instances: list[SimulatedInstance],
        host: str = "127.0.0.1",
        base_port: int = 0,
        single_port: bool = False,
        hub_port: int | None = None,
    ) -> None:
        self.host = host
        self.instances = {instance.id: instance for instance in instances}
        self.single_port = single_port
        if single_port:
            self.hub_port = base_port if hub_port is None else hub_port
            self.ports: dict[str, int] = {}
        else:
            self.ports = {inst.id: (base_port + i if base_port else 0) for i, inst in enumerate(instances)}
            self.hub_port = hub_port if hub_port is not None else (base_port + len(instances) if base_port else 0)
        self._hub: asyncio.Server | None = None
        self._listeners: dict[str, asyncio.Server] = {}
        self._connections: dict[str | None, set[asyncio.StreamWriter]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    # ------------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._hub = await self._listen(None, self.hub_port)
        self.hub_port = self._hub.sockets[0].getsockname()[1]
        try:
            await self.reconcile()
        except OSError:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Close every listener and connection and wait until no connection task is left."""
        self._closing = True
        servers = [server for server in (self._hub, *self._listeners.values()) if server is not None]
        self._hub, self._listeners = None, {}
        for server in servers:
            server.close()
        for writers in self._connections.values():
            for writer in list(writers):
                writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()  # e.g. a handler sleeping out `scrape_delay_s`; it ends quietly
        while True:  # connections accepted during shutdown start late; let them see `_closing`
            await asyncio.sleep(0)
            pending = [task for task in asyncio.all_tasks() if _is_connection_task(task)]
            if not pending:
                break
            await asyncio.gather(*pending, return_exceptions=True)
        for server in servers:
            await server.wait_closed()

    async def _listen(self, owner: str | None, port: int) -> asyncio.Server:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            if self._closing or task is None:
                writer.transport.abort()
                return
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            try:
                await self._serve(owner, reader, writer)
            except asyncio.CancelledError:
                # Only `stop()` cancels; ending normally keeps asyncio's stream callback from
                # logging the cancellation as an error.
                writer.transport.abort()

        return await asyncio.start_server(on_connect, self.host, port, reuse_address=True)

    async def reconcile(self, sparing: asyncio.StreamWriter | None = None) -> None:
        """Open or close each instance's own listener to match whether it should answer.

        `sparing` is the connection whose request caused the change; it still gets its reply
        and is closed by its handler right after.
        """
        for instance_id, port in self.ports.items():
            wanted = self.instances[instance_id].serves_data
            server = self._listeners.get(instance_id)
            if wanted and server is None:
                server = await self._listen(instance_id, port)
                self._listeners[instance_id] = server
                self.ports[instance_id] = server.sockets[0].getsockname()[1]
            elif not wanted and server is not None:
                del self._listeners[instance_id]
                server.close()  # no wait_closed(): the caller may be one of its own connections
                for writer in list(self._connections.get(instance_id, ())):
                    if writer is not sparing:
                        writer.transport.abort()

    # -------------------------------------------------------------------------- routing
    def route(self, owner: str | None, method: str, path: str, body: bytes) -> Reply:
        if owner is not None:
            return self.instances[owner].handle(method, path, body)
        if path in ("/", "/fleet"):
            return Reply.json(200, [self.describe(instance_id) for instance_id in self.instances])
        if path.startswith("/i/"):
            instance_id, _, rest = path[3:].partition("/")
            instance = self.instances.get(unquote(instance_id))
            if instance is not None:
                return instance.handle(method, "/" + rest, body)
            return Reply.json(404, {"error": "unknown_instance", "message": f"no instance {instance_id!r}"})
        return Reply.json(404, {"error": "not_found", "message": f"no route {path}"})

    def describe(self, instance_id: str) -> dict[str, str]:
        instance = self.instances[instance_id]
        hub = f"http://{self.host}:{self.hub_port}"
        own = self.ports.get(instance_id)
        endpoint = f"http://{self.host}:{own}" if own is not None else hub
        prefix = "" if own is not None else f"/i/{instance_id}"
        return {
            "instance_id": instance_id,
            "engine": instance.binding.name,
            "version": instance.spec.version,
            "endpoint": endpoint,
            "metrics_path": prefix + "/metrics",
            "base_url": endpoint + prefix,
            "control_url": f"{hub}/i/{instance_id}/control",
        }

    # --------------------------------------------------------------------------- HTTP
    async def _serve(self, owner: str | None, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers = self._connections.setdefault(owner, set())
        writers.add(writer)
        try:
            while await self._one_request(owner, reader, writer):
                pass
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except Exception:
            log.exception("simulator connection failed")
        finally:
            writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one_request(self, owner: str | None, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT_S)
        if not line:
            return False
        parts = line.decode("latin-1").rstrip("\r\n").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            await self._write(writer, Reply.json(400, {"error": "bad_request"}), keep_alive=False)
            return False
        method, target, version = parts
        headers: dict[str, str] = {}
        while True:
            raw = await reader.readline()
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
            if len(headers) > MAX_HEADERS:
                await self._write(writer, Reply.json(431, {"error": "too_many_headers"}), keep_alive=False)
                return False
        try:
            length = int(headers.get("content-length", "0") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES or "chunked" in headers.get("transfer-encoding", ""):
            await self._write(writer, Reply.json(413, {"error": "body_not_accepted"}), keep_alive=False)
            return False
        body = await reader.readexactly(length) if length else b""
        path = urlsplit(target).path or "/"
        reply = self.route(owner, method, path, body)
        if reply.drop:
            writer.transport.abort()
            return False
        if reply.delay_s > 0:
            await asyncio.sleep(reply.delay_s)
        keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if method == "POST":  # before replying, so a client that reads the answer sees the new state
            await self.reconcile(sparing=writer)
            keep_alive = keep_alive and (owner is None or owner in self._listeners)
        await self._write(writer, reply, keep_alive)
        return keep_alive

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, reply: Reply, keep_alive: bool) -> None:
        try:
            phrase = HTTPStatus(reply.status).phrase
        except ValueError:
            phrase = "Error"
        head = (
            f"HTTP/1.1 {reply.status} {phrase}\r\n"
            f"Content-Type: {reply.content_type}\r\nContent-Length: {len(reply.body)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
        )
        writer.write(head.encode("latin-1") + reply.body)
        await writer.drain()
