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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

import httpx
import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge

from performance_agent.analysis.alerts import (
    alertmanager_payload,
    evaluate_alerts,
    postable_alert,
    resolve_unmonitored,
)
from performance_agent.analysis.slo import BURN_RATE_PAIRS, evaluate_slo
from performance_agent.analysis.window import decode_scrape_figures, timeline
from performance_agent.clock import utc_now
from performance_agent.fleet.slo import effective_targets
from performance_agent.outbound.pinned import post_json_pinned
from performance_agent.outbound.retry import guarded_target, with_backoff

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

    from performance_agent.analysis.ports import AlertRepository
    from performance_agent.analysis.schemas import AlertEvent, AlertState, SloReport, WindowFigures
    from performance_agent.background import Heartbeat
    from performance_agent.fleet.ports import InstanceRepository, StoredInstance
    from performance_agent.fleet.slo import SloTargets
    from performance_agent.metrics.ports import SnapshotRepository
    from performance_agent.metrics.snapshot import InstanceSnapshot
    from performance_agent.outbound.pinned import PinnedClients
    from performance_agent.outbound.target_guard import Resolver, TargetAllowlist

__all__ = (
    "AlertEvaluator",
    "AlertMetrics",
    "AlertWebhook",
    "AlertmanagerFeed",
    "AlertmanagerSink",
    "alert_webhook",
)

logger = logging.getLogger("performance_agent.analysis.alerting")


class AlertMetrics:
    """The alert series of one app's registry, and how an alert state is exported to them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.firing = Gauge(
            "performance_agent_slo_alert_firing",
            "1 while an SLO burn-rate alert fires (labels as in the Alertmanager payload); absent otherwise.",
            ("instance_id", "objective", "long_window", "short_window"),
            registry=registry,
        )
        self.burn_rate = Gauge(
            "performance_agent_slo_burn_rate",
            "Error-budget burn rate of one objective over one lookback, as of the instance's last scrape.",
            ("instance_id", "objective", "window"),
            registry=registry,
        )
        self.transitions = Counter(
            "performance_agent_slo_alert_transitions_total",
            "SLO alerts that fired or resolved.",
            ("kind",),
            registry=registry,
        )
        self.alertmanager_posts = Counter(
            "performance_agent_alertmanager_posts_total",
            "POSTs of alerts to Alertmanager's /api/v2/alerts by outcome (ok, refused, rejected, failed).",
            ("outcome",),
            registry=registry,
        )
        self.webhook_deliveries = Counter(
            "performance_agent_alert_webhook_deliveries_total",
            "Alertmanager webhook notifications by outcome (ok, refused, failed).",
            ("outcome",),
            registry=registry,
        )

    def export(self, state: AlertState) -> None:
        labels = (state.instance_id, state.objective, state.labels["long_window"], state.labels["short_window"])
        if state.state == "firing":
            self.firing.labels(*labels).set(1)
        else:
            # KeyError: never exported by this process (fired before a restart and resolved since)
            with contextlib.suppress(KeyError):
                self.firing.remove(*labels)

    def export_burn_rates(self, instance_id: str, report: SloReport) -> set[tuple[str, str]]:
        """Set the instance's burn-rate series; returns the (objective, window) pairs it set."""
        exported: set[tuple[str, str]] = set()
        for objective in report.objectives:
            for window, rate in objective.burn_rates.items():
                if rate.value is not None:
                    self.burn_rate.labels(instance_id, objective.objective, window).set(rate.value)
                    exported.add((objective.objective, window))
        return exported


class AlertmanagerSink(Protocol):
    """Where alert states go for Alertmanager (`outbound.alertmanager.AlertmanagerClient`): key -> encoded alert."""

    def submit(self, alerts: Mapping[str, bytes]) -> None: ...


@dataclass(frozen=True, slots=True)
class AlertmanagerFeed:
    """How the evaluator talks to Alertmanager: the sink, how long a firing alert stays valid, where it links."""

    sink: AlertmanagerSink
    valid_for_s: float
    external_url: str

    def encode(self, alerts: Iterable[AlertState], now: datetime) -> dict[str, bytes]:
        return {
            alert.fingerprint: _encoder.encode(
                postable_alert(
                    alert, now, self.valid_for_s, f"{self.external_url}/api/v1/alerts?instance_id={alert.instance_id}"
                )
            )
            for alert in alerts
        }


#: The longest lookback any alert reads: the only history the evaluator keeps per instance.
LOOKBACK_S = max(pair.long_s for pair in BURN_RATE_PAIRS)
_HISTORY_LIMIT = 10_000_000
_encoder = msgspec.json.Encoder()
_DELETED_REASON = "Resolved because the instance was deleted from the agent; it is no longer evaluated."


class AlertWebhook:
    """Posts Alertmanager payloads to one URL, through the target guard and the pinned clients."""

    def __init__(
        self,
        url: str,
        *,
        clients: PinnedClients,
        allowlist: TargetAllowlist,
        resolver: Resolver,
        receiver: str,
        external_url: str,
        metrics: AlertMetrics,
        timeout_s: float = 5.0,
        attempts: int = 3,
        backoff_s: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._url = url
        self._metrics = metrics
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
            self._metrics.webhook_deliveries.labels("dropped").inc()
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
        outcome = await with_backoff(
            lambda: self._post(body), attempts=self._attempts, backoff_s=self._backoff_s, sleep=self._sleep
        )
        self._metrics.webhook_deliveries.labels(outcome).inc()
        return outcome == "ok"

    async def _post(self, body: bytes) -> str:
        target = await guarded_target(self._url, self._allowlist, self._resolver, "alert webhook")
        if isinstance(target, str):
            return target
        try:
            answer = await post_json_pinned(self._clients, target, body, timeout_s=self._timeout_s)
        except (TimeoutError, httpx.HTTPError) as error:
            logger.warning("alert webhook unreachable", extra={"error": f"{type(error).__name__}: {error}"})
            return "failed"
        if 200 <= answer.status_code < 300:
            return "ok"
        logger.warning("alert webhook answered an error", extra={"status": answer.status_code})
        return "failed"


class AlertEvaluator:
    """Evaluates one instance's burn-rate alerts after each of its scrapes."""

    def __init__(
        self,
        *,
        snapshots: SnapshotRepository,
        alerts: AlertRepository,
        defaults: SloTargets,
        metrics: AlertMetrics,
        webhook: AlertWebhook | None = None,
        instances: InstanceRepository | None = None,
        alertmanager: AlertmanagerFeed | None = None,
    ) -> None:
        self._metrics = metrics
        self._alertmanager = alertmanager
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
                self._metrics.export(state)
            else:
                orphans.append(state)
        if orphans:
            now = utc_now()
            await self._publish(resolve_unmonitored(orphans, now, _DELETED_REASON), now)

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
            self._burn_rate_series.setdefault(instance_id, set()).update(
                self._metrics.export_burn_rates(instance_id, report)
            )
            previous = await self._alerts.firing(instance_id)
            evaluation = evaluate_alerts(instance_id, report, previous, now)
            await self._publish(evaluation.events, now)
            if self._alertmanager is not None:
                # Re-sent on every evaluation while firing, so Alertmanager never times them out.
                firing = (s for s in evaluation.states if s.instance_id == instance_id and s.state == "firing")
                self._alertmanager.sink.submit(self._alertmanager.encode(firing, now))
            return evaluation.events

    async def firing_for_alertmanager(self) -> dict[str, bytes]:
        """Every stored firing alert, encoded for Alertmanager as of now (the sender's timed resend)."""
        if self._alertmanager is None:
            return {}
        return self._alertmanager.encode(await self._alerts.firing(), utc_now())

    async def instance_deleted(self, instance: StoredInstance, at: datetime) -> list[AlertEvent]:
        """Resolve the deleted instance's firing alerts (stored, exported, notified) and drop its series."""
        instance_id = instance.instance_id
        async with self._lock(instance_id):
            self._deleted[instance_id] = instance.created_at
            self.forget(instance_id)
            for objective, window in self._burn_rate_series.pop(instance_id, set()):
                with contextlib.suppress(KeyError):
                    self._metrics.burn_rate.remove(instance_id, objective, window)
            events = resolve_unmonitored(await self._alerts.firing(instance_id), at, _DELETED_REASON)
            await self._publish(events, at)
            return events

    async def _publish(self, events: list[AlertEvent], now: datetime) -> None:
        """Store the events, export them to `/metrics`, log them, notify the webhook and Alertmanager."""
        if not events:
            return
        await self._alerts.record(events)
        for event in events:
            self._metrics.transitions.labels(event.kind).inc()
            self._metrics.export(event.alert)
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
        if self._alertmanager is not None:
            self._alertmanager.sink.submit(self._alertmanager.encode((event.alert for event in events), now))

    def forget(self, instance_id: str) -> None:
        self._timelines.pop(instance_id, None)

    def forget_all(self) -> None:
        """Drop every time line: after another replica led for a while, they miss its scrapes and are re-read."""
        self._timelines.clear()


def alert_webhook(
    url: str | None,
    *,
    clients: PinnedClients,
    allowlist: TargetAllowlist,
    resolver: Resolver,
    receiver: str,
    external_url: str,
    metrics: AlertMetrics,
) -> AlertWebhook | None:
    """The Alertmanager sender when `PERF_AGENT_ALERT_WEBHOOK_URL` is set; its loop runs from the lifespan."""
    if not url:
        return None
    return AlertWebhook(
        url,
        clients=clients,
        allowlist=allowlist,
        resolver=resolver,
        receiver=receiver,
        external_url=external_url,
        metrics=metrics,
    )
