"""Instances CRUD: status codes, error codes, validation, redaction and the workflow seam."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from performance_agent.context import AgentContext
from performance_agent.operator_files import OPERATOR_FILE_MAX_BYTES
from tests.conftest import OPERATOR_KEY, VIEWER_KEY, ClientFactory, assert_envelope

BASE = "/api/v1/instances"


@pytest.fixture
def api(client_factory: ClientFactory) -> TestClient[Litestar]:
    return client_factory(scrape_background=False, scrape_header_env=["VLLM_TOKEN"])


def body(instance_id: str = "vllm-0", **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"instance_id": instance_id, "engine": "vllm", "endpoint": "http://127.0.0.1:8000"}
    base.update(overrides)
    return base


def context_of(client: TestClient[Litestar]) -> AgentContext:
    context: AgentContext = client.app.state.context
    return context


FULL = body(
    labels={"team": "search", "zone": "b"},
    metrics_path="/i/vllm-0/metrics",
    slo={"ttft_p99_s": 1.5, "error_rate": 0.02},
    engine_args={"max_num_seqs": 256, "gpu_memory_utilization": 0.9, "enable_prefix_caching": True},
    gpu={"model": "H100", "memory_gib": 80, "count": 2},
    model={"name": "meta-llama/Llama-3.1-8B-Instruct", "architecture": "LlamaForCausalLM", "parameters_b": 8},
    headers={"Authorization": {"env": "VLLM_TOKEN", "prefix": "Bearer "}, "X-Tenant": "blue-secret"},
    tls_verify=False,
)


def test_register_answers_201_with_the_instance_and_secrets_redacted(api: TestClient[Litestar]) -> None:
    response = api.post(BASE, json=FULL)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["instance_id"] == "vllm-0"
    assert created["labels"] == {"team": "search", "zone": "b"}
    assert created["metrics_path"] == "/i/vllm-0/metrics"
    assert created["slo"]["ttft_p99_s"] == 1.5
    assert created["slo"]["error_rate"] == 0.02
    assert created["slo"]["itl_p99_s"] == 0.1  # defaults fill what was not given
    assert created["engine_args"] == {"max_num_seqs": 256, "gpu_memory_utilization": 0.9, "enable_prefix_caching": True}
    assert created["gpu"] == {"model": "H100", "memory_gib": 80.0, "count": 2}
    assert created["model"]["parameters_b"] == 8.0
    assert created["headers"] == {"Authorization": {"env": "VLLM_TOKEN", "prefix": "Bearer "}, "X-Tenant": "REDACTED"}
    assert "blue-secret" not in response.text
    assert created["tls_verify"] is False
    assert (created["status"], created["last_seen"], created["last_error"]) == ("pending", None, None)
    assert created["consecutive_failures"] == 0
    assert created["created_at"] == created["updated_at"]
    fetched = api.get(f"{BASE}/vllm-0")
    assert fetched.status_code == 200
    assert fetched.json() == created


def test_a_known_id_is_a_409_instance_exists(api: TestClient[Litestar]) -> None:
    assert api.post(BASE, json=body()).status_code == 201
    envelope = assert_envelope(api.post(BASE, json=body(engine="tgi")), 409, "instance_exists")
    assert envelope["context"] == {"instance_id": "vllm-0"}
    assert api.get(f"{BASE}/vllm-0").json()["engine"] == "vllm"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (body(instance_id="bad id"), "body.instance_id"),
        (body(instance_id=""), "body.instance_id"),
        (body(instance_id="x" * 129), "body.instance_id"),
        (body(engine="triton"), "body.engine"),
        (body(endpoint="http://127.0.0.1:8000/?q#f"), "body.endpoint"),
        (body(metrics_path="metrics"), "body.metrics_path"),
        (body(slo={"ttft_p99_s": -1}), "body.slo.ttft_p99_s"),
        (body(slo={"ttft_p99_s": "2"}), "body.slo.ttft_p99_s"),
        (body(slo={"made_up": 1}), "body.slo.made_up"),
        (body(gpu={"count": 0}), "body.gpu.count"),
        (body(labels={"bad key": "v"}), "body.labels"),
        (body(headers={"Bad Header": "x"}), "body.headers"),
        (body(headers={"X-A": "a\r\nInjected: 1"}), "body.headers"),
        (body(color="red"), "body.color"),
        (body(instance_id="."), "body.instance_id"),
        (body(instance_id=".."), "body.instance_id"),
        (body(headers={"X-A": "caf\u00e9"}), "body.headers"),
        (body(headers={"X-A": "\U0001f600"}), "body.headers"),
        (body(headers={"X-A": {"env": "TOKEN", "prefix": "Bearer\u00a0"}}), "body.headers"),
    ],
)
def test_invalid_bodies_are_422_naming_the_field(
    api: TestClient[Litestar], payload: dict[str, Any], field: str
) -> None:
    envelope = assert_envelope(api.post(BASE, json=payload), 422, "validation_error")
    # msgspec does not name the key of a bad dict value, so those paths end at the dict
    assert any(invalid == field or invalid.startswith(field + ".") for invalid in envelope["invalid_fields"]), envelope
    assert api.get(BASE).json() == []


def test_a_missing_required_field_is_named(api: TestClient[Litestar]) -> None:
    envelope = assert_envelope(api.post(BASE, json={"instance_id": "a", "engine": "vllm"}), 422, "validation_error")
    assert envelope["invalid_fields"] == ["body.endpoint"]


@pytest.mark.parametrize(
    ("headers", "field", "fragment"),
    [
        (
            {"Authorization": {"env": "HOME"}},
            "body.headers.Authorization.env",
            "not listed in PERF_AGENT_SCRAPE_HEADER_ENV",
        ),
        ({"X-Token": "REDACTED"}, "body.headers.X-Token", "placeholder"),
        ({"Host": "evil.example"}, "body.headers.Host", "set by the agent"),
        ({"Content-Length": "5"}, "body.headers.Content-Length", "set by the agent"),
    ],
)
def test_scrape_headers_are_checked(
    api: TestClient[Litestar], headers: dict[str, Any], field: str, fragment: str
) -> None:
    envelope = assert_envelope(api.post(BASE, json=body(headers=headers)), 422, "validation_error")
    assert envelope["invalid_fields"] == [field]
    assert fragment in envelope["details"][0]["message"]


def test_a_ca_bundle_must_be_a_readable_pem_file(api: TestClient[Litestar], tmp_path: Path) -> None:
    not_pem = tmp_path / "bundle.pem"
    not_pem.write_text("not a certificate")
    for path in (str(tmp_path / "missing.pem"), str(not_pem)):
        envelope = assert_envelope(api.post(BASE, json=body(ca_bundle=path)), 422, "validation_error")
        assert envelope["invalid_fields"] == ["body.ca_bundle"]


def test_a_ca_bundle_that_is_not_a_regular_file_is_refused_at_once(api: TestClient[Litestar], tmp_path: Path) -> None:
    """A FIFO, a pipe behind /proc/self/fd, a directory or a device once froze the event loop for good."""
    fifo = tmp_path / "bundle.fifo"
    os.mkfifo(fifo)
    read_end, write_end = os.pipe()
    big = tmp_path / "big.pem"
    big.write_bytes(b"x" * (OPERATOR_FILE_MAX_BYTES + 1))
    cases = {
        str(fifo): "a pipe (FIFO)",
        f"/proc/self/fd/{read_end}": "a pipe (FIFO)",
        str(tmp_path): "a directory",
        "/dev/zero": "a device",
        str(big): f"more than the {OPERATOR_FILE_MAX_BYTES} allowed",
    }
    try:
        for path, fragment in cases.items():
            started = time.monotonic()
            envelope = assert_envelope(api.post(BASE, json=body(ca_bundle=path)), 422, "validation_error")
            assert time.monotonic() - started < 2.0
            assert envelope["invalid_fields"] == ["body.ca_bundle"]
            assert fragment in envelope["details"][0]["message"], envelope
    finally:
        os.close(read_end)
        os.close(write_end)
    assert api.get(BASE).json() == []


@pytest.mark.parametrize(
    ("endpoint", "fragment"),
    [
        ("http://169.254.169.254", "link-local or cloud metadata"),
        ("http://2852039166", "link-local or cloud metadata"),
        ("http://[::ffff:169.254.169.254]", "link-local or cloud metadata"),
        ("http://[fd00:ec2::254]", "link-local or cloud metadata"),
        ("http://metadata.google.internal", "metadata host name"),
        ("http://10.0.0.5:8000", "not inside PERF_AGENT_SCRAPE_ALLOWLIST"),
        ("ftp://127.0.0.1:21", "use http or https"),
        ("http://user:pw@127.0.0.1:8000", "credentials"),
    ],
)
def test_forbidden_endpoints_are_a_403_target_not_allowed(
    api: TestClient[Litestar], endpoint: str, fragment: str
) -> None:
    envelope = assert_envelope(api.post(BASE, json=body(endpoint=endpoint)), 403, "target_not_allowed")
    assert fragment in envelope["message"]
    assert api.get(BASE).json() == []


def test_put_replaces_the_registration_and_keeps_the_state(api: TestClient[Litestar]) -> None:
    assert api.post(BASE, json=FULL).status_code == 201
    replacement = {"engine": "sglang", "endpoint": "http://127.0.0.1:30000", "labels": {"team": "ads"}}
    response = api.put(f"{BASE}/vllm-0", json=replacement)
    assert response.status_code == 200, response.text
    replaced = response.json()
    assert (replaced["engine"], replaced["endpoint"], replaced["labels"]) == (
        "sglang",
        "http://127.0.0.1:30000",
        {"team": "ads"},
    )
    assert (replaced["slo"], replaced["gpu"], replaced["headers"], replaced["metrics_path"]) == (
        None,
        None,
        {},
        "/metrics",
    )
    assert replaced["status"] == "pending"
    assert replaced["created_at"] == api.get(f"{BASE}/vllm-0").json()["created_at"]
    assert replaced["updated_at"] >= replaced["created_at"]
    same_id = api.put(f"{BASE}/vllm-0", json={**replacement, "instance_id": "vllm-0"})
    assert same_id.status_code == 200


def test_put_errors(api: TestClient[Litestar]) -> None:
    payload = {"engine": "vllm", "endpoint": "http://127.0.0.1:8000"}
    assert_envelope(api.put(f"{BASE}/ghost", json=payload), 404, "not_found")
    assert api.post(BASE, json=body()).status_code == 201
    other_id = assert_envelope(api.put(f"{BASE}/vllm-0", json={**payload, "instance_id": "x"}), 422, "validation_error")
    assert other_id["invalid_fields"] == ["body.instance_id"]
    refused = api.put(f"{BASE}/vllm-0", json={**payload, "endpoint": "http://169.254.169.254"})
    assert_envelope(refused, 403, "target_not_allowed")
    assert api.get(f"{BASE}/vllm-0").json()["endpoint"] == "http://127.0.0.1:8000"
    assert_envelope(api.put(f"{BASE}/bad%20id", json=payload), 422, "validation_error")


def test_unknown_and_malformed_ids_in_paths(api: TestClient[Litestar]) -> None:
    envelope = assert_envelope(api.get(f"{BASE}/ghost"), 404, "not_found")
    assert envelope["context"] == {"instance_id": "ghost"}
    malformed = assert_envelope(api.get(f"{BASE}/bad%20id!"), 422, "validation_error")
    assert malformed["invalid_fields"] == ["path.instance_id"]
    assert_envelope(api.get(f"{BASE}/{'x' * 129}"), 422, "validation_error")
    assert_envelope(api.delete(f"{BASE}/ghost"), 404, "not_found")
    assert_envelope(api.delete(f"{BASE}/bad%20id!"), 422, "validation_error")


def test_list_filters_by_engine_label_and_status(api: TestClient[Litestar]) -> None:
    for instance_id, engine, labels in (
        ("c", "tgi", {"team": "ads"}),
        ("a", "vllm", {"team": "search", "zone": "a"}),
        ("b", "vllm", {"team": "search", "zone": "b"}),
    ):
        assert api.post(BASE, json=body(instance_id, engine=engine, labels=labels)).status_code == 201

    def ids(**params: Any) -> list[str]:
        response = api.get(BASE, params=params)
        assert response.status_code == 200, response.text
        return [item["instance_id"] for item in response.json()]

    assert ids() == ["a", "b", "c"]
    assert ids(engine="vllm") == ["a", "b"]
    assert ids(label="team=search") == ["a", "b"]
    assert ids(label=["team=search", "zone=b"]) == ["b"]
    assert ids(label="team=nobody") == []
    assert ids(status="pending") == ["a", "b", "c"]
    assert ids(status="up") == []
    assert ids(engine="tgi", status="pending", label="team=ads") == ["c"]


@pytest.mark.parametrize(
    ("params", "field"),
    [({"label": "team"}, "query.label"), ({"status": "sleeping"}, "query.status"), ({"engine": "x"}, "query.engine")],
)
def test_bad_list_filters_are_422(api: TestClient[Litestar], params: dict[str, str], field: str) -> None:
    envelope = assert_envelope(api.get(BASE, params=params), 422, "validation_error")
    assert envelope["invalid_fields"] == [field]


def test_delete_removes_the_instance_and_its_history(api: TestClient[Litestar]) -> None:
    assert api.post(BASE, json=body()).status_code == 201
    response = api.delete(f"{BASE}/vllm-0")
    assert response.status_code == 204
    assert response.content == b""
    assert_envelope(api.get(f"{BASE}/vllm-0"), 404, "not_found")
    assert_envelope(api.get("/api/v1/history/vllm-0"), 404, "not_found")


def test_delete_is_refused_while_a_workflow_is_active(
    api: TestClient[Litestar], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert api.post(BASE, json=body("vllm-0")).status_code == 201
    assert api.post(BASE, json=body("vllm-1")).status_code == 201
    asked: list[str] = []

    async def active_workflow(instance_id: str) -> str | None:
        asked.append(instance_id)
        return "wf-42" if instance_id == "vllm-0" else None

    monkeypatch.setattr(context_of(api).storage.workflows, "active_workflow_of", active_workflow)
    envelope = assert_envelope(api.delete(f"{BASE}/vllm-0"), 409, "workflow_conflict")
    assert envelope["context"] == {"instance_id": "vllm-0", "workflow_id": "wf-42"}
    assert api.get(f"{BASE}/vllm-0").status_code == 200
    assert api.delete(f"{BASE}/vllm-1").status_code == 204
    assert asked == ["vllm-0", "vllm-1"]


def test_writes_need_the_operator_role(client_factory: ClientFactory) -> None:
    from tests.conftest import KEYS

    secured = client_factory(api_keys=KEYS, scrape_background=False)
    viewer, operator = {"X-API-Key": VIEWER_KEY}, {"X-API-Key": OPERATOR_KEY}
    assert_envelope(secured.post(BASE, json=body(), headers=viewer), 403, "forbidden")
    assert_envelope(secured.post(BASE, json=body()), 401, "unauthorized")
    assert secured.post(BASE, json=body(), headers=operator).status_code == 201
    assert secured.get(BASE, headers=viewer).status_code == 200
    assert secured.get(f"{BASE}/vllm-0", headers=viewer).status_code == 200
    assert_envelope(secured.put(f"{BASE}/vllm-0", json=body(), headers=viewer), 403, "forbidden")
    assert_envelope(secured.delete(f"{BASE}/vllm-0", headers=viewer), 403, "forbidden")
    assert secured.delete(f"{BASE}/vllm-0", headers=operator).status_code == 204
