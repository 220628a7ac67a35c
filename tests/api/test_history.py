"""`GET /history/{instance_id}`: order, window, limit, bounds and the stored documents' schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from performance_agent.context import AgentContext
from performance_agent.metrics.builder import RawScrape, encode_raw_scrape
from performance_agent.metrics.snapshot import InstanceSnapshot, Load, RawSeries
from tests.conftest import KEYS, VIEWER_KEY, ClientFactory, assert_envelope


@pytest.fixture
def api(client_factory: ClientFactory) -> TestClient[Litestar]:
    client = client_factory(scrape_background=False)
    registration = {"instance_id": "vllm-0", "engine": "vllm", "endpoint": "http://127.0.0.1:8000"}
    assert client.post("/api/v1/instances", json=registration).status_code == 201
    return client


def store(client: TestClient[Litestar], ages_minutes: list[float], instance_id: str = "vllm-0") -> list[datetime]:
    """Store one snapshot per age (minutes before now); `requests_running` carries the age to tell them apart."""
    context: AgentContext = client.app.state.context
    now = datetime.now(UTC)
    stamps = [now - timedelta(minutes=age) for age in ages_minutes]

    async def write() -> None:
        for age, stamp in zip(ages_minutes, stamps, strict=True):
            snapshot = InstanceSnapshot(
                instance_id=instance_id,
                engine="vllm",
                endpoint="http://127.0.0.1:8000",
                collected_at=stamp,
                load=Load(requests_running=age),
            )
            raw = encode_raw_scrape(RawScrape(collected_at=stamp, total=RawSeries()))
            assert await context.snapshots.add(instance_id, stamp, msgspec.json.encode(snapshot), raw)

    portal = client.blocking_portal  # the app's own event loop, where its database lives
    assert portal is not None
    portal.call(write)
    return stamps


def ages(client: TestClient[Litestar], **params: int) -> list[float]:
    response = client.get("/api/v1/history/vllm-0", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    snapshots = msgspec.json.decode(response.content, type=list[InstanceSnapshot], strict=True)
    return [snapshot.load.requests_running for snapshot in snapshots if snapshot.load.requests_running is not None]


def test_history_is_newest_first_within_24_hours_by_default(api: TestClient[Litestar]) -> None:
    store(api, [30, 5, 60 * 25, 120, 1])
    assert ages(api) == [1, 5, 30, 120]


def test_hours_and_limit_narrow_the_answer(api: TestClient[Litestar]) -> None:
    store(api, [1, 2, 3, 90, 200, 60 * 48])
    assert ages(api, hours=1) == [1, 2, 3]
    assert ages(api, limit=2) == [1, 2]
    assert ages(api, hours=72, limit=10000) == [1, 2, 3, 90, 200, 60 * 48]
    assert ages(api, hours=2, limit=1) == [1]


def test_a_registered_instance_without_snapshots_has_an_empty_history(api: TestClient[Litestar]) -> None:
    response = api.get("/api/v1/history/vllm-0")
    assert response.status_code == 200
    assert response.json() == []


def test_an_unknown_instance_is_a_404(api: TestClient[Litestar]) -> None:
    envelope = assert_envelope(api.get("/api/v1/history/ghost"), 404, "not_found")
    assert envelope["context"] == {"instance_id": "ghost"}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("hours=0", "query.hours"),
        ("hours=721", "query.hours"),
        ("hours=abc", "query.hours"),
        ("limit=0", "query.limit"),
        ("limit=10001", "query.limit"),
        ("limit=-5", "query.limit"),
    ],
)
def test_out_of_range_parameters_are_422(api: TestClient[Litestar], query: str, field: str) -> None:
    envelope = assert_envelope(api.get(f"/api/v1/history/vllm-0?{query}"), 422, "validation_error")
    assert envelope["invalid_fields"] == [field]


def test_a_malformed_id_is_422(api: TestClient[Litestar]) -> None:
    envelope = assert_envelope(api.get("/api/v1/history/bad%20id"), 422, "validation_error")
    assert envelope["invalid_fields"] == ["path.instance_id"]


def test_the_edges_of_the_ranges_are_accepted(api: TestClient[Litestar]) -> None:
    store(api, [1])
    assert ages(api, hours=720, limit=10000) == [1]
    assert ages(api, hours=1, limit=1) == [1]


def test_viewers_may_read_history(client_factory: ClientFactory) -> None:
    secured = client_factory(api_keys=KEYS, scrape_background=False)
    assert_envelope(secured.get("/api/v1/history/vllm-0"), 401, "unauthorized")
    assert_envelope(secured.get("/api/v1/history/vllm-0", headers={"X-API-Key": VIEWER_KEY}), 404, "not_found")


def test_the_openapi_document_describes_the_array_of_snapshots(api: TestClient[Litestar]) -> None:
    document = api.get("/schema/openapi.json").json()
    operation = document["paths"]["/api/v1/history/{instance_id}"]["get"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"items": {"$ref": "#/components/schemas/InstanceSnapshot"}, "type": "array"}
    parameters = {parameter["name"]: parameter["schema"] for parameter in operation["parameters"]}
    assert (parameters["hours"]["minimum"], parameters["hours"]["maximum"]) == (1, 720)
    assert (parameters["limit"]["minimum"], parameters["limit"]["maximum"]) == (1, 10000)
