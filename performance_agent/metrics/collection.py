"""One scrape of one registered instance, end to end: guard, fetch, parse, adapt, build, store.

Shared by `POST /collect` and the background collector, so both record the same outcome the
same way: a success stores the snapshot (with the cumulative series it came from) and marks the
instance up; a failure stores no snapshot, marks the instance down with `last_error`, and is
raised as a `ScrapeFailure` whose `reason` is the API error code. Every scrape is counted on
the agent's own `/metrics`.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import TYPE_CHECKING

import msgspec
from prometheus_client import Counter, Histogram

from performance_agent.clock import utc, utc_now
from performance_agent.engines.base import detect_engine
from performance_agent.engines.registry import adapt_page
from performance_agent.fleet.schemas import (
    HEADER_ENV_SETTING,
    HEADER_VALUE_PATTERN,
    HeaderFromEnv,
    HeaderValue,
    InstanceError,
    metrics_url,
)
from performance_agent.metrics.builder import build_snapshot, encode_raw_scrape, raw_scrape
from performance_agent.metrics.exposition import ParserCache
from performance_agent.metrics.goodput import goodput_targets
from performance_agent.metrics.page_reader import ScrapedPageReader
from performance_agent.metrics.scraper import ScrapeFailure, fetch_page
from performance_agent.outbound.pinned import TlsOptions
from performance_agent.outbound.target_guard import ResolutionError, TargetRefusedError, check_url

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime

    from prometheus_client import CollectorRegistry

    from performance_agent.engines.base import AdaptedPage
    from performance_agent.fleet.ports import InstanceRepository, StoredInstance
    from performance_agent.fleet.schemas import InstanceSpec
    from performance_agent.metrics.ports import SnapshotRepository
    from performance_agent.metrics.prometheus_reader import PrometheusApi
    from performance_agent.metrics.snapshot import InstanceSnapshot
    from performance_agent.outbound.pinned import PinnedClients
    from performance_agent.outbound.target_guard import Resolver, TargetAllowlist
    from performance_agent.readings.page import MetricsPage

__all__ = (
    "CollectionService",
    "ScrapeMetrics",
    "resolve_headers",
)

logger = logging.getLogger("performance_agent.metrics.collection")


class ScrapeMetrics:
    """Scrape durations and failures, registered on one app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "performance_agent_scrape_duration_seconds",
            "Time to scrape, parse and store one instance's metrics page, by engine and outcome (ok or the error "
            "code).",
            ("engine", "outcome"),
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=registry,
        )
        self.failures = Counter(
            "performance_agent_scrape_failures_total",
            "Scrapes that stored no snapshot, by engine and reason (the API error code).",
            ("engine", "reason"),
            registry=registry,
        )


_encoder = msgspec.json.Encoder()


def resolve_headers(
    headers: Mapping[str, HeaderValue], environ: Mapping[str, str], allowed_env: frozenset[str]
) -> dict[str, str]:
    """Header values as sent: literals as given, references read from the environment now."""
    resolved: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(value, HeaderFromEnv):
            if not re.fullmatch(HEADER_VALUE_PATTERN, value):  # registered before the pattern held
                raise ScrapeFailure(
                    "scrape_config_invalid", f"header {name} holds characters other than visible ASCII; replace it"
                )
            resolved[name] = value
            continue
        if value.env not in allowed_env:
            raise ScrapeFailure(
                "scrape_config_invalid", f"header {name} references {value.env}, which is not in {HEADER_ENV_SETTING}"
            )
        secret = environ.get(value.env)
        if not secret:
            raise ScrapeFailure(
                "scrape_config_invalid", f"header {name} references {value.env}, which is not set in the environment"
            )
        if any(character in secret for character in "\r\n\x00"):
            raise ScrapeFailure("scrape_config_invalid", f"{value.env} holds a line break; it cannot be a header")
        if not re.fullmatch(HEADER_VALUE_PATTERN, secret):
            raise ScrapeFailure(
                "scrape_config_invalid", f"{value.env} holds characters other than visible ASCII; it cannot be a header"
            )
        resolved[name] = value.prefix + secret
    return resolved


class CollectionService:
    def __init__(
        self,
        *,
        instances: InstanceRepository,
        snapshots: SnapshotRepository,
        clients: PinnedClients,
        allowlist: TargetAllowlist,
        resolver: Resolver,
        max_bytes: int,
        allowed_header_env: frozenset[str],
        metrics: ScrapeMetrics,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] | None = None,
        reader: ScrapedPageReader | None = None,
        prometheus: PrometheusApi | None = None,
    ) -> None:
        self._metrics = metrics
        #: Where instances with source `prometheus` are read (None: PERF_AGENT_PROMETHEUS_URL unset).
        self._prometheus = prometheus
        #: What parsing learnt from earlier pages, kept for this service's life (one per app).
        self._parser_cache = ParserCache()
        self._instances = instances
        self._reader = reader if reader is not None else ScrapedPageReader()
        self._snapshots = snapshots
        self._clients = clients
        self._allowlist = allowlist
        self._resolver = resolver
        self._max_bytes = max_bytes
        self._allowed_header_env = allowed_header_env
        self._environ = environ if environ is not None else os.environ
        self._clock = clock if clock is not None else utc_now

    async def scrape(self, instance: StoredInstance, *, timeout_s: float) -> InstanceSnapshot:
        """Scrape, store and return a snapshot; on failure record it and raise `ScrapeFailure`."""
        engine = instance.spec.engine
        started = time.perf_counter()
        try:
            snapshot = await self._scrape(instance, timeout_s)
        except ScrapeFailure as failure:
            self._metrics.failures.labels(engine, failure.reason).inc()
            self._metrics.duration.labels(engine, failure.reason).observe(time.perf_counter() - started)
            error = InstanceError(
                code=failure.reason, message=failure.message, at=self._clock(), upstream_status=failure.upstream_status
            )
            await self._instances.record_failure(instance.instance_id, error)
            raise
        self._metrics.duration.labels(engine, "ok").observe(time.perf_counter() - started)
        return snapshot

    async def _scrape(self, instance: StoredInstance, timeout_s: float) -> InstanceSnapshot:
        spec = instance.spec
        if spec.source == "prometheus":
            page, collected_at = await self._read_through_prometheus(spec, timeout_s)
            adapted = _adapt_checked(spec.engine, page)
        else:
            adapted, collected_at = await self._fetch_and_read(spec, timeout_s)
        previous = await self._snapshots.latest_raw(instance.instance_id)
        snapshot = build_snapshot(
            instance_id=instance.instance_id,
            engine=spec.engine,
            endpoint=spec.endpoint if spec.endpoint is not None else f"prometheus {spec.match}",
            collected_at=collected_at,
            current=adapted,
            previous=previous,
            goodput_targets=goodput_targets(spec.slo) if spec.slo is not None else (),
        )
        stored = await self._snapshots.add(
            instance.instance_id,
            collected_at,
            _encoder.encode(snapshot),
            encode_raw_scrape(raw_scrape(adapted, collected_at)),
        )
        if not stored:
            logger.info(
                "instance deleted during its scrape; snapshot dropped", extra={"instance": instance.instance_id}
            )
        return snapshot

    async def _fetch_and_read(self, spec: InstanceSpec, timeout_s: float) -> tuple[AdaptedPage, datetime]:
        """The scrape source: GET endpoint + metrics_path, then parse and adapt the page."""
        if spec.endpoint is None:
            raise ScrapeFailure("scrape_config_invalid", "an instance with source scrape needs an endpoint")
        url = metrics_url(spec.endpoint, spec.metrics_path)
        try:
            target = await check_url(url, self._allowlist, self._resolver)
        except TargetRefusedError as refused:
            raise ScrapeFailure("target_not_allowed", refused.reason) from None
        except ResolutionError as unresolved:
            raise ScrapeFailure("upstream_unreachable", str(unresolved)) from None
        headers = resolve_headers(spec.headers, self._environ, self._allowed_header_env)
        fetched = await fetch_page(
            self._clients,
            target,
            headers=headers,
            timeout_s=timeout_s,
            max_bytes=self._max_bytes,
            tls=TlsOptions(verify=spec.tls_verify, ca_bundle=spec.ca_bundle),
        )
        collected_at = self._clock()
        reading = await self._reader.read(
            fetched.body, openmetrics=fetched.openmetrics, engine=spec.engine, cache=self._parser_cache
        )
        if reading.outcome != "ok":
            raise ScrapeFailure("upstream_invalid_metrics", reading.message)
        if reading.detected != spec.engine or reading.adapted is None:
            raise _engine_mismatch(spec.engine, reading.detected)
        return reading.adapted, collected_at

    async def _read_through_prometheus(self, spec: InstanceSpec, timeout_s: float) -> tuple[MetricsPage, datetime]:
        """The prometheus source: the same cumulative series, read by one instant query, dated by their scrape."""
        if self._prometheus is None:
            raise ScrapeFailure(
                "scrape_config_invalid",
                "the instance is read through Prometheus but PERF_AGENT_PROMETHEUS_URL is unset",
            )
        if spec.match is None:
            raise ScrapeFailure("scrape_config_invalid", "an instance with source prometheus needs a match")
        now = self._clock()
        reading = await self._prometheus.read_page(spec.engine, spec.match, at=now, timeout_s=timeout_s)
        return reading.page, now if reading.scraped_at is None else utc(reading.scraped_at)


def _engine_mismatch(expected: str, detected: str | None) -> ScrapeFailure:
    found = f"a {detected} page" if detected else "no vLLM, TGI or SGLang series"
    return ScrapeFailure(
        "engine_mismatch",
        f"expected a {expected} page, found {found}",
        context={"detected_engine": detected, "expected_engine": expected},
    )


def _adapt_checked(engine: str, page: MetricsPage) -> AdaptedPage:
    """A page read through Prometheus, adapted in this process: it holds only the families the adapter reads."""
    detected = detect_engine(page)
    if detected != engine:
        raise _engine_mismatch(engine, detected)
    return adapt_page(engine, page)
