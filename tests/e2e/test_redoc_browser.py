"""The API docs UIs render in a real browser with the outside network cut off.

This is the air-gapped cluster case: if ReDoc or Swagger UI needed a CDN script, a web font or
a logo from the internet, the browser here could not get it and the test sees either a blank
page or an outside request in the browser's net log.

Each app target is a ``module:callable`` string returning a Litestar app. The service's real
factory is listed too, so the same checks cover the full API once it is wired.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import httpx
import msgspec
import pytest
import uvicorn
from litestar import Litestar, get, post
from litestar.params import JSONBody

from performance_agent import __version__
from performance_agent.openapi_docs import DOCS_ASSETS_PATH, ApiTag, build_openapi_config, docs_assets_router
from tests.browser import outside_requests, render_page, visible_text

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ASGIScope = MutableMapping[str, Any]
ASGIMessage = MutableMapping[str, Any]
ASGIReceive = Callable[[], Awaitable[ASGIMessage]]
ASGISend = Callable[[ASGIMessage], Awaitable[None]]
ASGIApp = Callable[[ASGIScope, ASGIReceive, ASGISend], Awaitable[None]]

DUMMY_APP_TARGET = "tests.e2e.test_redoc_browser:build_docs_demo_app"
SERVICE_APP_TARGET = "performance_agent.app:create_app"
APP_TARGETS: tuple[str, ...] = (DUMMY_APP_TARGET, SERVICE_APP_TARGET)

# ReDoc's own message when it cannot load or parse the schema.
REDOC_FAILURE_TEXT = "Something went wrong"


class Threshold(msgspec.Struct, forbid_unknown_fields=True):
    metric: str
    limit_s: float


@get("/api/v1/probes", summary="List latency probes", tags=[ApiTag.METRICS], sync_to_thread=False)
def list_probes() -> list[Threshold]:
    return [Threshold(metric="ttft_p99", limit_s=0.5)]


@post("/api/v1/probes", summary="Register a latency probe", tags=[ApiTag.INSTANCES], sync_to_thread=False)
def create_probe(data: JSONBody[Threshold]) -> Threshold:
    return data


def build_docs_demo_app() -> Litestar:
    """A minimal app with the production docs configuration, for when the service app is not wired yet."""
    return Litestar(
        route_handlers=[list_probes, create_probe, docs_assets_router()],
        openapi_config=build_openapi_config(__version__),
    )


def load_app(target: str) -> Litestar:
    module_name, _, attribute = target.partition(":")
    factory = getattr(importlib.import_module(module_name), attribute)
    return cast("Litestar", factory())


@dataclass
class ResponseLog:
    """Status of every response the server sent, by path, so a test can prove an asset was served from here."""

    statuses: dict[str, list[int]] = field(default_factory=dict)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        async def recording_app(scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return

            async def recording_send(message: ASGIMessage) -> None:
                if message["type"] == "http.response.start":
                    self.statuses.setdefault(scope["path"], []).append(message["status"])
                await send(message)

            await app(scope, receive, recording_send)

        return recording_app


@dataclass(frozen=True)
class ServedApp:
    base_url: str
    responses: ResponseLog


@contextlib.contextmanager
def serve(app: ASGIApp) -> Iterator[ServedApp]:
    """Serve ``app`` under uvicorn on 127.0.0.1, the way browsers meet the service."""
    responses = ResponseLog()
    # Binding before the server thread starts means the browser can connect at once: the kernel
    # queues the connection until uvicorn accepts it, so nothing has to wait for start-up.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(responses.wrap(app), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        yield ServedApp(base_url=f"http://127.0.0.1:{port}", responses=responses)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listener.close()
    assert not thread.is_alive(), "uvicorn did not shut down"


@pytest.fixture(params=APP_TARGETS)
def served_app(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServedApp]:
    target = cast("str", request.param)
    if importlib.util.find_spec(target.partition(":")[0]) is None:
        pytest.skip(f"{target} does not exist yet")
    monkeypatch.setenv("PERF_AGENT_DATABASE", str(tmp_path / "agent.db"))
    monkeypatch.setenv("PERF_AGENT_ENVIRONMENT", "development")
    with serve(cast("ASGIApp", load_app(target))) as served:
        yield served


def documented_summaries(base_url: str) -> list[str]:
    schema = httpx.get(f"{base_url}/schema/openapi.json", timeout=30).json()
    summaries = [
        operation["summary"]
        for path_item in schema["paths"].values()
        for operation in path_item.values()
        if isinstance(operation, dict) and "summary" in operation
    ]
    assert summaries, "the schema documents no operation summaries"
    return summaries


def assert_rendered_offline(served: ServedApp, page_path: str, expected_assets: list[str]) -> str:
    page = render_page(f"{served.base_url}{page_path}")
    assert outside_requests(page.page_requests) == []
    requested_paths = {url.removeprefix(served.base_url).partition("?")[0] for url in page.page_requests}
    for asset in expected_assets:
        asset_path = f"{DOCS_ASSETS_PATH}/{asset}"
        assert asset_path in requested_paths
        assert served.responses.statuses.get(asset_path) == [200]
    text = visible_text(page.dom)
    missing = [summary for summary in documented_summaries(served.base_url) if summary not in text]
    assert missing == []
    return text


def test_redoc_renders_every_operation_from_local_assets(served_app: ServedApp) -> None:
    text = assert_rendered_offline(served_app, "/schema/redoc", ["redoc.standalone.js"])
    assert REDOC_FAILURE_TEXT not in text
    assert f"performance-agent ({__version__})" in text
    for tag in ApiTag:
        assert tag.value in text


def test_swagger_renders_every_operation_from_local_assets(served_app: ServedApp) -> None:
    text = assert_rendered_offline(
        served_app,
        "/schema/swagger",
        ["swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"],
    )
    assert "performance-agent" in text
    assert "Authorize" in text


def test_docs_page_without_its_assets_does_not_render() -> None:
    """The checks above can fail: the same page without the asset router renders no operation at all."""
    app = Litestar(route_handlers=[list_probes, create_probe], openapi_config=build_openapi_config(__version__))
    with serve(cast("ASGIApp", app)) as served:
        page = render_page(f"{served.base_url}/schema/redoc")
    assert served.responses.statuses[f"{DOCS_ASSETS_PATH}/redoc.standalone.js"] == [404]
    assert outside_requests(page.page_requests) == []
    assert page.dom.count("List latency probes") == 1, "the summary should exist only in the inline schema"
    assert "List latency probes" not in visible_text(page.dom)
