"""The OpenAPI document's metadata and the docs pages, which must work with no outside network."""

from __future__ import annotations

import hashlib
import importlib.util
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest
from litestar import Litestar, get
from litestar.testing import TestClient

from performance_agent import __version__
from performance_agent.openapi_docs import (
    API_KEY_SCHEME,
    BEARER_SCHEME,
    DOCS_ASSETS_DIR,
    DOCS_ASSETS_PATH,
    ApiTag,
    build_openapi_config,
    docs_assets_router,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

HTML_PAGES = ("/schema/swagger", "/schema/redoc", "/schema")
EXPECTED_ASSETS = {
    "/schema/swagger": {"swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"},
    "/schema/redoc": {"redoc.standalone.js"},
}
CDN_MARKERS = ("jsdelivr", "unpkg", "cdn.redoc.ly", "fonts.googleapis", "fonts.gstatic", "cdnjs")


@get("/api/v1/widgets", summary="List widgets", tags=[ApiTag.SYSTEM], sync_to_thread=False)
def list_widgets() -> list[str]:
    return ["a"]


def docs_app() -> Litestar:
    return Litestar(route_handlers=[list_widgets, docs_assets_router()], openapi_config=build_openapi_config("9.8.7"))


@pytest.fixture
def client() -> Iterator[TestClient[Litestar]]:
    with TestClient(docs_app()) as test_client:
        yield test_client


class ResourceCollector(HTMLParser):
    """Every URL the page would load by itself (scripts, styles, icons, images, frames)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"src", "href"} and value is not None:
                self.urls.append(value)


def loaded_urls(page: str) -> list[str]:
    collector = ResourceCollector()
    collector.feed(page)
    return collector.urls


def test_document_metadata_reads_like_a_product(client: TestClient[Litestar]) -> None:
    info = client.get("/schema/openapi.json").json()["info"]
    assert info["title"] == "performance-agent"
    assert info["version"] == "9.8.7"
    assert info["license"] == {"name": "Apache-2.0", "identifier": "Apache-2.0"}
    assert info["contact"]["name"] == "performance-agent maintainers"
    description = info["description"]
    for must_mention in (
        "X-API-Key",
        "Authorization: Bearer",
        "401 unauthorized",
        "403 forbidden",
        '"invalid_fields"',
        '"request_id"',
        '"context"',
        "X-Request-ID",
        "Retry-After",
        "_s",
        "fractions from 0 to 1",
        "`null`",
        "UTC, ISO 8601",
    ):
        assert must_mention in description


def test_tags_are_declared_in_sidebar_order_with_descriptions(client: TestClient[Litestar]) -> None:
    tags = client.get("/schema/openapi.json").json()["tags"]
    assert [tag["name"] for tag in tags] == [
        "System",
        "Instances",
        "Metrics",
        "Analysis",
        "Optimization",
        "Workflows",
        "Alerts",
    ]
    for tag in tags:
        assert len(tag["description"]) > 40, tag["name"]


def test_both_key_schemes_are_declared_and_either_satisfies_the_default(client: TestClient[Litestar]) -> None:
    schema = client.get("/schema/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes[API_KEY_SCHEME] | {"description": ""} == {
        "type": "apiKey",
        "name": "X-API-Key",
        "in": "header",
        "description": "",
    }
    assert schemes[BEARER_SCHEME]["type"] == "http"
    assert schemes[BEARER_SCHEME]["scheme"] == "bearer"
    assert schema["security"] == [{API_KEY_SCHEME: []}, {BEARER_SCHEME: []}]


def test_schema_is_served_as_json_and_yaml(client: TestClient[Litestar]) -> None:
    assert client.get("/schema/openapi.json").json()["openapi"].startswith("3.1")
    for path in ("/schema/openapi.yaml", "/schema/openapi.yml"):
        response = client.get(path)
        assert response.status_code == 200
        assert "title: performance-agent" in response.text


def test_asset_router_stays_out_of_the_schema(client: TestClient[Litestar]) -> None:
    paths = client.get("/schema/openapi.json").json()["paths"]
    assert list(paths) == ["/api/v1/widgets"]


@pytest.mark.parametrize("page_path", HTML_PAGES)
def test_docs_pages_load_nothing_from_another_host(client: TestClient[Litestar], page_path: str) -> None:
    response = client.get(page_path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    urls = loaded_urls(response.text)
    assert urls, "the page loads no assets at all"
    for url in urls:
        parts = urlsplit(url)
        assert parts.scheme in {"", "data"}, url
        assert parts.netloc == "", url
    for marker in CDN_MARKERS:
        assert marker not in response.text


@pytest.mark.parametrize(("page_path", "assets"), sorted(EXPECTED_ASSETS.items()))
def test_every_asset_a_page_names_is_served_by_the_app(
    client: TestClient[Litestar], page_path: str, assets: set[str]
) -> None:
    urls = [url for url in loaded_urls(client.get(page_path).text) if url.startswith(DOCS_ASSETS_PATH)]
    assert {urlsplit(url).path.rsplit("/", 1)[1] for url in urls} == assets
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200
        filename = urlsplit(url).path.rsplit("/", 1)[1]
        assert response.content == (DOCS_ASSETS_DIR / filename).read_bytes()
        assert response.headers["cache-control"] == "max-age=31536000, public, immutable"


def test_asset_urls_change_when_the_file_content_changes(client: TestClient[Litestar]) -> None:
    """Safe to cache for a year only because an upgraded file gets a new URL."""
    for url in loaded_urls(client.get("/schema/redoc").text):
        if not url.startswith(DOCS_ASSETS_PATH):
            continue
        parts = urlsplit(url)
        content = (DOCS_ASSETS_DIR / Path(parts.path).name).read_bytes()
        assert parse_qs(parts.query)["v"] == [hashlib.sha256(content).hexdigest()[:12]]


@pytest.mark.parametrize(
    "path",
    [
        f"{DOCS_ASSETS_PATH}/missing.js",
        f"{DOCS_ASSETS_PATH}/%2e%2e/openapi_docs.py",
        f"{DOCS_ASSETS_PATH}/..%2fopenapi_docs.py",
        f"{DOCS_ASSETS_PATH}/%2e%2e/%2e%2e/app.py",
    ],
)
def test_asset_router_serves_nothing_outside_the_vendored_dir(client: TestClient[Litestar], path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert b"build_openapi_config" not in response.content
    assert b"create_app" not in response.content


def test_vendored_assets_are_the_pinned_major_versions_with_licences() -> None:
    versions = (DOCS_ASSETS_DIR / "VERSIONS.txt").read_text()
    assert re.search(r"^swagger-ui-dist 5\.\d+\.\d+ \(Apache-2\.0\)", versions, re.MULTILINE)
    assert re.search(r"^redoc 2\.\d+\.\d+ \(MIT\)", versions, re.MULTILINE)
    assert "Apache License" in (DOCS_ASSETS_DIR / "LICENSE.swagger-ui").read_text()
    assert "MIT License" in (DOCS_ASSETS_DIR / "LICENSE.redoc").read_text()
    total = sum(path.stat().st_size for path in DOCS_ASSETS_DIR.iterdir())
    assert 2_000_000 < total < 5_000_000


def test_redoc_bundle_asks_no_cdn_for_anything() -> None:
    """ReDoc draws its sidebar logo from cdn.redoc.ly; the update script swaps it for an inline image."""
    bundle = (DOCS_ASSETS_DIR / "redoc.standalone.js").read_text(encoding="utf-8")
    for marker in CDN_MARKERS:
        assert marker not in bundle
    assert 'alt:"redocly logo"' in bundle
    assert 'src:"data:image/svg+xml,' in bundle


def test_service_app_docs_pages_load_nothing_from_another_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("performance_agent.app") is None:
        pytest.skip("performance_agent.app does not exist yet")
    from performance_agent.app import create_app

    monkeypatch.setenv("PERF_AGENT_DATABASE", str(tmp_path / "agent.db"))
    monkeypatch.setenv("PERF_AGENT_ENVIRONMENT", "development")
    with TestClient(create_app()) as service:
        assert service.get("/schema/openapi.json").json()["info"]["version"] == __version__
        for page_path in EXPECTED_ASSETS:
            page = service.get(page_path).text
            for url in loaded_urls(page):
                assert urlsplit(url).netloc == "", url
                if url.startswith(DOCS_ASSETS_PATH):
                    assert service.get(url).status_code == 200
