"""Burn-rate alerts: evaluation after each scrape, storage, `GET /alerts`, `/metrics` export, webhook delivery."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
import pytest
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from performance_agent.analysis.alerting import AlertEvaluator, AlertMetrics, AlertWebhook
from performance_agent.analysis.alerts import alert_fingerprint, resolve_unmonitored
from performance_agent.analysis.schemas import AlertEvent, AlertState
from performance_agent.app import create_app
from performance_agent.fleet.ports import StoredInstance
from performance_agent.fleet.schemas import InstanceSpec
from performance_agent.fleet.slo import SloTargets
from performance_agent.metrics.snapshot import InstanceSnapshot, Latency, Quantiles
from performance_agent.outbound.pinned import PinnedClients
from performance_agent.outbound.target_guard import parse_allowlist
from performance_agent.storage.alerts import MemoryAlertRepository, SqlAlertRepository
from performance_agent.storage.instances import MemoryStore
from performance_agent.storage.snapshots import MemorySnapshotRepository
from tests.api.analysis_support import Receiver, register
from tests.conftest import ClientFactory, assert_envelope, make_settings

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from litestar import Litestar

START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
STEP_S = 30.0


#: The series of the evaluators these tests build (apps built by `client_factory` have their own).
REGISTRY = CollectorRegistry()
METRICS = AlertMetrics(REGISTRY)


@pytest.fixture(autouse=True)
def exported_alerts_end_with_the_test() -> Iterator[None]:
    """The tests' evaluators share one registry: each test removes the series it left (burn-3 ends firing)."""
    yield
    METRICS.firing.clear()
    METRICS.burn_rate.clear()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def firing_value(instance_id: str, objective: str = "itl_p99_s") -> float | None:
    labels = {"instance_id": instance_id, "objective": objective, "long_window": "1h", "short_window": "5m"}
    return REGISTRY.get_sample_value("performance_agent_slo_alert_firing", labels)


def snapshot(instance_id: str, at: datetime, itl_p99: float) -> InstanceSnapshot:
    latency = Latency(itl_s=Quantiles(p99=itl_p99, count=1000))
    return InstanceSnapshot(
        instance_id=instance_id, engine="vllm", endpoint="e", collected_at=at, window_s=STEP_S, latency=latency
    )


async def drive(
    evaluator: AlertEvaluator, store: MemoryStore, instance: StoredInstance, pattern: list[float]
) -> list[AlertEvent]:
    """One scrape per ITL p99 value, STEP_S apart: store it as the collector does, then evaluate."""
    repository = MemorySnapshotRepository(store)
    events: list[AlertEvent] = []
    for index, itl in enumerate(pattern):
        taken = snapshot(instance.instance_id, START + timedelta(seconds=STEP_S * index), itl)
        assert await repository.add(instance.instance_id, taken.collected_at, msgspec.json.encode(taken), b"")
        events += await evaluator.after_scrape(instance, taken)
    return events


def stored_instance(instance_id: str, slo: SloTargets | None = None) -> tuple[MemoryStore, StoredInstance]:
    store = MemoryStore()
    instance = StoredInstance(
        instance_id=instance_id,
        spec=InstanceSpec(engine="vllm", endpoint="http://127.0.0.1:9", slo=slo),
        created_at=START,
        updated_at=START,
    )
    store.instances[instance_id] = instance
    return store, instance


def test_an_alert_fires_after_sustained_burn_and_resolves_when_it_stops() -> None:
    store, instance = stored_instance("burn-0")
    alerts = MemoryAlertRepository()
    evaluator = AlertEvaluator(
        snapshots=MemorySnapshotRepository(store), alerts=alerts, defaults=SloTargets(), metrics=METRICS
    )
    good, bad = 0.05, 0.5
    # 30 min good (scrapes 0-59), then bad. Long windows use the data they hold (as PromQL's rate()):
    # at scrape n the 1h and 6h windows hold n + 1 windows of which n - 59 are bad. The slow pair needs
    # 6% and its 30m window (60 scrapes) covered: (n - 59) / (n + 1) >= 6% first at n = 63.
    events = asyncio.run(drive(evaluator, store, instance, [good] * 60 + [bad] * 10))
    assert [(e.kind, e.alert.pair, e.at) for e in events] == [
        ("fire", "6h/30m", START + timedelta(seconds=STEP_S * 63))
    ]
    assert firing_value("burn-0") is None  # the 1h/5m series
    # The fast pair needs 14.4%: (n - 59) / (n + 1) >= 14.4% first at n = 70.
    events = asyncio.run(drive_more(evaluator, store, instance, start_index=70, pattern=[bad]))
    assert [(e.kind, e.alert.objective, e.alert.pair) for e in events] == [("fire", "itl_p99_s", "1h/5m")]
    fired = events[0]
    assert fired.at == START + timedelta(seconds=STEP_S * 70)
    assert fired.alert.burn_rate_long == pytest.approx((11 / 71) / 0.01)
    assert fired.alert.burn_rate_short == pytest.approx(100.0)
    assert firing_value("burn-0") == 1.0
    assert {a.pair: a.started_at for a in asyncio.run(alerts.firing("burn-0"))}["1h/5m"] == fired.at

    # Good again from scrape 71: the 1h window still holds 11 bad windows, and 11 / (n + 1) falls below
    # 14.4% at n = 76, before the 5m window clears (79): one window of the pair is enough to resolve.
    events = asyncio.run(drive_more(evaluator, store, instance, start_index=71, pattern=[good] * 10))
    assert [(e.kind, e.at) for e in events] == [("resolve", START + timedelta(seconds=STEP_S * 76))]
    assert firing_value("burn-0") is None
    history = asyncio.run(alerts.list(state="resolved"))
    assert len(history) == 1
    assert (history[0].started_at, history[0].ended_at) == (fired.at, events[0].at)


async def drive_more(
    evaluator: AlertEvaluator, store: MemoryStore, instance: StoredInstance, *, start_index: int, pattern: list[float]
) -> list[AlertEvent]:
    repository = MemorySnapshotRepository(store)
    events: list[AlertEvent] = []
    for offset, itl in enumerate(pattern):
        taken = snapshot(instance.instance_id, START + timedelta(seconds=STEP_S * (start_index + offset)), itl)
        assert await repository.add(instance.instance_id, taken.collected_at, msgspec.json.encode(taken), b"")
        events += await evaluator.after_scrape(instance, taken)
    return events


def test_the_instance_targets_are_used_and_too_little_data_never_fires() -> None:
    store, instance = stored_instance("burn-1", slo=SloTargets(itl_p99_s=1.0))
    evaluator = AlertEvaluator(
        snapshots=MemorySnapshotRepository(store),
        alerts=MemoryAlertRepository(),
        defaults=SloTargets(),
        metrics=METRICS,
    )
    # 0.5 s breaks the default target (0.1) but meets the instance's own (1.0).
    assert asyncio.run(drive(evaluator, store, instance, [0.5] * 90)) == []
    store, instance = stored_instance("burn-2")
    evaluator = AlertEvaluator(
        snapshots=MemorySnapshotRepository(store),
        alerts=MemoryAlertRepository(),
        defaults=SloTargets(),
        metrics=METRICS,
    )
    # All bad but only 20 minutes of data: the 1h burn rate needs half an hour, so nothing fires.
    assert asyncio.run(drive(evaluator, store, instance, [0.5] * 8)) == []


def test_a_restart_reads_the_time_line_back_from_storage() -> None:
    store, instance = stored_instance("burn-3")
    alerts = MemoryAlertRepository()
    first = AlertEvaluator(
        snapshots=MemorySnapshotRepository(store), alerts=alerts, defaults=SloTargets(), metrics=METRICS
    )
    before = asyncio.run(drive(first, store, instance, [0.05] * 60 + [0.5] * 10))
    assert [e.alert.pair for e in before] == ["6h/30m"]
    restarted = AlertEvaluator(
        snapshots=MemorySnapshotRepository(store), alerts=alerts, defaults=SloTargets(), metrics=METRICS
    )
    events = asyncio.run(drive_more(restarted, store, instance, start_index=70, pattern=[0.5]))
    assert [(e.kind, e.alert.pair) for e in events] == [("fire", "1h/5m")]


def webhook(url: str, allow: list[str], attempts: int = 3) -> tuple[AlertWebhook, PinnedClients, list[float]]:
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    clients = PinnedClients()

    async def loopback(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    hook = AlertWebhook(
        url,
        clients=clients,
        allowlist=parse_allowlist(allow),
        resolver=loopback,
        receiver="performance-agent",
        external_url="http://127.0.0.1:8000",
        metrics=METRICS,
        attempts=attempts,
        sleep=no_wait,
    )
    return hook, clients, waits


def alert_state(state: str = "firing") -> AlertState:
    return AlertState(
        instance_id="vllm-0",
        objective="itl_p99_s",
        pair="1h/5m",
        state=state,  # type: ignore[arg-type]
        started_at=START,
        ended_at=None if state == "firing" else START + timedelta(minutes=7),
        factor=14.4,
        labels={
            "alertname": "PerformanceAgentSLOBurnRate",
            "instance_id": "vllm-0",
            "long_window": "1h",
            "short_window": "5m",
        },
        annotations={"summary": "itl_p99_s burns its error budget on vllm-0"},
        fingerprint="0123456789abcdef",
    )


def test_the_webhook_posts_alertmanager_payloads_and_retries_failures(receiver: Receiver) -> None:
    receiver.statuses = [503]
    hook, clients, waits = webhook(receiver.url, ["127.0.0.1/32"])

    async def send() -> int:
        hook.notify([alert_state("firing")])
        hook.notify([alert_state("resolved")])
        try:
            return await hook.flush()
        finally:
            await clients.aclose()

    assert asyncio.run(send()) == 2
    assert waits == [1.0]  # one retry after the 503
    assert len(receiver.bodies) == 3
    firing, resolved = receiver.bodies[1], receiver.bodies[2]
    assert firing["version"] == "4"
    assert firing["status"] == "firing"
    assert firing["groupKey"] == '{}:{alertname="PerformanceAgentSLOBurnRate", instance_id="vllm-0"}'
    assert firing["alerts"][0]["startsAt"] == "2026-03-01T08:00:00Z"
    assert firing["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"
    assert resolved["status"] == "resolved"
    assert resolved["alerts"][0]["endsAt"] == "2026-03-01T08:07:00Z"


def test_the_webhook_gives_up_after_its_attempts(receiver: Receiver) -> None:
    receiver.statuses = [500, 500]
    hook, clients, waits = webhook(receiver.url, ["127.0.0.1/32"], attempts=2)

    async def send() -> bool:
        try:
            return await hook.deliver(b"{}")
        finally:
            await clients.aclose()

    assert asyncio.run(send()) is False
    assert waits == [1.0]
    assert len(receiver.bodies) == 2


def test_a_webhook_outside_the_allowlist_is_never_called(receiver: Receiver) -> None:
    hook, clients, waits = webhook(receiver.url, ["10.0.0.0/8"])

    async def send() -> bool:
        try:
            return await hook.deliver(b"{}")
        finally:
            await clients.aclose()

    assert asyncio.run(send()) is False
    assert waits == []
    assert receiver.bodies == []


# ------------------------------------------------------------------------------------------- API


@pytest.fixture
def api(client_factory: ClientFactory) -> TestClient[Litestar]:
    client = client_factory(scrape_background=False)
    repository = SqlAlertRepository(client.app.state.context.database)
    resolved = msgspec.structs.replace(alert_state("resolved"), instance_id="vllm-1", fingerprint="1" * 16)
    later = msgspec.structs.replace(alert_state("firing"), started_at=START + timedelta(hours=1))
    events = [
        AlertEvent(kind="fire", at=START, alert=msgspec.structs.replace(resolved, state="firing", ended_at=None)),
        AlertEvent(kind="resolve", at=START + timedelta(minutes=7), alert=resolved),
        AlertEvent(kind="fire", at=later.started_at, alert=later),
    ]
    portal = client.blocking_portal
    assert portal is not None
    portal.call(repository.record, events)
    return client


def test_alerts_are_listed_newest_first_and_filtered(api: TestClient[Litestar]) -> None:
    everything = api.get("/api/v1/alerts").json()
    assert [(a["instance_id"], a["state"]) for a in everything] == [("vllm-0", "firing"), ("vllm-1", "resolved")]
    resolved = api.get("/api/v1/alerts", params={"state": "resolved"}).json()
    assert [(a["started_at"], a["ended_at"]) for a in resolved] == [("2026-03-01T08:00:00Z", "2026-03-01T08:07:00Z")]
    firing = api.get("/api/v1/alerts", params={"state": "firing", "instance_id": "vllm-0"}).json()
    assert [a["ended_at"] for a in firing] == [None]
    assert api.get("/api/v1/alerts", params={"instance_id": "vllm-9"}).json() == []
    assert len(api.get("/api/v1/alerts", params={"limit": 1}).json()) == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"state": "pending"}, "query.state"),
        ({"limit": 0}, "query.limit"),
        ({"instance_id": "a b"}, "query.instance_id"),
    ],
)
def test_bad_query_values_are_422(api: TestClient[Litestar], params: dict[str, Any], field: str) -> None:
    envelope = assert_envelope(api.get("/api/v1/alerts", params=params), 422, "validation_error")
    assert envelope["invalid_fields"] == [field]


# ------------------------------------------------------------------------------ deleted instances


def firing_alert(instance_id: str) -> AlertState:
    labels = {**alert_state().labels, "instance_id": instance_id, "objective": "itl_p99_s", "severity": "page"}
    return msgspec.structs.replace(
        alert_state("firing"), instance_id=instance_id, labels=labels, fingerprint=alert_fingerprint(labels)
    )


def firing_line(instance_id: str) -> str:
    return (
        f'performance_agent_slo_alert_firing{{instance_id="{instance_id}",long_window="1h",objective="itl_p99_s",'
        'short_window="5m"} 1.0'
    )


def seed_database(path: str, registered: list[str], firing: list[AlertState]) -> None:
    """Registrations and firing alerts in a database file, written by an agent that is stopped again."""
    with TestClient(create_app(make_settings(database=path, scrape_background=False))) as seeder:
        for instance_id in registered:
            register(seeder, instance_id)
        repository = SqlAlertRepository(seeder.app.state.context.database)
        portal = seeder.blocking_portal
        assert portal is not None
        portal.call(repository.record, [AlertEvent(kind="fire", at=a.started_at, alert=a) for a in firing])


def test_deleting_an_instance_resolves_its_firing_alerts_everywhere(
    client_factory: ClientFactory, receiver: Receiver, tmp_path: Path
) -> None:
    path = str(tmp_path / "agent.db")
    seed_database(path, ["vllm-0", "vllm-1"], [firing_alert("vllm-0"), firing_alert("vllm-1")])
    api = client_factory(database=path, scrape_background=False, alert_webhook_url=receiver.url)
    before = api.get("/metrics").text
    assert firing_line("vllm-0") in before  # exported again at start
    assert firing_line("vllm-1") in before

    assert api.delete("/api/v1/instances/vllm-0").status_code == 204

    [episode] = api.get("/api/v1/alerts", params={"instance_id": "vllm-0"}).json()
    assert (episode["state"], episode["started_at"]) == ("resolved", "2026-03-01T08:00:00Z")
    assert datetime.fromisoformat(episode["ended_at"]) >= START
    assert "deleted" in episode["annotations"]["description"]
    assert episode["annotations"]["summary"] == "itl_p99_s burns its error budget on vllm-0"
    firing = api.get("/api/v1/alerts", params={"state": "firing"}).json()
    assert [a["instance_id"] for a in firing] == ["vllm-1"]
    after = api.get("/metrics").text
    assert firing_line("vllm-0") not in after
    assert firing_line("vllm-1") in after
    [notification] = receiver.wait_for(1)
    assert notification["status"] == "resolved"
    assert notification["groupKey"] == '{}:{alertname="PerformanceAgentSLOBurnRate", instance_id="vllm-0"}'
    assert [(a["status"], a["labels"]["instance_id"], a["startsAt"], a["endsAt"]) for a in notification["alerts"]] == [
        ("resolved", "vllm-0", "2026-03-01T08:00:00Z", episode["ended_at"])
    ]


def test_a_refused_delete_leaves_the_alerts_firing(
    client_factory: ClientFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "agent.db")
    seed_database(path, ["vllm-0"], [firing_alert("vllm-0")])
    api = client_factory(database=path, scrape_background=False)

    async def in_a_workflow(instance_id: str) -> str | None:
        return "wf-1"

    monkeypatch.setattr(api.app.state.context.storage.workflows, "active_workflow_of", in_a_workflow)
    assert_envelope(api.delete("/api/v1/instances/vllm-0"), 409, "workflow_conflict")
    assert_envelope(api.delete("/api/v1/instances/vllm-9"), 404, "not_found")
    firing = api.get("/api/v1/alerts", params={"state": "firing"}).json()
    assert [(a["instance_id"], a["ended_at"]) for a in firing] == [("vllm-0", None)]
    assert firing_line("vllm-0") in api.get("/metrics").text


def test_alerts_of_instances_deleted_before_are_resolved_at_start(
    client_factory: ClientFactory, receiver: Receiver, tmp_path: Path
) -> None:
    path = str(tmp_path / "agent.db")
    seed_database(path, ["vllm-1"], [firing_alert("gone-0"), firing_alert("vllm-1")])
    api = client_factory(database=path, scrape_background=False, alert_webhook_url=receiver.url)
    states = {a["instance_id"]: a["state"] for a in api.get("/api/v1/alerts").json()}
    assert states == {"gone-0": "resolved", "vllm-1": "firing"}
    page = api.get("/metrics").text
    assert firing_line("gone-0") not in page
    assert firing_line("vllm-1") in page
    [notification] = receiver.wait_for(1)
    assert [(a["status"], a["labels"]["instance_id"]) for a in notification["alerts"]] == [("resolved", "gone-0")]


def test_a_scrape_in_flight_at_delete_does_not_fire_again_but_a_new_registration_does() -> None:
    store, instance = stored_instance("burn-4")
    alerts = MemoryAlertRepository()
    evaluator = AlertEvaluator(
        snapshots=MemorySnapshotRepository(store), alerts=alerts, defaults=SloTargets(), metrics=METRICS
    )
    fired = asyncio.run(drive(evaluator, store, instance, [0.05] * 60 + [0.5] * 11))
    assert [(e.kind, e.alert.pair) for e in fired] == [("fire", "6h/30m"), ("fire", "1h/5m")]
    burn_rate = {"instance_id": "burn-4", "objective": "itl_p99_s", "window": "5m"}
    assert REGISTRY.get_sample_value("performance_agent_slo_burn_rate", burn_rate) == pytest.approx(100.0)

    deleted_at = START + timedelta(seconds=STEP_S * 71)
    events = asyncio.run(evaluator.instance_deleted(instance, deleted_at))
    assert sorted((e.kind, e.at, e.alert.started_at) for e in events) == sorted(
        ("resolve", deleted_at, e.at) for e in fired
    )
    assert firing_value("burn-4") is None
    assert REGISTRY.get_sample_value("performance_agent_slo_burn_rate", burn_rate) is None
    assert asyncio.run(alerts.firing("burn-4")) == []
    assert asyncio.run(evaluator.instance_deleted(instance, deleted_at)) == []  # nothing left to resolve

    # the old registration's scrape, still burning, arrives after the delete: not evaluated
    assert asyncio.run(drive_more(evaluator, store, instance, start_index=71, pattern=[0.5])) == []
    assert firing_value("burn-4") is None
    # registered again under the same id: evaluated as a new instance
    again = msgspec.structs.replace(instance, created_at=deleted_at)
    events = asyncio.run(drive_more(evaluator, store, again, start_index=72, pattern=[0.5]))
    assert [e.kind for e in events] == ["fire", "fire"]
    assert firing_value("burn-4") == 1.0


def test_an_episode_never_ends_before_it_started() -> None:
    alert = firing_alert("vllm-0")
    [event] = resolve_unmonitored([alert, alert_state("resolved")], START - timedelta(hours=1), "gone")
    assert (event.at, event.alert.ended_at, event.alert.state) == (START, START, "resolved")
    assert event.alert.annotations == {"summary": "itl_p99_s burns its error budget on vllm-0", "description": "gone"}
