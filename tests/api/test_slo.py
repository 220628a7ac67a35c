"""`PUT /api/v1/instances/{id}/slo`: replaces the targets, falls back to configured defaults, refuses bad values."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.api.analysis_support import register
from tests.conftest import KEYS, OPERATOR_KEY, VIEWER_KEY, ClientFactory, assert_envelope

DEFAULTS = ["ttft_p99_s=1.5", "error_rate=0.02", "min_generation_tokens_per_s=50"]


@pytest.fixture
def api(client_factory: ClientFactory) -> TestClient[Litestar]:
    client = client_factory(scrape_background=False, slo_defaults=DEFAULTS)
    register(client, "vllm-0", slo={"ttft_p99_s": 9.0, "itl_p99_s": 0.3})
    return client


def put_slo(client: TestClient[Litestar], body: Any, instance_id: str = "vllm-0") -> Any:
    return client.put(f"/api/v1/instances/{instance_id}/slo", json=body)


def test_put_replaces_every_target_and_get_shows_them(api: TestClient[Litestar]) -> None:
    response = put_slo(api, {"itl_p99_s": 0.05, "target_ratio": 0.999})
    assert response.status_code == 200, response.text
    expected = {
        "ttft_p99_s": 1.5,  # not named: the configured default, not the 9.0 registered before
        "ttft_p95_s": 1.0,
        "itl_p99_s": 0.05,
        "e2e_p99_s": 30.0,
        "error_rate": 0.02,
        "min_generation_tokens_per_s": 50.0,
        "target_ratio": 0.999,
    }
    assert response.json()["slo"] == expected
    assert api.get("/api/v1/instances/vllm-0").json()["slo"] == expected


def test_null_removes_the_throughput_floor(api: TestClient[Litestar]) -> None:
    body = put_slo(api, {"min_generation_tokens_per_s": None}).json()
    assert body["slo"]["min_generation_tokens_per_s"] is None


def test_an_empty_body_stores_the_configured_defaults(api: TestClient[Litestar]) -> None:
    slo = put_slo(api, {}).json()["slo"]
    assert (slo["ttft_p99_s"], slo["error_rate"], slo["itl_p99_s"]) == (1.5, 0.02, 0.1)


def test_the_rest_of_the_registration_is_kept(api: TestClient[Litestar]) -> None:
    before = api.get("/api/v1/instances/vllm-0").json()
    after = put_slo(api, {"ttft_p99_s": 2.0}).json()
    for field in ("engine", "endpoint", "labels", "engine_args", "created_at"):
        assert after[field] == before[field]


def test_unknown_instance_is_404(api: TestClient[Litestar]) -> None:
    envelope = assert_envelope(put_slo(api, {"ttft_p99_s": 1.0}, instance_id="nobody"), 404, "not_found")
    assert envelope["context"] == {"instance_id": "nobody"}


def test_malformed_instance_id_is_422(api: TestClient[Litestar]) -> None:
    envelope = assert_envelope(put_slo(api, {}, instance_id="bad%20id"), 422, "validation_error")
    assert envelope["invalid_fields"] == ["path.instance_id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ttft_p99_s": -0.5}, "body.ttft_p99_s"),
        ({"ttft_p95_s": 0}, "body.ttft_p95_s"),
        ({"itl_p99_s": -1}, "body.itl_p99_s"),
        ({"e2e_p99_s": "30"}, "body.e2e_p99_s"),
        ({"error_rate": 1.01}, "body.error_rate"),
        ({"error_rate": -0.1}, "body.error_rate"),
        ({"target_ratio": 0}, "body.target_ratio"),
        ({"min_generation_tokens_per_s": -5}, "body.min_generation_tokens_per_s"),
        ({"ttft_p99_s": None}, "body.ttft_p99_s"),
        ({"latency": 1}, "body.latency"),
    ],
)
def test_bad_values_are_422_with_the_dotted_field(api: TestClient[Litestar], body: dict[str, Any], field: str) -> None:
    envelope = assert_envelope(put_slo(api, body), 422, "validation_error")
    assert envelope["invalid_fields"] == [field]
    assert api.get("/api/v1/instances/vllm-0").json()["slo"]["ttft_p99_s"] == 9.0  # nothing stored


def test_several_bad_values_are_all_reported(api: TestClient[Litestar]) -> None:
    envelope = assert_envelope(put_slo(api, {"ttft_p99_s": -1, "error_rate": 2}), 422, "validation_error")
    assert sorted(envelope["invalid_fields"]) == ["body.error_rate", "body.ttft_p99_s"]


def test_registration_with_a_negative_latency_is_422(api: TestClient[Litestar]) -> None:
    body = {"instance_id": "x-1", "engine": "vllm", "endpoint": "http://127.0.0.1:9", "slo": {"itl_p99_s": -0.1}}
    envelope = assert_envelope(api.post("/api/v1/instances", json=body), 422, "validation_error")
    assert "body.slo.itl_p99_s" in envelope["invalid_fields"]


def test_changing_targets_needs_the_operator_role(client_factory: ClientFactory) -> None:
    client = client_factory(api_keys=KEYS, scrape_background=False)
    assert_envelope(put_slo(client, {}), 401, "unauthorized")
    response = client.put("/api/v1/instances/vllm-0/slo", json={}, headers={"X-API-Key": VIEWER_KEY})
    assert_envelope(response, 403, "forbidden")
    response = client.put("/api/v1/instances/vllm-0/slo", json={}, headers={"X-API-Key": OPERATOR_KEY})
    assert_envelope(response, 404, "not_found")


CONFIGURED = {  # DEFAULTS over the built-in targets
    "ttft_p99_s": 1.5,
    "ttft_p95_s": 1.0,
    "itl_p99_s": 0.1,
    "e2e_p99_s": 30.0,
    "error_rate": 0.02,
    "min_generation_tokens_per_s": 50.0,
    "target_ratio": 0.99,
}


def test_registration_fills_omitted_targets_from_the_configured_defaults(api: TestClient[Litestar]) -> None:
    # the fixture registered vllm-0 with ttft_p99_s 9.0 and itl_p99_s 0.3 only
    stored = api.get("/api/v1/instances/vllm-0").json()["slo"]
    assert stored == {**CONFIGURED, "ttft_p99_s": 9.0, "itl_p99_s": 0.3}


def test_registration_and_put_slo_store_the_same_targets_for_the_same_body(api: TestClient[Litestar]) -> None:
    given = {"itl_p99_s": 0.05, "min_generation_tokens_per_s": None}
    registered = register(api, "vllm-1", slo=given)["slo"]
    assert registered == {**CONFIGURED, "itl_p99_s": 0.05, "min_generation_tokens_per_s": None}
    assert put_slo(api, given, instance_id="vllm-1").json()["slo"] == registered


def test_replacing_the_registration_fills_omitted_targets_from_the_configured_defaults(
    api: TestClient[Litestar],
) -> None:
    body = {"engine": "vllm", "endpoint": "http://127.0.0.1:9", "slo": {"error_rate": 0.05}}
    response = api.put("/api/v1/instances/vllm-0", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["slo"] == {**CONFIGURED, "error_rate": 0.05}
    assert api.get("/api/v1/instances/vllm-0").json()["slo"] == {**CONFIGURED, "error_rate": 0.05}


def test_a_registration_without_targets_stores_none_and_follows_the_defaults(api: TestClient[Litestar]) -> None:
    assert register(api, "vllm-2")["slo"] is None
    assert register(api, "vllm-3", slo={})["slo"] == CONFIGURED


@pytest.mark.parametrize(
    ("slo", "field"),
    [
        ({"itl_p99_s": 2e9}, "body.slo.itl_p99_s"),
        ({"error_rate": 0}, "body.slo.error_rate"),
        ({"latency": 1}, "body.slo.latency"),
    ],
)
def test_registration_and_replacement_refuse_bad_targets(
    api: TestClient[Litestar], slo: dict[str, Any], field: str
) -> None:
    body = {"instance_id": "x-1", "engine": "vllm", "endpoint": "http://127.0.0.1:9", "slo": slo}
    envelope = assert_envelope(api.post("/api/v1/instances", json=body), 422, "validation_error")
    assert envelope["invalid_fields"] == [field]
    del body["instance_id"]
    envelope = assert_envelope(api.put("/api/v1/instances/vllm-0", json=body), 422, "validation_error")
    assert envelope["invalid_fields"] == [field]
    assert api.get("/api/v1/instances/vllm-0").json()["slo"]["ttft_p99_s"] == 9.0  # nothing replaced
    assert api.get("/api/v1/instances/x-1").status_code == 404
