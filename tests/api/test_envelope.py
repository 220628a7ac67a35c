"""The envelope and status codes for every generic error path.

Strict body decoding and query validation are exercised on a small app built from the same parts
`create_app` uses (request class, exception handlers, request-id hook), so each rule is tested on
a body shape chosen to hit it; the real endpoints' own error tests live beside their domains.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated

import msgspec
import pytest
from litestar import Litestar, get, post
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from performance_agent.edge import install_edge
from performance_agent.errors import ConflictError, exception_handlers
from performance_agent.observability import RequestMetrics
from performance_agent.ratelimit import RateLimiter
from performance_agent.security import ApiKeyRing
from performance_agent.validation import StrictRequest
from tests.conftest import ClientFactory, assert_envelope

if TYPE_CHECKING:
    from collections.abc import Iterator


class Slo(msgspec.Struct, forbid_unknown_fields=True):
    ttft_p99_s: Annotated[float, msgspec.Meta(gt=0)]


class Rollout(msgspec.Struct, forbid_unknown_fields=True):
    instance_ids: Annotated[list[Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9-]+$")]], msgspec.Meta(min_length=1)]
    slo: Slo
    percent: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10


@post("/rollouts", sync_to_thread=False)
def create_rollout(data: JSONBody[Rollout]) -> Rollout:
    return data


@get("/items/{item_id:str}", sync_to_thread=False)
def read_item(item_id: FromPath[str], limit: Annotated[int, QueryParameter(ge=1, le=100)] = 10) -> dict[str, object]:
    if item_id == "busy":
        raise ConflictError("the item is locked", error="item_locked", context={"holder": "w-1"})
    if item_id == "boom":
        raise RuntimeError("secret internal detail: password=hunter2")
    return {"item_id": item_id, "limit": limit}


@pytest.fixture
def rig() -> Iterator[TestClient[Litestar]]:
    app = Litestar(
        route_handlers=[create_rollout, read_item],
        exception_handlers=exception_handlers(),
        request_class=StrictRequest,
        request_max_body_size=2048,
        debug=False,
    )
    metrics = RequestMetrics(CollectorRegistry())
    install_edge(app, limiter=RateLimiter([]), ring=ApiKeyRing([]), trusted_proxies=[], metrics=metrics)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


GOOD = {"instance_ids": ["a-1", "b-2"], "slo": {"ttft_p99_s": 0.5}}


def test_valid_body_passes_through_typed(rig: TestClient[Litestar]) -> None:
    response = rig.post("/rollouts", json=GOOD)
    assert response.status_code == 201
    assert response.json() == {**GOOD, "percent": 10}


def test_malformed_json_is_400_invalid_json(rig: TestClient[Litestar]) -> None:
    response = rig.post("/rollouts", content=b'{"instance_ids": [', headers={"Content-Type": "application/json"})
    body = assert_envelope(response, 400, "invalid_json")
    assert "JSON" in body["message"]
    assert "invalid_fields" not in body


def test_string_where_number_belongs_is_422_not_coerced(rig: TestClient[Litestar]) -> None:
    response = rig.post("/rollouts", json={**GOOD, "slo": {"ttft_p99_s": "0.5"}})
    body = assert_envelope(response, 422, "validation_error")
    assert body["invalid_fields"] == ["body.slo.ttft_p99_s"]
    assert body["details"] == [
        {"field": "body.slo.ttft_p99_s", "message": "Expected `float`, got `str`", "type": "invalid"}
    ]


def test_each_bad_field_gets_its_own_detail_with_dotted_paths(rig: TestClient[Litestar]) -> None:
    response = rig.post(
        "/rollouts", json={"instance_ids": ["ok", "BAD ID"], "slo": {"ttft_p99_s": -1}, "percent": 0, "extra": 1}
    )
    body = assert_envelope(response, 422, "validation_error")
    assert body["invalid_fields"] == ["body.extra", "body.instance_ids.1", "body.slo.ttft_p99_s", "body.percent"]
    kinds = {d["field"]: d["type"] for d in body["details"]}
    assert kinds["body.extra"] == "unknown_field"
    assert kinds["body.percent"] == "invalid"
    assert "regex" in next(d["message"] for d in body["details"] if d["field"] == "body.instance_ids.1")


def test_missing_fields_and_missing_body(rig: TestClient[Litestar]) -> None:
    body = assert_envelope(rig.post("/rollouts", json={"slo": {"ttft_p99_s": 1}}), 422, "validation_error")
    assert body["details"] == [{"field": "body.instance_ids", "message": "field required", "type": "missing"}]
    empty = assert_envelope(rig.post("/rollouts"), 422, "validation_error")
    assert empty["invalid_fields"] == ["body"]


def test_wrong_top_level_type_is_422(rig: TestClient[Litestar]) -> None:
    body = assert_envelope(rig.post("/rollouts", json=[1, 2]), 422, "validation_error")
    assert body["invalid_fields"] == ["body"]


def test_query_out_of_range_is_422_with_query_path(rig: TestClient[Litestar]) -> None:
    body = assert_envelope(rig.get("/items/x?limit=0"), 422, "validation_error")
    assert body["invalid_fields"] == ["query.limit"]
    body = assert_envelope(rig.get("/items/x?limit=abc"), 422, "validation_error")
    assert body["invalid_fields"] == ["query.limit"]
    assert rig.get("/items/x?limit=5").json() == {"item_id": "x", "limit": 5}


def test_body_over_the_limit_is_413(rig: TestClient[Litestar]) -> None:
    big = {**GOOD, "instance_ids": ["a" * 100] * 40}
    assert_envelope(rig.post("/rollouts", json=big), 413, "payload_too_large")


def test_chunked_body_over_the_limit_is_413_without_reading_it_all(rig: TestClient[Litestar]) -> None:
    sent: list[int] = []

    def chunks() -> Iterator[bytes]:
        for _ in range(1000):
            sent.append(1)
            yield b"x" * 1024

    response = rig.post("/rollouts", content=chunks(), headers={"Content-Type": "application/json"})
    assert_envelope(response, 413, "payload_too_large")


def test_wrong_method_is_405_with_allow(rig: TestClient[Litestar]) -> None:
    response = rig.delete("/rollouts")
    body = assert_envelope(response, 405, "method_not_allowed")
    assert "POST" in response.headers["allow"]
    assert "POST" in body["context"]["allowed_methods"]


def test_domain_errors_keep_their_code_and_context(rig: TestClient[Litestar]) -> None:
    body = assert_envelope(rig.get("/items/busy"), 409, "item_locked")
    assert body["context"] == {"holder": "w-1"}
    assert body["message"] == "the item is locked"


def test_unexpected_errors_leak_nothing_and_are_logged(
    rig: TestClient[Litestar], caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("performance_agent")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.ERROR, logger="performance_agent.errors"):
            response = rig.get("/items/boom", headers={"X-Request-ID": "trace-42"})
    finally:
        logger.removeHandler(caplog.handler)
    body = assert_envelope(response, 500, "internal_server_error")
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    assert body["request_id"] == "trace-42"
    record = next(r for r in caplog.records if r.getMessage() == "unhandled exception")
    assert record.request_id == "trace-42"  # type: ignore[attr-defined]
    assert record.exc_info is not None


@pytest.mark.parametrize(
    ("incoming", "echoed"),
    [("abc-123", True), ("a" * 128, True), ("x.y:z_0-9", True), ("a" * 129, False), ("bad id", False), ("é", False)],
)
def test_request_id_is_echoed_only_when_well_formed(rig: TestClient[Litestar], incoming: str, echoed: bool) -> None:
    response = rig.get("/items/x", headers=[(b"x-request-id", incoming.encode())])
    if echoed:
        assert response.headers["x-request-id"] == incoming
    else:
        assert response.headers["x-request-id"] != incoming
        assert len(response.headers["x-request-id"]) == 32


def test_generated_request_ids_differ(rig: TestClient[Litestar]) -> None:
    ids = {rig.get("/items/x").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


def test_real_app_rate_limit_is_429_with_headers(client_factory: ClientFactory) -> None:
    client = client_factory(rate_limit_per_minute=2, rate_limit_per_hour=50)
    first = client.get("/api/v1/config")
    assert first.headers["ratelimit-limit"] == "2"
    assert first.headers["ratelimit-remaining"] == "1"
    assert first.headers["ratelimit-policy"] == "2;w=60, 50;w=3600"
    client.get("/api/v1/config")
    limited = client.get("/api/v1/capabilities")
    body = assert_envelope(limited, 429, "rate_limited")
    # Two per minute: one request's worth of budget drains in 30 s.
    assert limited.headers["retry-after"] == "30"
    assert body["context"]["retry_after_s"] == 30
    for path in ("/api/v1/health", "/api/v1/health/ready", "/api/v1/health/detailed", "/metrics"):
        assert client.get(path).status_code == 200, path  # probes are never rate limited
