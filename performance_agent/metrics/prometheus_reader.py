"""Reading a server's series through a Prometheus-compatible HTTP API, as a scrape would have read them.

The calls go through the same target guard (`PERF_AGENT_SCRAPE_ALLOWLIST`), pinned clients and
byte cap (`PERF_AGENT_SCRAPE_MAX_BYTES`) as direct scrapes, and fail with the same reasons:
Prometheus unreachable is `upstream_unreachable`, a timeout (ours or Prometheus's own, HTTP 503
`errorType: timeout`) `upstream_timeout`, any other error answer `upstream_error` with
Prometheus's message, and a match without series `upstream_invalid_metrics`. Requests are
form-encoded POSTs, which every compatible API accepts and which keep long selectors out of URLs
(https://prometheus.io/docs/prometheus/latest/querying/api/).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import httpx

from performance_agent.engines.registry import get_adapter
from performance_agent.fleet.selectors import SelectorError, parse_selector
from performance_agent.metrics.prometheus_source import (
    MoreThanOneServerError,
    PrometheusAnswerError,
    PrometheusQueryError,
    page_from_vector,
    parse_query_answer,
    parse_series_answer,
    readings_query,
)
from performance_agent.metrics.scraper import ScrapeFailure, read_capped
from performance_agent.outbound.pinned import ClientsClosedError, OutboundConfigError, TlsOptions, pinned_to
from performance_agent.outbound.target_guard import ResolutionError, TargetRefusedError, check_url

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from performance_agent.fleet.selectors import LabelMatcher
    from performance_agent.metrics.prometheus_source import PrometheusReading
    from performance_agent.outbound.pinned import PinnedClients
    from performance_agent.outbound.target_guard import Resolver, TargetAllowlist

__all__ = ("PrometheusApi", "PrometheusConfig")

_FORM = "application/x-www-form-urlencoded"
_SETTING = "PERF_AGENT_PROMETHEUS_HEADERS_ENV"


@dataclass(frozen=True, slots=True)
class PrometheusConfig:
    """Where the API is and how to talk to it; header values are environment variable names."""

    base_url: str
    header_env: Mapping[str, str] = field(default_factory=dict)
    ca_bundle: str | None = None


class PrometheusApi:
    def __init__(
        self,
        config: PrometheusConfig,
        *,
        clients: PinnedClients,
        allowlist: TargetAllowlist,
        resolver: Resolver,
        max_bytes: int,
        environ: Mapping[str, str],
    ) -> None:
        self._config = config
        self._clients = clients
        self._allowlist = allowlist
        self._resolver = resolver
        self._max_bytes = max_bytes
        self._environ = environ

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": _FORM, "Accept": "application/json"}
        for name, variable in self._config.header_env.items():
            value = self._environ.get(variable)
            if not value:
                raise ScrapeFailure("scrape_config_invalid", f"{_SETTING}: {variable} is not set in the environment")
            if any(character in value for character in "\r\n\x00"):
                raise ScrapeFailure("scrape_config_invalid", f"{_SETTING}: {variable} holds a line break")
            headers[name] = value
        return headers

    async def _post(self, path: str, form: list[tuple[str, str]], timeout_s: float) -> bytes:
        url = self._config.base_url.rstrip("/") + path
        try:
            target = await check_url(url, self._allowlist, self._resolver)
        except TargetRefusedError as refused:
            raise ScrapeFailure("target_not_allowed", f"PERF_AGENT_PROMETHEUS_URL: {refused.reason}") from None
        except ResolutionError as unresolved:
            raise ScrapeFailure("upstream_unreachable", f"Prometheus: {unresolved}") from None
        headers = self._headers()
        try:
            client = self._clients.client(
                TlsOptions(ca_bundle=self._config.ca_bundle) if target.scheme == "https" else TlsOptions()
            )
        except OutboundConfigError as exc:
            raise ScrapeFailure("scrape_config_invalid", str(exc)) from None
        except ClientsClosedError:
            raise ScrapeFailure("internal_error", "the scrape client is shut down") from None
        try:
            with pinned_to(target):
                async with asyncio.timeout(timeout_s):
                    async with client.stream(
                        "POST", target.url, content=urlencode(form), headers=headers, timeout=httpx.Timeout(timeout_s)
                    ) as response:
                        body = await read_capped(response, self._max_bytes)
                        status = response.status_code
        except (TimeoutError, httpx.TimeoutException):
            raise ScrapeFailure(
                "upstream_timeout", f"Prometheus gave no complete answer within {timeout_s:g} s"
            ) from None
        except httpx.TransportError as exc:
            raise ScrapeFailure(
                "upstream_unreachable", f"cannot reach Prometheus at {target.host}:{target.port}: {exc}"
            ) from None
        except httpx.RequestError as exc:
            raise ScrapeFailure("upstream_error", f"the Prometheus request failed: {exc}") from None
        if 200 <= status < 300 or status in (400, 422, 503):  # the API's documented error statuses carry JSON
            return body if 200 <= status < 300 else _error_of(body, status)
        note = " (redirects are not followed)" if 300 <= status < 400 else ""
        raise ScrapeFailure("upstream_error", f"Prometheus answered HTTP {status}{note}", upstream_status=status)

    async def read_page(self, engine: str, match: str, *, at: datetime, timeout_s: float) -> PrometheusReading:
        """The families `engine`'s adapter reads, for the server `match` selects, as of `at`."""
        matchers = _matchers(match)
        query = readings_query(get_adapter(engine).reads, matchers)
        form = [("query", query), ("time", f"{at.timestamp():.3f}"), ("timeout", f"{timeout_s:g}s")]
        body = await self._post("/api/v1/query", form, timeout_s)
        try:
            readings = parse_query_answer(body)
        except PrometheusQueryError as failed:
            raise _query_failure(failed) from None
        except PrometheusAnswerError as invalid:
            raise ScrapeFailure("upstream_error", f"Prometheus: {invalid}") from None
        if not readings:
            raise ScrapeFailure(
                "upstream_invalid_metrics",
                f"Prometheus has no {engine} series matching {match} (within its lookback before {at.isoformat()})",
                context={"match": match},
            )
        try:
            reading = page_from_vector(readings, frozenset(matcher.name for matcher in matchers))
        except MoreThanOneServerError as ambiguous:
            raise ScrapeFailure("upstream_invalid_metrics", str(ambiguous), context={"match": match}) from None
        if not reading.page.series:
            raise ScrapeFailure(
                "upstream_invalid_metrics",
                f"Prometheus has the target {match} but no {engine} series of it (is it down?)",
                context={"match": match},
            )
        return reading

    async def series(
        self, selectors: list[str], *, start: datetime, end: datetime, timeout_s: float
    ) -> list[dict[str, str]]:
        """The label sets of the series any of `selectors` matches with samples between `start` and `end`."""
        form = [("match[]", selector) for selector in selectors]
        form += [("start", f"{start.timestamp():.3f}"), ("end", f"{end.timestamp():.3f}")]
        body = await self._post("/api/v1/series", form, timeout_s)
        try:
            return parse_series_answer(body)
        except PrometheusQueryError as failed:
            raise _query_failure(failed) from None
        except PrometheusAnswerError as invalid:
            raise ScrapeFailure("upstream_error", f"Prometheus: {invalid}") from None


def _matchers(match: str) -> tuple[LabelMatcher, ...]:
    try:
        return parse_selector(match)
    except SelectorError as invalid:
        raise ScrapeFailure("scrape_config_invalid", f"match {match}: {invalid}") from None


def _error_of(body: bytes, status: int) -> bytes:
    """An error answer raised as the failure it means (parse_* raises for `status: error`)."""
    try:
        parse_query_answer(body)
    except PrometheusQueryError as failed:
        raise _query_failure(failed, status) from None
    except PrometheusAnswerError:
        pass
    raise ScrapeFailure("upstream_error", f"Prometheus answered HTTP {status}", upstream_status=status)


def _query_failure(failed: PrometheusQueryError, status: int | None = None) -> ScrapeFailure:
    if failed.error_type == "timeout":
        return ScrapeFailure("upstream_timeout", f"Prometheus: {failed.message}", upstream_status=status)
    return ScrapeFailure(
        "upstream_error",
        f"Prometheus refused the query ({failed.error_type}): {failed.message}",
        upstream_status=status,
    )
