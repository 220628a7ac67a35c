from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from performance_agent.app import _open_routes
from performance_agent.system.controllers import ProbesController, SystemController
from tests.conftest import ADMIN_KEY, APPROVER_KEY, KEYS, OPERATOR_KEY, VIEWER_KEY, ClientFactory, assert_envelope

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.testing import TestClient


def test_missing_key_is_401(auth_client: TestClient[Litestar]) -> None:
    body = assert_envelope(auth_client.get("/api/v1/config"), 401, "unauthorized")
    assert "X-API-Key" in body["message"]
    assert auth_client.get("/api/v1/config").headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": "not-a-real-key-0000000"},
        {"Authorization": "Bearer not-a-real-key-0000000"},
        {"Authorization": f"Basic {VIEWER_KEY}"},
        {"X-API-Key": VIEWER_KEY[:-1]},
    ],
)
def test_wrong_key_is_401(auth_client: TestClient[Litestar], headers: dict[str, str]) -> None:
    assert_envelope(auth_client.get("/api/v1/config", headers=headers), 401, "unauthorized")


@pytest.mark.parametrize(
    "headers", [{"X-API-Key": VIEWER_KEY}, {"Authorization": f"Bearer {VIEWER_KEY}"}, {"X-API-Key": ADMIN_KEY}]
)
def test_valid_key_in_either_header_reads(auth_client: TestClient[Litestar], headers: dict[str, str]) -> None:
    assert auth_client.get("/api/v1/config", headers=headers).status_code == 200
    assert auth_client.get("/api/v1/capabilities", headers=headers).status_code == 200


@pytest.mark.parametrize(
    "path", ["/api/v1/health", "/api/v1/health/ready", "/api/v1/health/detailed", "/metrics", "/schema/openapi.json"]
)
def test_probes_metrics_and_docs_are_open(auth_client: TestClient[Litestar], path: str) -> None:
    assert auth_client.get(path).status_code == 200


def test_rate_limit_counts_per_key_name_not_per_address(client_factory: ClientFactory) -> None:
    client = client_factory(api_keys=KEYS, rate_limit_per_minute=2)
    assert client.get("/api/v1/config", headers={"X-API-Key": VIEWER_KEY}).status_code == 200
    assert client.get("/api/v1/config", headers={"X-API-Key": VIEWER_KEY}).status_code == 200
    assert_envelope(client.get("/api/v1/config", headers={"X-API-Key": VIEWER_KEY}), 429, "rate_limited")
    # Same address, another key: its own budget.
    assert client.get("/api/v1/config", headers={"X-API-Key": OPERATOR_KEY}).status_code == 200


def test_force_delete_is_for_admins_only(auth_client: TestClient[Litestar]) -> None:
    body = {"instance_id": "forced-0", "engine": "vllm", "endpoint": "http://127.0.0.1:9"}
    assert auth_client.post("/api/v1/instances", json=body, headers={"X-API-Key": OPERATOR_KEY}).status_code == 201
    for key in (OPERATOR_KEY, APPROVER_KEY):
        refused = auth_client.delete("/api/v1/instances/forced-0?force=true", headers={"X-API-Key": key})
        assert assert_envelope(refused, 403, "forbidden")["context"]["required_role"] == "admin"
    deleted = auth_client.delete("/api/v1/instances/forced-0?force=true", headers={"X-API-Key": ADMIN_KEY})
    assert deleted.status_code == 204


def test_a_route_needing_a_key_is_refused_outside_the_key_check() -> None:
    # The probes are served outside the router that carries the API key hook; a handler that is
    # not marked public must never land there.
    assert _open_routes(ProbesController) == [ProbesController]
    with pytest.raises(ValueError, match="must be public: config, capabilities"):
        _open_routes(SystemController)
