"""OpenAPI document metadata and the API docs UIs, served entirely by the app itself.

The agent runs in air-gapped clusters, where Litestar's default UIs (which load from CDNs and
Google Fonts) render a blank page. Every asset the UIs need is vendored under
``static/openapi/`` and served from ``/schema/assets``; see ``scripts/update-docs-assets.sh``.
"""

from __future__ import annotations

import enum
import functools
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from litestar.datastructures import CacheControlHeader
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, RedocRenderPlugin, SwaggerRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, Contact, License, SecurityScheme, Tag
from litestar.static_files import create_static_files_router

if TYPE_CHECKING:
    from litestar.router import Router

__all__ = (
    "API_KEY_SCHEME",
    "BEARER_SCHEME",
    "DOCS_ASSETS_DIR",
    "DOCS_ASSETS_PATH",
    "REDOC_PATH",
    "SCHEMA_PATH",
    "SWAGGER_PATH",
    "ApiTag",
    "build_openapi_config",
    "docs_assets_router",
)

SCHEMA_PATH = "/schema"
DOCS_ASSETS_PATH = f"{SCHEMA_PATH}/assets"
SWAGGER_PATH = f"{SCHEMA_PATH}/swagger"
REDOC_PATH = f"{SCHEMA_PATH}/redoc"
DOCS_ASSETS_DIR = Path(__file__).resolve().parent / "static" / "openapi"

API_KEY_SCHEME = "ApiKey"
BEARER_SCHEME = "Bearer"

# An inline empty icon stops browsers from asking the server (or a CDN) for /favicon.ico.
_INLINE_FAVICON = "<link rel='icon' href='data:,'>"

# Asset URLs carry a content hash, so a year of caching is safe: an upgrade changes the URL.
_ASSET_CACHE_CONTROL = CacheControlHeader(public=True, max_age=365 * 24 * 3600, immutable=True)


class ApiTag(enum.StrEnum):
    """Operation groups; controllers tag with these so the docs sidebar matches the declared tags."""

    SYSTEM = "System"
    INSTANCES = "Instances"
    METRICS = "Metrics"
    ANALYSIS = "Analysis"
    OPTIMIZATION = "Optimization"
    WORKFLOWS = "Workflows"
    ALERTS = "Alerts"


_TAG_DESCRIPTIONS: dict[ApiTag, str] = {
    ApiTag.SYSTEM: (
        "Liveness, readiness and dependency health, the non-sensitive running configuration, and the "
        "capabilities this build registers (engines, optimization types, workflow features). Health and "
        "readiness are open and never rate limited, so orchestrator probes can rely on them."
    ),
    ApiTag.INSTANCES: (
        "Register the inference servers (vLLM, TGI, SGLang) the agent watches, update their endpoints and "
        "SLO targets, and remove them together with their history."
    ),
    ApiTag.METRICS: (
        "Scrape an instance's Prometheus `/metrics` page on demand and read its normalized snapshot history: "
        "queueing, latency quantiles, throughput, KV-cache usage, with one vocabulary across engines."
    ),
    ApiTag.ANALYSIS: (
        "Find bottlenecks in a window of snapshots and check them against the instance's SLO targets, with "
        "the evidence behind every finding."
    ),
    ApiTag.OPTIMIZATION: (
        "Turn findings into a tuning plan: engine flags and environment changes with their expected impact "
        "on latency and throughput, for a chosen objective."
    ),
    ApiTag.WORKFLOWS: (
        "Roll a tuning change out gradually (canary first), gated by live health comparisons, with approval "
        "steps, pause, resume, abort and automatic rollback."
    ),
    ApiTag.ALERTS: "SLO alerts as they fire and resolve, with timestamps and the measurements that triggered them.",
}

_DESCRIPTION = """\
performance-agent keeps fleets of LLM inference servers fast and safe to tune. It scrapes the
Prometheus `/metrics` pages of vLLM, TGI and SGLang servers, normalizes them into comparable
snapshots, finds bottlenecks, checks SLOs, proposes tuning changes and rolls them out gradually
with automatic rollback.

## Authentication

Send an API key either as `X-API-Key: <key>` or as `Authorization: Bearer <key>`. Each key has a
role, and each role includes the ones before it:

| role | may |
|---|---|
| `viewer` | read everything |
| `operator` | register, update and delete instances, change SLOs, collect, analyze, optimize, start workflows |
| `approver` | approve, reject, pause, resume, abort and cancel workflows, retry a rollback |
| `admin` | everything |

A missing or wrong key is answered with `401 unauthorized`, a key whose role is too low with
`403 forbidden`. Health, readiness, the agent's own `/metrics` and these docs need no key. When
the operator configured no keys at all (development only), every endpoint is open.

## Errors

Every non-2xx answer (except the health reports, which return their own report with `503`)
has the same shape, and clients branch on `error`, never on `message`:

```json
{
  "error": "validation_error",
  "message": "The request body is not valid: ...",
  "details": [
    {"field": "body.slo.ttft_p99_s", "message": "Expected `float`, got `str`", "type": "invalid"},
    {"field": "body.instance_id", "message": "field required", "type": "missing"}
  ],
  "invalid_fields": ["body.slo.ttft_p99_s", "body.instance_id"],
  "timestamp": "2025-01-31T12:00:00Z",
  "path": "/api/v1/analyze",
  "request_id": "9f0c2a7e4b1d4c3a",
  "context": {}
}
```

Each detail's `type` is `invalid`, `missing` or `unknown_field`. `invalid_fields` appears on
validation errors only; `context` carries machine-readable specifics
such as `allowed_actions`, `workflow_id`, `upstream_status` or `detected_engine`. Generic codes:
`400 invalid_json`, `401 unauthorized`, `403 forbidden`, `404 not_found`,
`405 method_not_allowed` (with `Allow`), `409 conflict`, `413 payload_too_large`,
`415 unsupported_media_type` (a body without `Content-Type: application/json`),
`422 validation_error`, `429 rate_limited` (with `Retry-After` and `RateLimit-*` headers),
`500 internal_server_error`; each operation lists its own domain codes. Bodies are validated
strictly: a string where a number belongs is a `422`, never coerced.

Every response carries `X-Request-ID`. Send your own (1-128 characters of `A-Z a-z 0-9 . _ : -`)
to find a request in the agent's logs; otherwise one is generated.

## Conventions

- Durations are seconds, and their field names end in `_s` (`ttft_p99_s`).
- Ratios and usages are fractions from 0 to 1 (`kv_cache_usage: 0.83`), never percentages.
- A value the server does not expose or the agent cannot know is `null`, never `0`, `NaN` or `Infinity`.
- Timestamps are UTC, ISO 8601.
- `POST` that creates a resource answers `201`; other `POST`s and `PUT` answer `200`; `DELETE` answers `204`.
"""


@functools.cache
def _asset_url(filename: str) -> str:
    """Local URL of a vendored asset, versioned by content so browsers never run a stale UI after an upgrade."""
    digest = hashlib.sha256((DOCS_ASSETS_DIR / filename).read_bytes()).hexdigest()[:12]
    return f"{DOCS_ASSETS_PATH}/{filename}?v={digest}"


def build_openapi_config(version: str) -> OpenAPIConfig:
    """OpenAPI metadata plus UIs that render with no outside network.

    Every operation requires one of the two key schemes unless its handler opts out with
    ``security=[]`` (health, readiness and other open endpoints must do so).
    """
    return OpenAPIConfig(
        title="performance-agent",
        version=version,
        summary="Finds bottlenecks in LLM inference servers and rolls tuning changes out safely.",
        description=_DESCRIPTION,
        contact=Contact(name="performance-agent maintainers"),
        license=License(name="Apache-2.0", identifier="Apache-2.0"),
        tags=[Tag(name=tag.value, description=_TAG_DESCRIPTIONS[tag]) for tag in ApiTag],
        components=Components(
            security_schemes={
                API_KEY_SCHEME: SecurityScheme(
                    type="apiKey",
                    name="X-API-Key",
                    security_scheme_in="header",
                    description="An API key from `PERF_AGENT_API_KEYS`; its role decides what it may do.",
                ),
                BEARER_SCHEME: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="The same API key, sent as `Authorization: Bearer <key>`.",
                ),
            }
        ),
        security=[{API_KEY_SCHEME: []}, {BEARER_SCHEME: []}],
        path=SCHEMA_PATH,
        render_plugins=[
            SwaggerRenderPlugin(
                path="/swagger",
                js_url=_asset_url("swagger-ui-bundle.js"),
                css_url=_asset_url("swagger-ui.css"),
                standalone_preset_js_url=_asset_url("swagger-ui-standalone-preset.js"),
                favicon=_INLINE_FAVICON,
            ),
            RedocRenderPlugin(
                path="/redoc",
                js_url=_asset_url("redoc.standalone.js"),
                google_fonts=False,
                favicon=_INLINE_FAVICON,
            ),
            JsonRenderPlugin(path="/openapi.json"),
            YamlRenderPlugin(path=["/openapi.yaml", "/openapi.yml"]),
        ],
    )


def docs_assets_router() -> Router:
    """Serves the vendored UI files; kept out of the schema because they are not part of the API."""
    return create_static_files_router(
        path=DOCS_ASSETS_PATH,
        directories=[DOCS_ASSETS_DIR],
        name="docs_assets",
        cache_control=_ASSET_CACHE_CONTROL,
        include_in_schema=False,
    )
