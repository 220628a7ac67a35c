"""SLO burn-rate alerts in the background: evaluated after each scrape, stored, exported and sent.

Why a time line in memory: alerts need only the longest burn-rate lookback (6 h), and the
collector hands over every new snapshot, so each instance's recent scrape windows are read
from storage once and then appended to, instead of re-reading hours of history per scrape.
Why a queue for the webhook: a slow or dead receiver must never hold a scrape slot, so
notifications are sent by their own supervised loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
import msgspec
from prometheus_client import Counter, Gauge

from performance_agent.analysis.alerts import alertmanager_payload, evaluate_alerts, resolve_unmonitored
from performance_agent.analysis.config import slo_defaults
from performance_agent.analysis.service import effective_targets
from performance_agent.analysis.slo import BURN_RATE_PAIRS, evaluate_slo
from performance_agent.analysis.window import decode_scrape_figures, timeline
from performance_agent.metrics.scraper import post_json_pinned
from performance_agent.outbound.target_guard import ResolutionError, TargetRefusedError, check_url, parse_allowlist
from performance_agent.storage.alerts import SqliteAlertRepository

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from performance_agent.analysis.schemas import AlertEvent, AlertState, SloReport, SloTargets, WindowFigures
    from performance_agent.background import Heartbeat
    from performance_agent.context import AgentContext
    from performance_agent.metrics.scraper import ScrapeClients
    from performance_agent.metrics.snapshot import InstanceSnapshot
    from performance_agent.outbound.target_guard import Resolver, TargetAllowlist
    from performance_agent.storage.alerts import AlertRepository
    from performance_agent.storage.instances import InstanceRepository, StoredInstance
    from performance_agent.storage.snapshots import SnapshotRepository

__all__ = (
    "ALERTS_FIRING",
    "ALERT_TRANSITIONS",
    "SLO_BURN_RATE",
    "WEBHOOK_DELIVERIES",
    "AlertEvaluator",
    "AlertWebhook",
    "start_alerting",
)

logger = logging.getLogger("performance_agent.analysis.alerting")

ALERTS_FIRING = Gauge(
    "performance_agent_slo_alert_firing",
    "1 while an SLO burn-rate alert fires (labels as in the Alertmanager payload); absent otherwise.",
    ("instance_id", "objective", "long_window", "short_window"),
)
SLO_BURN_RATE = Gauge(
    "performance_agent_slo_burn_rate",
    "Error-budget burn rate of one objective over one lookback, as of the instance's last scrape.",
    ("instance_id", "objective", "window"),
)
ALERT_TRANSITIONS = Counter(
    "performance_agent_slo_alert_transitions_total", "SLO alerts that fired or resolved.", ("kind",)
)
WEBHOOK_DELIVERIES = Counter(
    "performance_agent_alert_webhook_deliveries_total",
    "Alertmanager webhook notifications by outcome (ok, refused, failed).",
    ("outcome",),
)

#: The longest lookback any alert reads: the only history the evaluator keeps per instance.
LOOKBACK_S = max(pair.long_s for pair in BURN_RATE_PAIRS)
_HISTORY_LIMIT = 10_000_000
_encoder = msgspec.json.Encoder()
_DELETED_REASON = "Resolved because the instance was deleted from the agent; it is no longer evaluated."


def _export(state: AlertState) -> None:
    labels = (state.instance_id, state.objective, state.labels["long_window"], state.labels["short_window"])
    if state.state == "firing":
        ALERTS_FIRING.labels(*labels).set(1)
    else:
        # KeyError: never exported by this process (fired before a restart and resolved since)
        with contextlib.suppress(KeyError):
            ALERTS_FIRING.remove(*labels)


def _export_burn_rates(instance_id: str, report: SloReport) -> set[tuple[str, str]]:
    """Set the instance's burn-rate series; returns the (objective, window) pairs it set."""
    exported: set[tuple[str, str]] = set()
    for objective in report.objectives:
        for window, rate in objective.burn_rates.items():
            if rate.value is not None:
                SLO_BURN_RATE.labels(instance_id, objective.objective, window).set(rate.value)
                exported.add((objective.objective, window))
    return exported


class AlertWebhook:
    """Posts Alertmanager payloads to one URL, through the target guard and the pinned clients."""

    def __init__(
        self,
        url: str,
        *,
        clients: ScrapeClients,
        allowlist: TargetAllowlist,
        resolver: Resolver,
        receiver: str,
        external_url: str,
        timeout_s: float = 5.0,
        attempts: int = 3,
        backoff_s: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._url = url
        self._clients = clients
        self._allowlist = allowlist
        self._resolver = resolver
        self._receiver = receiver
        self._external_url = external_url
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1000)

    def notify(self, alerts: Sequence[AlertState]) -> None:
        """Queue one notification; when the receiver is so far behind that the queue is full, drop it."""
        payload = alertmanager_payload(
            alerts,
            receiver=self._receiver,
            external_url=self._external_url,
            generator_url=self._external_url + "/api/v1/alerts",
        )
        try:
            self._queue.put_nowait(_encoder.encode(payload))
        except asyncio.QueueFull:
            WEBHOOK_DELIVERIES.labels("dropped").inc()
            logger.warning("alert webhook queue full; notification dropped")

    async def run(self, beat: Heartbeat) -> None:
        while True:
            beat()
            try:
                body = await asyncio.wait_for(self._queue.get(), timeout=10.0)
            except TimeoutError:
                continue
            await self.deliver(body)

    async def flush(self) -> int:
        """Deliver everything queued now (shutdown, tests); returns how many were delivered."""
        delivered = 0
        while not self._queue.empty():
            delivered += await self.deliver(self._queue.get_nowait())
        return delivered

    async def deliver(self, body: bytes) -> bool:
        """Send one payload, retrying with doubling backoff; a refused URL is not retried."""
        for attempt in range(self._attempts):
            outcome = await self._post(body)
            if outcome == "ok":
                WEBHOOK_DELIVERIES.labels("ok").inc()
                return True
            if outcome == "refused":
                WEBHOOK_DELIVERIES.labels("refused").inc()
                return False
            if attempt + 1 < self._attempts:
                await self._sleep(self._backoff_s * 2**attempt)
        WEBHOOK_DELIVERIES.labels("failed").inc()
        return False

    async def _post(self, body: bytes) -> str:
        try:
            target = await check_url(self._url, self._allowlist, self._resolver)
        except TargetRefusedError as refused:
            logger.error("alert webhook refused by the target guard", extra={"reason": refused.reason})
            return "refused"
        except ResolutionError as unresolved:
            logger.warning("alert webhook host does not resolve", extra={"error": str(unresolved)})
            return "failed"
        try:
            response = await post_json_pinned(self._clients, target, body, timeout_s=self._timeout_s)
        except (TimeoutError, httpx.HTTPError) as error:
            logger.warning("alert webhook unreachable", extra={"error": f"{type(error).__name__}: {error}"})
            return "failed"
        if 200 <= response.status_code < 300:
            return "ok"
        logger.warning("alert webhook answered an error", extra={"status": response.status_code})
        return "failed"


class AlertEvaluator:
    """Evaluates one instance's burn-rate alerts after each of its scrapes."""

    def __init__(
        self,
        *,
        snapshots: SnapshotRepository,
        alerts: AlertRepository,
        defaults: SloTargets,
        webhook: AlertWebhook | None = None,
        instances: InstanceRepository | None = None,
    ) -> None:
        self._snapshots = snapshots
        self._alerts = alerts
        self._defaults = defaults
        self._webhook = webhook
        self._instances = instances
        self._timelines: dict[str, deque[WindowFigures]] = {}
        self._burn_rate_series: dict[str, set[tuple[str, str]]] = {}
        # Why per-instance locks: a delete must not interleave with that instance's evaluation,
        # or the evaluation could re-fire (and re-export) an alert the delete just resolved.
        self._locks: dict[str, asyncio.Lock] = {}
        #: Deleted registrations (instance id -> its created_at): a scrape that was already in
        #: flight when its instance was deleted is not evaluated. A new registration of the same
        #: id has another created_at and is evaluated as usual.
        self._deleted: dict[str, datetime] = {}

    async def restore(self) -> None:
        """Export the alerts still firing from before a restart, so `/metrics` shows them at once.

        Alerts of instances no longer registered (deleted while their resolution failed, or by a
        version that did not resolve them) are resolved instead, as a delete would have.
        """
        firing = await self._alerts.firing()
        registered = None if self._instances is None else {i.instance_id for i in await self._instances.list()}
        orphans: list[AlertState] = []
        for state in firing:
            if registered is None or state.instance_id in registered:
                _export(state)
            else:
                orphans.append(state)
        if orphans:
            await self._publish(resolve_unmonitored(orphans, datetime.now(UTC), _DELETED_REASON))

    def _lock(self, instance_id: str) -> asyncio.Lock:
        return self._locks.setdefault(instance_id, asyncio.Lock())

    async def _timeline(self, instance: StoredInstance, snapshot: InstanceSnapshot) -> deque[WindowFigures]:
        engine = instance.spec.engine
        known = self._timelines.get(instance.instance_id)
        if known is None:
            since = snapshot.collected_at - timedelta(seconds=LOOKBACK_S)
            documents = await self._snapshots.history_json(instance.instance_id, since, _HISTORY_LIMIT)
            known = deque(timeline((decode_scrape_figures(d) for d in documents), engine))
            self._timelines[instance.instance_id] = known
        if not known or known[-1].ended_at is None or known[-1].ended_at < snapshot.collected_at:
            known.extend(timeline([decode_scrape_figures(_encoder.encode(snapshot))], engine))
        horizon = snapshot.collected_at - timedelta(seconds=LOOKBACK_S)
        while known and known[0].ended_at is not None and known[0].ended_at < horizon:
            known.popleft()
        return known

    async def after_scrape(self, instance: StoredInstance, snapshot: InstanceSnapshot) -> list[AlertEvent]:
        """Evaluate, store the fire/resolve events, export them and queue the notification."""
        instance_id = instance.instance_id
        async with self._lock(instance_id):
            if self._deleted.get(instance_id) == instance.created_at:
                return []
            windows = await self._timeline(instance, snapshot)
            targets, _ = effective_targets(instance, self._defaults)
            now = snapshot.collected_at
            report = evaluate_slo(list(windows), targets, compliance_window_s=LOOKBACK_S, period_s=LOOKBACK_S, now=now)
            self._burn_rate_series.setdefault(instance_id, set()).update(_export_burn_rates(instance_id, report))
            previous = await self._alerts.firing(instance_id)
            evaluation = evaluate_alerts(instance_id, report, previous, now)
            await self._publish(evaluation.events)
            return evaluation.events

    async def instance_deleted(self, instance: StoredInstance, at: datetime) -> list[AlertEvent]:
        """Resolve the deleted instance's firing alerts (stored, exported, notified) and drop its series."""
        instance_id = instance.instance_id
        async with self._lock(instance_id):
            self._deleted[instance_id] = instance.created_at
            self.forget(instance_id)
            for objective, window in self._burn_rate_series.pop(instance_id, set()):
                with contextlib.suppress(KeyError):
                    SLO_BURN_RATE.remove(instance_id, objective, window)
            events = resolve_unmonitored(await self._alerts.firing(instance_id), at, _DELETED_REASON)
            await self._publish(events)
            return events

    async def _publish(self, events: list[AlertEvent]) -> None:
        """Store the events, export them to `/metrics`, log them and queue one notification."""
        if not events:
            return
        await self._alerts.record(events)
        for event in events:
            ALERT_TRANSITIONS.labels(event.kind).inc()
            _export(event.alert)
            logger.info(
                "SLO alert %s",
                "fired" if event.kind == "fire" else "resolved",
                extra={
                    "instance": event.alert.instance_id,
                    "objective": event.alert.objective,
                    "pair": event.alert.pair,
                },
            )
        if self._webhook is not None:
            self._webhook.notify([event.alert for event in events])

    def forget(self, instance_id: str) -> None:
        self._timelines.pop(instance_id, None)


def start_alerting(agent: AgentContext) -> AlertEvaluator:
    """Build the evaluator (and the webhook sender loop when a URL is set); call from the lifespan."""
    settings = agent.settings
    webhook = None
    if settings.alert_webhook_url:
        webhook = AlertWebhook(
            settings.alert_webhook_url,
            clients=agent.scrape_clients,
            allowlist=parse_allowlist(settings.webhook_allowlist, "PERF_AGENT_WEBHOOK_ALLOWLIST"),
            resolver=agent.scrape_resolver,
            receiver=settings.agent_name,
            external_url=f"http://{settings.host}:{settings.port}",
        )
        agent.loops.start("alert-webhook", webhook.run, stale_after_s=60.0)
    return AlertEvaluator(
        snapshots=agent.snapshots,
        alerts=SqliteAlertRepository(agent.database),
        defaults=slo_defaults(settings.slo_defaults),
        webhook=webhook,
        instances=agent.instances,
    )
