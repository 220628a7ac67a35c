"""/api/v1/judgements: the contract Argo Rollouts and Flagger rely on, judged live against simulated servers.

The agent runs in-process (its background loops included) against simulated vLLM servers 20x
faster than the wall clock, so a one-second window holds about 160 requests per server. Argo
Rollouts is played by evaluating `{$.ok}` on the GET answer as its `web` provider does
(`successCondition: result == true`); Flagger by posting its webhook body and reading only the
status code.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

from performance_agent.simulator.fleet import start_simulator
from tests.conftest import KEYS, OPERATOR_KEY, VIEWER_KEY, ClientFactory, assert_envelope
from tests.rollout_support import OffsetClock

if TYPE_CHECKING:
    from collections.abc import Iterator

    from litestar import Litestar
    from litestar.testing import TestClient

    from performance_agent.simulator.fleet import SimulatedFleet

JUDGEMENTS = "/api/v1/judgements"
OPERATOR = {"X-API-Key": OPERATOR_KEY}
VIEWER = {"X-API-Key": VIEWER_KEY}
FLAGGER_BODY = {"name": "vllm-llama", "namespace": "inference", "phase": "Progressing", "metadata": {"a": "b"}}


def argo_web_metric(answer: Any, json_path: str = "{$.ok}") -> bool:
    """Argo Rollouts' `web` provider: the value at `jsonPath`, then `successCondition: result == true`."""
    assert json_path.startswith("{$.")
    assert json_path.endswith("}")
    result = answer
    for key in json_path[3:-1].split("."):
        result = result[key]
    return bool(result is True)


@pytest.fixture(scope="module")
def fleet() -> Iterator[SimulatedFleet]:
    clock = OffsetClock()
    with start_simulator("vllm", 4, time_scale=20.0, clock=clock, latency_shape="heavy-tailed") as running:
        clock.advance(3.0)  # a minute of simulated traffic before the first read
        yield running


@pytest.fixture
def client(client_factory: ClientFactory, fleet: SimulatedFleet) -> TestClient[Litestar]:
    client = client_factory(api_keys=KEYS, workflow_tick_s=0.05, scrape_background=False)
    for handle in fleet.instances:
        body = {
            "instance_id": handle.instance_id,
            "engine": "vllm",
            "endpoint": handle.endpoint,
            "metrics_path": handle.metrics_path,
        }
        assert client.post("/api/v1/instances", json=body, headers=OPERATOR).status_code == 201
    return client


def wait_for(client: TestClient[Litestar], judgement_id: str, done: Any, deadline_s: float = 30.0) -> dict[str, Any]:
    started = time.monotonic()
    while True:
        answer = client.get(f"{JUDGEMENTS}/{judgement_id}", headers=VIEWER)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        if done(body):
            return body
        assert time.monotonic() - started < deadline_s, body
        time.sleep(0.1)


def test_a_healthy_canary_stays_ok_for_argo_and_flagger_and_stops_with_pass(
    client: TestClient[Litestar], fleet: SimulatedFleet
) -> None:
    created = client.post(
        JUDGEMENTS,
        json={
            "canary_instance_ids": ["vllm-0"],
            "control_instance_ids": ["vllm-1", "vllm-2"],
            "interval_s": 0.5,
            "judge": {"min_canary_requests": 200},
        },
        headers=OPERATOR,
    )
    assert created.status_code == 201, created.text
    started = created.json()
    assert (started["status"], started["verdict"], started["ok"]) == ("running", "running", True)
    assert started["max_duration_s"] == 3600.0
    assert started["judge"] == {"alpha": 0.05, "min_canary_requests": 200, "max_stage_extension_s": None}
    assert started["guardrails"]["max_ttft_p99_increase"] == 0.2
    assert started["created_by"] == "ops"
    judgement_id = started["judgement_id"]
    judged = wait_for(client, judgement_id, lambda body: body["windows"] >= 4)
    assert argo_web_metric(judged)
    assert judged["evidence"]["reference"] == "control"
    assert {m["metric"] for m in judged["evidence"]["metrics"]} >= {"ttft_s", "throughput", "error_rate"}
    hook = client.post(f"{JUDGEMENTS}/{judgement_id}/flagger", json=FLAGGER_BODY, headers=VIEWER)
    assert hook.status_code == 200, hook.text
    assert hook.json() == {"judgement_id": judgement_id, "verdict": "running", "ok": True}
    stopped = client.delete(f"{JUDGEMENTS}/{judgement_id}", headers=OPERATOR)
    assert stopped.status_code == 200, stopped.text
    final = stopped.json()
    assert (final["status"], final["verdict"], final["ok"]) == ("finished", "pass", True)
    assert final["reason"].startswith("stopped by DELETE: no evidence against the canary")
    assert final["canary_requests"] >= 200
    assert client.post(f"{JUDGEMENTS}/{judgement_id}/flagger", headers=VIEWER).status_code == 200
    again = client.delete(f"{JUDGEMENTS}/{judgement_id}", headers=OPERATOR)
    assert assert_envelope(again, 409, "judgement_finished")["context"] == {
        "judgement_id": judgement_id,
        "verdict": "pass",
    }


def test_a_four_times_slower_canary_fails_within_five_windows_and_flagger_gets_a_non_2xx(
    client: TestClient[Litestar], fleet: SimulatedFleet
) -> None:
    fleet.set_faults("vllm-3", latency_regression=4.0)
    try:
        created = client.post(
            JUDGEMENTS,
            json={"canary_instance_ids": ["vllm-3"], "control_instance_ids": ["vllm-0", "vllm-1"], "interval_s": 1},
            headers=OPERATOR,
        )
        assert created.status_code == 201, created.text
        judgement_id = created.json()["judgement_id"]
        failed = wait_for(client, judgement_id, lambda body: body["status"] == "finished")
    finally:
        fleet.set_faults("vllm-3", latency_regression=1.0)
    assert (failed["verdict"], failed["ok"]) == ("fail", False)
    assert failed["windows"] <= 5  # the first window fixes the margins from the control, the rest judge
    assert not argo_web_metric(failed)
    assert failed["evidence"]["decision"] == "rollback"
    assert any(m["exceeded"] for m in failed["evidence"]["metrics"])
    hook = client.post(f"{JUDGEMENTS}/{judgement_id}/flagger", json=FLAGGER_BODY, headers=VIEWER)
    envelope = assert_envelope(hook, 409, "judgement_failed")
    assert envelope["context"] == {"judgement_id": judgement_id, "verdict": "fail"}
    assert assert_envelope(client.delete(f"{JUDGEMENTS}/{judgement_id}", headers=OPERATOR), 409, "judgement_finished")


def test_a_judgement_stops_by_itself_after_max_duration_s(client: TestClient[Litestar]) -> None:
    created = client.post(
        JUDGEMENTS,
        json={
            "canary_instance_ids": ["vllm-0"],
            "control_instance_ids": ["vllm-1"],
            "interval_s": 0.3,
            "max_duration_s": 1,
        },
        headers=OPERATOR,
    )
    judgement_id = created.json()["judgement_id"]
    done = wait_for(client, judgement_id, lambda body: body["status"] == "finished", deadline_s=10.0)
    assert done["verdict"] == "inconclusive"  # far fewer than the default 1,000 canary requests in one second
    assert done["ok"] is True
    assert done["reason"].startswith("max_duration_s (1 s) reached: the canary served ")
    assert done["finished_at"] is not None


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (
            {"canary_instance_ids": ["vllm-0"], "control_instance_ids": ["vllm-0", "vllm-1"]},
            ["body.control_instance_ids"],
        ),
        ({"canary_instance_ids": ["nope-0"], "control_instance_ids": ["vllm-1"]}, ["body.canary_instance_ids"]),
        (
            {"canary_instance_ids": ["vllm-0", "vllm-0"], "control_instance_ids": ["vllm-1"]},
            ["body.canary_instance_ids"],
        ),
        ({"canary_instance_ids": [], "control_instance_ids": ["vllm-1"]}, ["body.canary_instance_ids"]),
        ({"control_instance_ids": ["vllm-1"]}, ["body.canary_instance_ids"]),
        ({"canary_instance_ids": ["vllm-0"], "control_instance_ids": ["vllm-1"], "interval_s": 0}, ["body.interval_s"]),
        (
            {"canary_instance_ids": ["vllm-0"], "control_instance_ids": ["vllm-1"], "judge": {"alpha": 2}},
            ["body.judge.alpha"],
        ),
        (
            {"canary_instance_ids": ["vllm-0"], "control_instance_ids": ["vllm-1"], "guardrails": {"x": 1}},
            ["body.guardrails.x"],
        ),
        ({"canary_instance_ids": ["vllm-0"], "control_instance_ids": ["vllm-1"], "threshold": 3}, ["body.threshold"]),
    ],
)
def test_bad_bodies_are_422_naming_the_field(
    client: TestClient[Litestar], body: dict[str, Any], fields: list[str]
) -> None:
    envelope = assert_envelope(client.post(JUDGEMENTS, json=body, headers=OPERATOR), 422, "validation_error")
    assert envelope["invalid_fields"] == fields


def test_unknown_judgements_are_404_everywhere(client: TestClient[Litestar]) -> None:
    for method, path in (
        ("GET", f"{JUDGEMENTS}/nope"),
        ("DELETE", f"{JUDGEMENTS}/nope"),
        ("POST", f"{JUDGEMENTS}/nope/flagger"),
    ):
        envelope = assert_envelope(client.request(method, path, headers=OPERATOR), 404, "not_found")
        assert envelope["context"] == {"judgement_id": "nope"}


def test_roles_operator_creates_and_stops_viewer_reads_and_answers_flagger(client: TestClient[Litestar]) -> None:
    body = {"canary_instance_ids": ["vllm-0"], "control_instance_ids": ["vllm-1"], "interval_s": 60}
    assert assert_envelope(client.post(JUDGEMENTS, json=body, headers=VIEWER), 403, "forbidden")
    assert assert_envelope(client.post(JUDGEMENTS, json=body), 401, "unauthorized")
    judgement_id = client.post(JUDGEMENTS, json=body, headers=OPERATOR).json()["judgement_id"]
    assert client.get(f"{JUDGEMENTS}/{judgement_id}", headers=VIEWER).status_code == 200
    assert client.post(f"{JUDGEMENTS}/{judgement_id}/flagger", json=FLAGGER_BODY, headers=VIEWER).status_code == 200
    assert assert_envelope(client.delete(f"{JUDGEMENTS}/{judgement_id}", headers=VIEWER), 403, "forbidden")
    assert client.delete(f"{JUDGEMENTS}/{judgement_id}", headers=OPERATOR).status_code == 200
