"""Settings loaded from `PERF_AGENT_*` environment variables.

One frozen Struct is the single source of truth: start-up validation, `GET /config` and the
generated `docs/configuration.md` all read the same field definitions, so they cannot drift.
"""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from performance_agent.analysis.config import detector_thresholds
from performance_agent.fleet.discovery import parse_discovery_rules
from performance_agent.fleet.slo import slo_defaults
from performance_agent.metrics.prometheus_source import prometheus_headers
from performance_agent.outbound.target_guard import parse_allowlist

if typing.TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = (
    "ENV_PREFIX",
    "SECRET_FIELDS",
    "Settings",
    "SettingsError",
    "describe_allowed",
    "env_name",
    "load_settings",
)

ENV_PREFIX = "PERF_AGENT_"

Environment = Literal["development", "staging", "production"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
DEFAULT_PRIVATE_ALLOWLIST = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
)


def _doc(text: str, **constraints: Any) -> Meta:
    return Meta(description=text, **constraints)


class Settings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Every setting, with its environment variable, type, default and meaning in `description`."""

    host: Annotated[str, _doc("Interface the HTTP server binds to.", min_length=1)] = "127.0.0.1"
    port: Annotated[int, _doc("TCP port of the HTTP server.", ge=1, le=65535)] = 8000
    environment: Annotated[
        Environment, _doc("Deployment environment; `production` refuses to start without API keys.")
    ] = "development"
    log_level: Annotated[LogLevel, _doc("Minimum level of the JSON logs.")] = "INFO"
    agent_name: Annotated[
        str, _doc("Name of this agent, shown in health reports, alerts and webhook payloads.", min_length=1)
    ] = "performance-agent"
    database: Annotated[
        str, _doc("SQLite file holding instances, history, plans and workflows (`:memory:` for throwaway runs).")
    ] = "./var/performance-agent.db"
    database_url: Annotated[
        str | None,
        _doc(
            "Database URL; wins over PERF_AGENT_DATABASE when both are set. `sqlite:///path` (one agent per "
            "file) or `postgresql://user@host:5432/db` for several replicas (psycopg 3; give the password by "
            "PGPASSWORD or PGPASSFILE rather than in the URL; it is never shown)."
        ),
    ] = None
    replica_id: Annotated[
        str | None,
        _doc(
            "Name of this replica among several agents on one database, shown as the leader in "
            "`/api/v1/health/detailed` and recorded on the rows it claims; unset: `hostname-pid-random`, new at "
            "every start; at most 200 characters. Two live replicas must never share one.",
        ),
    ] = None
    lease_ttl_s: Annotated[
        float,
        _doc(
            "Seconds a replica's leader lease and claims (workflows, judgements, actuator calls) last without "
            "renewal, renewed every third of it; after a crash another replica takes over within this time.",
            ge=1,
            le=300,
        ),
    ] = 10.0
    max_body_bytes: Annotated[
        int, _doc("Largest accepted request body in bytes; larger bodies get 413.", ge=1024, le=100 * 1024 * 1024)
    ] = 1024 * 1024
    rate_limit_per_minute: Annotated[int, _doc("Requests per client per minute (0 disables).", ge=0)] = 100
    rate_limit_per_hour: Annotated[int, _doc("Requests per client per hour (0 disables).", ge=0)] = 1000
    rate_limit_max_clients: Annotated[
        int,
        _doc(
            "Most clients the rate limiter tracks at once (~280 bytes each); past it, the client seen longest "
            "ago is forgotten.",
            ge=1,
        ),
    ] = 100_000
    api_keys: Annotated[
        list[str],
        _doc("Comma-separated `name:role:key` entries (role: viewer, operator, approver, admin; key ≥ 16 chars)."),
    ] = msgspec.field(default_factory=list)
    api_keys_file: Annotated[
        str | None, _doc("File with one `name:role:key` entry per line, read in addition to PERF_AGENT_API_KEYS.")
    ] = None
    trusted_proxies: Annotated[
        list[str],
        _doc(
            "Comma-separated CIDRs of reverse proxies whose `X-Forwarded-For` header names the client; from any "
            "other peer the header is ignored (none by default: every client is its TCP peer)."
        ),
    ] = msgspec.field(default_factory=list)
    cors_origins: Annotated[
        list[str], _doc("Comma-separated origins allowed by CORS for browser dashboards (none by default).")
    ] = msgspec.field(default_factory=list)
    scrape_timeout_s: Annotated[float, _doc("Default timeout of one metrics scrape, in seconds.", gt=0, le=60)] = 5.0
    scrape_max_bytes: Annotated[
        int, _doc("Largest metrics page read from a server; the read stops there.", ge=1024)
    ] = 10 * 1024 * 1024
    scrape_max_families: Annotated[
        int, _doc("Most metric families one page may declare; a page with more is refused, nothing stored.", ge=1)
    ] = 10_000
    scrape_max_series: Annotated[
        int,
        _doc("Most samples one page may hold in the families the engine adapter reads; more is refused.", ge=1),
    ] = 50_000
    scrape_max_label_values: Annotated[
        int,
        _doc("Most distinct values of one label (models, ranks, buckets) on one page; more is refused.", ge=1),
    ] = 256
    scrape_max_label_value_length: Annotated[
        int, _doc("Longest label value accepted on a page, in characters; a longer one refuses the page.", ge=1)
    ] = 1024
    scrape_inline_max_bytes: Annotated[
        int,
        _doc(
            "Pages up to this size are parsed on the event loop; larger ones in the page-reader process "
            "started with the agent, so parsing never holds other requests.",
            ge=0,
        ),
    ] = 256 * 1024
    scrape_parse_budget_s: Annotated[
        float,
        _doc("Longest time reading one large page may take in the page-reader process; over it, refused.", gt=0),
    ] = 10.0
    scrape_interval_s: Annotated[
        float, _doc("Seconds between two background collections of every registered instance.", ge=0.05)
    ] = 15.0
    scrape_concurrency: Annotated[
        int, _doc("Scrapes in flight at once in the background collector.", ge=1, le=1024)
    ] = 32
    scrape_background: Annotated[
        bool, _doc("Scrape every registered instance in the background (false: only POST /collect scrapes).")
    ] = True
    scrape_allowlist: Annotated[
        list[str],
        _doc(
            "Comma-separated CIDRs and host names that scrape targets may resolve to. Link-local and cloud "
            "metadata addresses are refused even if listed."
        ),
    ] = msgspec.field(default_factory=lambda: list(DEFAULT_PRIVATE_ALLOWLIST))
    scrape_header_env: Annotated[
        list[str],
        _doc(
            "Comma-separated names of environment variables that scrape headers may reference "
            '(`{"env": "VLLM_TOKEN", "prefix": "Bearer "}`); none by default, so no API caller can make the '
            "agent send its own secrets elsewhere."
        ),
    ] = msgspec.field(default_factory=list)
    prometheus_url: Annotated[
        str | None,
        _doc(
            "Base URL of a Prometheus-compatible HTTP API that instances with source `prometheus` are read from "
            "(Prometheus, Thanos Query, Mimir with its `/prometheus` prefix); it must pass "
            "PERF_AGENT_SCRAPE_ALLOWLIST."
        ),
    ] = None
    prometheus_headers_env: Annotated[
        list[str],
        _doc(
            "Comma-separated `Header-Name=ENV_VAR` pairs: headers sent to PERF_AGENT_PROMETHEUS_URL with the value "
            "of the named environment variable, read at each request and never shown (e.g. "
            "`X-Scope-OrgID=MIMIR_TENANT,Authorization=PROMETHEUS_AUTHORIZATION`)."
        ),
    ] = msgspec.field(default_factory=list)
    prometheus_ca_bundle: Annotated[
        str | None, _doc("PEM CA bundle verifying PERF_AGENT_PROMETHEUS_URL over https (system CAs otherwise).")
    ] = None
    prometheus_discovery: Annotated[
        str | None,
        _doc(
            'JSON array of discovery rules `{"engine", "match", "instance_id", "labels", "slo"}`: servers whose '
            "engine series match are registered with source prometheus (see docs/integrations.md)."
        ),
    ] = None
    prometheus_discovery_interval_s: Annotated[
        float, _doc("Seconds between two Prometheus discovery rounds.", ge=1, le=3600)
    ] = 30.0
    webhook_allowlist: Annotated[
        list[str], _doc("Comma-separated CIDRs and host names that actuator and alert webhooks may reach.")
    ] = msgspec.field(default_factory=lambda: list(DEFAULT_PRIVATE_ALLOWLIST))
    history_retention_hours: Annotated[int, _doc("Snapshots older than this are pruned.", ge=1, le=24 * 365)] = 168
    history_max_bytes: Annotated[
        int,
        _doc(
            "Most bytes of stored history (snapshots with their raw series); past it the oldest snapshots are "
            "pruned, every five minutes, each instance's latest kept.",
            ge=1024 * 1024,
        ),
    ] = 2 * 1024 * 1024 * 1024
    slo_period_hours: Annotated[
        int, _doc("Period over which SLO error budgets are counted (at most the history retention).", ge=1)
    ] = 168
    alert_webhook_url: Annotated[
        str | None, _doc("Alertmanager-compatible webhook receiving SLO alerts (optional).")
    ] = None
    alertmanager_url: Annotated[
        str | None,
        _doc(
            "Alertmanager's base URL (optional): SLO alerts are posted to <url>/api/v2/alerts, re-sent while "
            "firing and resolved with endsAt; it must pass PERF_AGENT_WEBHOOK_ALLOWLIST."
        ),
    ] = None
    slo_defaults: Annotated[
        list[str],
        _doc(
            "Comma-separated `name=value` SLO targets for instances that declare none (ttft_p99_s, ttft_p95_s, "
            "itl_p99_s, e2e_p99_s, error_rate, min_generation_tokens_per_s, target_ratio); unnamed targets keep "
            "the defaults in docs/analysis.md."
        ),
    ] = msgspec.field(default_factory=list)
    detector_thresholds: Annotated[
        list[str],
        _doc(
            "Comma-separated `name=value` overrides of bottleneck detector thresholds (e.g. `kv_usage_high=0.95`); "
            "names, defaults and rationale in docs/analysis.md."
        ),
    ] = msgspec.field(default_factory=list)
    webhook_secret: Annotated[
        str | None, _doc("HMAC-SHA256 secret signing actuator webhooks; without it no signature is sent.")
    ] = None
    webhook_timeout_s: Annotated[float, _doc("Timeout of one actuator webhook call, in seconds.", gt=0, le=300)] = 10.0
    webhook_retries: Annotated[
        int, _doc("Retries of a failed actuator call before the workflow gives up on it (rolls back or fails).", ge=0)
    ] = 3
    webhook_backoff_s: Annotated[
        float, _doc("Wait before the first retry of an actuator call; doubled at each further retry.", ge=0)
    ] = 1.0
    workflow_actuator_type: Annotated[
        Literal["webhook", "simulator"],
        _doc("Actuator of workflows that name none: `webhook` (signed POST per stage) or `simulator`."),
    ] = "webhook"
    workflow_actuator_url: Annotated[
        str | None, _doc("URL of that default actuator (the webhook, or the simulator hub); none by default.")
    ] = None
    workflow_tick_s: Annotated[
        float, _doc("Seconds between two passes of the rollout reconciler over due workflows.", gt=0, le=60)
    ] = 1.0
    workflow_max_reading_age_s: Annotated[
        float,
        _doc(
            "Health windows end on the background collector's stored reading of an instance when it is at most "
            "this many seconds old (and younger than the window's interval) instead of scraping it again; "
            "0 scrapes every window.",
            ge=0,
            le=3600,
        ),
    ] = 15.0
    workflow_min_samples: Annotated[
        int,
        _doc(
            "Default guardrail `min_samples`, shown with each workflow; no longer a per-window floor (a request that "
            "sets it without `judge.min_canary_requests` makes it the stage's pooled canary floor).",
            ge=0,
        ),
    ] = 100
    workflow_max_ttft_p99_increase: Annotated[
        float, _doc("Default guardrail: largest TTFT p99 increase of canary over control, as a fraction.", ge=0)
    ] = 0.2
    workflow_max_itl_p99_increase: Annotated[
        float, _doc("Default guardrail: largest ITL p99 increase of canary over control, as a fraction.", ge=0)
    ] = 0.15
    workflow_max_e2e_p99_increase: Annotated[
        float, _doc("Default guardrail: largest e2e latency p99 increase of canary over control, as a fraction.", ge=0)
    ] = 0.2
    workflow_max_error_rate: Annotated[
        float, _doc("Default guardrail: canary error rate above which a rollout rolls back at once.", ge=0, le=1)
    ] = 0.02
    workflow_max_preemptions_per_s: Annotated[
        float | None, _doc("Default guardrail: preemptions per second per canary instance that roll back at once.")
    ] = None
    workflow_consecutive_failures: Annotated[
        int, _doc("Default guardrail: consecutive windows whose canary cannot be scraped that roll a stage back.", ge=1)
    ] = 2
    workflow_on_canary_scrape_error: Annotated[
        Literal["fail", "inconclusive"],
        _doc("Default: whether a canary instance that cannot be scraped fails the window or makes it inconclusive."),
    ] = "fail"

    def __post_init__(self) -> None:
        if self.replica_id is not None and not 0 < len(self.replica_id.strip()) == len(self.replica_id) <= 200:
            raise SettingsError(
                f"{env_name('replica_id')}: expected 1 to 200 characters without surrounding spaces, "
                f"got {self.replica_id!r}"
            )
        for allowlist in ("scrape_allowlist", "webhook_allowlist"):
            try:
                parse_allowlist(getattr(self, allowlist), env_name(allowlist))
            except ValueError as exc:
                raise SettingsError(str(exc)) from None
        try:
            slo_defaults(self.slo_defaults, env_name("slo_defaults"))
            detector_thresholds(self.detector_thresholds, env_name("detector_thresholds"))
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        try:
            prometheus_headers(self.prometheus_headers_env)
        except ValueError as exc:
            raise SettingsError(f"{env_name('prometheus_headers_env')}: {exc}") from None
        if self.database_url is not None and not self.database_url.startswith(
            ("sqlite:///", "postgresql://", "postgres://")
        ):
            raise SettingsError(
                f"{env_name('database_url')}: use sqlite:///path or postgresql://host/database, "
                f"got a URL with scheme {self.database_url.split('://', 1)[0]!r}"
            )
        if self.prometheus_discovery is not None:
            if self.prometheus_url is None:
                raise SettingsError(f"{env_name('prometheus_discovery')} needs {env_name('prometheus_url')}")
            try:
                parse_discovery_rules(self.prometheus_discovery)
            except ValueError as exc:
                raise SettingsError(f"{env_name('prometheus_discovery')}: {exc}") from None
        if self.slo_period_hours > self.history_retention_hours:
            raise SettingsError(
                f"{env_name('slo_period_hours')}: must be at most "
                f"{env_name('history_retention_hours')} ({self.history_retention_hours}), "
                f"got {self.slo_period_hours}"
            )

    @property
    def database_path(self) -> Path | None:
        """The SQLite file in use (None for `:memory:` and for PostgreSQL)."""
        if self.database_url is not None:
            if not self.database_url.startswith("sqlite:///"):
                return None
            path = self.database_url.removeprefix("sqlite:///")
        else:
            path = self.database
        return None if path == ":memory:" else Path(path)

    @property
    def storage_url(self) -> str:
        """Where the agent's data lives: PERF_AGENT_DATABASE_URL, else the PERF_AGENT_DATABASE file."""
        return self.database_url if self.database_url is not None else self.database


#: Settings never shown by `GET /config` nor logged.
SECRET_FIELDS = frozenset(
    {
        "api_keys",
        "api_keys_file",
        "database_url",
        "webhook_secret",
        "alert_webhook_url",
        "alertmanager_url",
        "workflow_actuator_url",
        "prometheus_url",
    }
)

_LIST_FIELDS = frozenset(
    name for name, hint in typing.get_type_hints(Settings).items() if typing.get_origin(hint) is list
)


class SettingsError(ValueError):
    """A setting is invalid; the message is one line naming the variable and what is allowed."""


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def describe_allowed(field: str) -> str:
    """Human wording of what a field accepts, built from its annotation so it cannot drift."""
    hint = typing.get_type_hints(Settings, include_extras=True)[field]
    base, metas = hint, []
    if typing.get_origin(hint) is Annotated:
        base, *extras = typing.get_args(hint)
        metas = [m for m in extras if isinstance(m, Meta)]
    bounds: list[str] = []
    for meta in metas:
        for attr, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(meta, attr, None)
            if value is not None:
                bounds.append(f"{word} {value}")
        if getattr(meta, "min_length", None):
            bounds.append("non-empty")
    args = typing.get_args(base)
    if typing.get_origin(base) is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    names = {int: "an integer", float: "a number", str: "text", bool: "true or false"}
    kinds = [names.get(a, "a comma-separated list") for a in (args or (base,)) if a is not type(None)]
    text = " or ".join(kinds)
    if bounds:
        text += " " + " and ".join(bounds)
    return text


def _split_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from the environment; raise SettingsError with one clear line on a bad value."""
    source = os.environ if env is None else env
    known = set(Settings.__struct_fields__)
    raw: dict[str, Any] = {}
    for key, value in source.items():
        if not key.startswith(ENV_PREFIX):
            continue
        field = key[len(ENV_PREFIX) :].lower()
        if field not in known:
            continue  # other tools share the prefix space (e.g. PERF_AGENT_TEST_*); ignore rather than crash
        raw[field] = _split_list(value) if field in _LIST_FIELDS else value
    for optional in (
        "api_keys_file",
        "replica_id",
        "alert_webhook_url",
        "webhook_secret",
        "workflow_actuator_url",
        "workflow_max_preemptions_per_s",
    ):
        if raw.get(optional) == "":
            raw.pop(optional)
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(_explain(exc, raw)) from None


def _explain(exc: msgspec.ValidationError, raw: Mapping[str, Any]) -> str:
    message = str(exc)
    if message.startswith(ENV_PREFIX):  # raised by __post_init__, already worded for humans
        return message.split(" - at `$", 1)[0]
    field = message.rsplit("`$.", 1)[-1].split("`", 1)[0].split("[", 1)[0] if "`$." in message else ""
    if field in Settings.__struct_fields__:
        return f"{env_name(field)}: expected {describe_allowed(field)}, got {raw.get(field)!r}"
    return f"invalid {ENV_PREFIX}* setting: {message}"
