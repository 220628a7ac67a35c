"""Request and response bodies of the instances, collect and history endpoints.

Every request Struct forbids unknown fields, so a misspelt field is a 422 rather than a silently
ignored setting. Constraints live in the types (`Meta`), so validation, OpenAPI and the error's
dotted field path all come from one place.

Scrape headers are either a literal string or a reference to an environment variable of the
agent (`{"env": "VLLM_TOKEN", "prefix": "Bearer "}`), resolved at each scrape. Only variables
named in `PERF_AGENT_SCRAPE_HEADER_ENV` may be referenced (otherwise any operator could make the
agent send its own secrets to a server they run). Literal values are write-only: responses show
`REDACTED` in their place, and sending `REDACTED` back is refused, so a read-modify-write cannot
store the marker as a token.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from performance_agent.engines.registry import SUPPORTED_ENGINES
from performance_agent.fleet.slo import SloTargets, SloTargetsUpdate

__all__ = (
    "ENGINE_PATTERN",
    "HEADER_ENV_SETTING",
    "HEADER_VALUE_PATTERN",
    "INSTANCE_ID_PATTERN",
    "REDACTED",
    "CollectRequest",
    "ConfigValue",
    "EngineName",
    "GpuInfo",
    "HeaderFromEnv",
    "HeaderValue",
    "Instance",
    "InstanceCreate",
    "InstanceError",
    "InstanceReplace",
    "InstanceSpec",
    "InstanceStatus",
    "ModelInfo",
    "metrics_url",
)

#: `.` and `..` are refused: no client can address them in a URL path (they normalise away), and
#: a path built from them would leave its per-instance prefix.
INSTANCE_ID_PATTERN = r"^(?!\.\.?$)[A-Za-z0-9._-]{1,128}$"
ENGINE_PATTERN = "^(" + "|".join(SUPPORTED_ENGINES) + ")$"
REDACTED = "REDACTED"
#: The setting that lists the environment variables a scrape header may reference.
HEADER_ENV_SETTING = "PERF_AGENT_SCRAPE_HEADER_ENV"

InstanceId = Annotated[
    str,
    Meta(
        pattern=INSTANCE_ID_PATTERN,
        min_length=1,
        max_length=128,
        description="Letters, digits, `.`, `_` and `-`; 1 to 128 characters; not `.` nor `..`.",
        examples=["vllm-llama-0"],
    ),
]
EngineName = Annotated[
    str, Meta(pattern=ENGINE_PATTERN, description="One of the engines this build supports.", examples=["vllm"])
]
Endpoint = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=2048,
        pattern=r"^[^\s?#]+$",
        description="Base URL of the server, `scheme://host:port`; the page is fetched from endpoint + metrics_path.",
        examples=["http://10.0.0.5:8000"],
    ),
]
MetricsPath = Annotated[
    str,
    Meta(
        pattern=r"^/[^\s#]*$",
        max_length=2048,
        description="Path of the metrics page on the server.",
        examples=["/metrics"],
    ),
]
TimeoutSeconds = Annotated[float, Meta(gt=0, le=60, description="Scrape timeout in seconds (0 < t <= 60).")]
LabelKey = Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")]
LabelValue = Annotated[str, Meta(max_length=256)]
Labels = Annotated[dict[LabelKey, LabelValue], Meta(max_length=64, examples=[{"team": "search", "zone": "a"}])]
HeaderName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")]
#: Visible ASCII, space and tab only: a header value is sent as ASCII bytes, so anything else
#: (accents, emoji, control characters) could never be sent and is refused at registration.
HEADER_VALUE_PATTERN = r"^[\t\x20-\x7e]*$"
LiteralHeader = Annotated[str, Meta(max_length=8192, pattern=HEADER_VALUE_PATTERN)]
FiniteFloat = Annotated[float, Meta(ge=-1e300, le=1e300)]
ConfigValue = str | int | FiniteFloat | bool | None
EngineArgKey = Annotated[str, Meta(pattern=r"^-{0,2}[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
CaBundle = Annotated[str, Meta(min_length=1, max_length=4096, description="Path of a PEM CA bundle on the agent.")]
InstanceStatus = Literal["pending", "up", "down"]


class HeaderFromEnv(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A header value read from the agent's environment at each scrape (the variable must be allowlisted)."""

    env: Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$", examples=["VLLM_TOKEN"])]
    prefix: Annotated[str, Meta(max_length=64, pattern=HEADER_VALUE_PATTERN, examples=["Bearer "])] = ""


HeaderValue = LiteralHeader | HeaderFromEnv
Headers = Annotated[
    dict[HeaderName, HeaderValue],
    Meta(max_length=32, examples=[{"Authorization": {"env": "VLLM_TOKEN", "prefix": "Bearer "}}]),
]


class GpuInfo(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    model: Annotated[str, Meta(max_length=128, examples=["H100-80GB"])] | None = None
    memory_gib: Annotated[float, Meta(gt=0, le=4096)] | None = None
    count: Annotated[int, Meta(ge=1, le=1024)] | None = None


class ModelInfo(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(max_length=256, examples=["meta-llama/Llama-3.1-8B-Instruct"])] | None = None
    architecture: Annotated[str, Meta(max_length=128, examples=["LlamaForCausalLM"])] | None = None
    parameters_b: Annotated[float, Meta(gt=0, le=100000)] | None = None
    max_model_len: Annotated[int, Meta(ge=1)] | None = None


class _InstanceFields(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    engine: EngineName
    endpoint: Endpoint
    metrics_path: MetricsPath = "/metrics"
    labels: Labels = msgspec.field(default_factory=dict)
    engine_args: Annotated[
        dict[EngineArgKey, ConfigValue],
        Meta(max_length=256, description="Flags the server was launched with.", examples=[{"max_num_seqs": 256}]),
    ] = msgspec.field(default_factory=dict)
    gpu: GpuInfo | None = None
    model: ModelInfo | None = None
    headers: Headers = msgspec.field(default_factory=dict)
    tls_verify: bool = True
    ca_bundle: CaBundle | None = None


class InstanceSpec(_InstanceFields, kw_only=True, forbid_unknown_fields=True):
    """What a caller says about an instance (everything but its id and its observed state), as stored.

    `slo` holds every target once set (omitted ones were filled from the configured defaults when
    the body arrived); None means the configured defaults apply at each evaluation.
    """

    slo: SloTargets | None = None


class _InstanceBody(_InstanceFields, kw_only=True, forbid_unknown_fields=True):
    # Why a partial type here: an omitted target must mean the configured default, as in PUT /slo.
    slo: SloTargetsUpdate | None = None


class InstanceCreate(_InstanceBody, kw_only=True, forbid_unknown_fields=True):
    instance_id: InstanceId


class InstanceReplace(_InstanceBody, kw_only=True, forbid_unknown_fields=True):
    """PUT body: the whole spec; `instance_id` may be repeated but must equal the path's."""

    instance_id: InstanceId | None = None


class InstanceError(msgspec.Struct, kw_only=True):
    """Why the last scrape failed; `code` is the error code the collect endpoint would have answered."""

    code: str
    message: str
    at: datetime
    upstream_status: int | None = None


class Instance(msgspec.Struct, kw_only=True):
    instance_id: str
    engine: str
    endpoint: str
    metrics_path: str
    labels: dict[str, str]
    slo: SloTargets | None
    engine_args: dict[str, ConfigValue]
    gpu: GpuInfo | None
    model: ModelInfo | None
    headers: dict[str, HeaderValue]
    tls_verify: bool
    ca_bundle: str | None
    status: InstanceStatus
    last_seen: datetime | None
    last_scrape_at: datetime | None
    last_error: InstanceError | None
    consecutive_failures: int
    created_at: datetime
    updated_at: datetime


class CollectRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Scrape once. Omitted optional fields keep the registered instance's values (else the defaults)."""

    instance_id: InstanceId
    endpoint: Endpoint
    metrics_path: MetricsPath | msgspec.UnsetType = msgspec.UNSET
    timeout_s: TimeoutSeconds | msgspec.UnsetType = msgspec.UNSET
    headers: Headers | msgspec.UnsetType = msgspec.UNSET
    tls_verify: bool | msgspec.UnsetType = msgspec.UNSET
    ca_bundle: CaBundle | msgspec.UnsetType | None = msgspec.UNSET


def metrics_url(endpoint: str, metrics_path: str) -> str:
    """The URL a registration is scraped at."""
    return endpoint.rstrip("/") + metrics_path
