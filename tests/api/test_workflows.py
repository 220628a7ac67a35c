"""POST/GET /workflows: validation, conflicts, idempotency, reads, pagination and the audit trail.

The agent's own reconciler ticks once at start-up and then sleeps for a minute, so nothing moves a
workflow behind these tests' backs; the transition matrix lives in test_workflows_actions.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from performance_agent.optimization.schemas import OptimizationPlan
from performance_agent.storage.plans import SqlPlanRepository
from tests.conftest import APPROVER_KEY, KEYS, OPERATOR_KEY, VIEWER_KEY, ClientFactory, assert_envelope

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.testing import TestClient

HOOK = "http://127.0.0.1:9/hook"
WORKFLOWS = "/api/v1/workflows"


def register(
    client: TestClient[Litestar], count: int = 4, engine: str = "vllm", prefix: str = "v", **headers: str
) -> list[str]:
    ids = []
    for i in range(count):
        instance_id = f"{prefix}{i}"
        response = client.post(
            "/api/v1/instances",
            json={
                "instance_id": instance_id,
                "engine": engine,
                "endpoint": f"http://127.0.0.1:{9100 + i}",
                "engine_args": {"max_num_seqs": 256},
            },
            headers=headers,
        )
        assert response.status_code == 201, response.text
        ids.append(instance_id)
    return ids


def body(instance_ids: list[str], **extra: Any) -> dict[str, Any]:
    return {"instance_ids": instance_ids, "changes": {"--max-num-seqs": 128}, "actuator": {"url": HOOK}, **extra}


@pytest.fixture
def client(client_factory: ClientFactory) -> TestClient[Litestar]:
    return client_factory(workflow_tick_s=60.0)


def test_start_answers_201_with_the_workflow(client: TestClient[Litestar]) -> None:
    ids = register(client)
    response = client.post(WORKFLOWS, json=body(ids, env={"VLLM_USE_V1": "1"}, description="fewer seqs"))
    assert response.status_code == 201, response.text
    workflow = response.json()
    assert response.headers["etag"] == '"1"'
    assert workflow["status"] == "capturing_baseline"
    assert workflow["version"] == 1
    assert workflow["engine"] == "vllm"
    assert workflow["instance_ids"] == ids
    assert workflow["changes"] == {"--max-num-seqs": 128}
    assert workflow["env"] == {"VLLM_USE_V1": "1"}
    assert workflow["stages"] == [10, 50, 100]
    assert (workflow["stage_index"], workflow["percent"], workflow["changed_count"]) == (0, 10, 0)
    assert workflow["cohorts"] == {"canary": [], "control": ids}
    assert workflow["allowed_actions"] == ["abort", "cancel"]
    assert workflow["actuator"] == {"type": "webhook", "url": HOOK}
    assert workflow["monitor"] == {
        "duration_s": 300.0,
        "interval_s": 15.0,
        "warmup_s": 60.0,
        "min_passing_windows": 3,
        "inconclusive_timeout_s": 300.0,
    }
    assert workflow["guardrails"]["min_samples"] == 100
    assert workflow["guardrails"]["max_itl_p99_increase"] == 0.15
    assert workflow["guardrails"]["consecutive_failures"] == 2
    assert workflow["guardrails"]["max_goodput_decrease"] == 0.02
    assert workflow["judge"] == {"alpha": 0.05, "min_canary_requests": 1000, "max_stage_extension_s": None}
    assert workflow["created_by"] == "anonymous"
    assert workflow["description"] == "fewer seqs"
    assert workflow["windows"] == []
    fetched = client.get(f"{WORKFLOWS}/{workflow['workflow_id']}")
    assert fetched.status_code == 200
    assert fetched.json() == workflow


def test_request_values_override_the_settings_defaults(client_factory: ClientFactory) -> None:
    client = client_factory(
        workflow_tick_s=60.0, workflow_min_samples=7, workflow_max_error_rate=0.1, workflow_actuator_url=HOOK
    )
    ids = register(client)
    response = client.post(
        WORKFLOWS,
        json={
            "instance_ids": ids,
            "changes": {"--max-num-seqs": 64},
            "stages": [25, 100],
            "monitor": {"duration_s": 0.5, "interval_s": 0.1, "warmup_s": 0},
            "guardrails": {"max_ttft_p99_increase": 0.5, "on_canary_scrape_error": "inconclusive"},
        },
    )
    assert response.status_code == 201, response.text
    workflow = response.json()
    # PERF_AGENT_WORKFLOW_ACTUATOR_URL is a secret setting: never shown, not even to the creator
    assert workflow["actuator"] == {"type": "webhook", "url": "REDACTED"}
    assert HOOK not in response.text
    assert HOOK not in client.get(f"{WORKFLOWS}/{workflow['workflow_id']}").text
    assert HOOK not in client.get(WORKFLOWS).text
    assert HOOK not in client.get(f"{WORKFLOWS}/{workflow['workflow_id']}/events").text
    named = client.post(
        WORKFLOWS,
        json={
            "instance_ids": register(client, prefix="named-"),
            "changes": {"--max-num-seqs": 64},
            "actuator": {"url": HOOK},
        },
    )
    assert named.json()["actuator"] == {"type": "webhook", "url": HOOK}  # a URL the caller sent is theirs to see
    assert workflow["stages"] == [25, 100]
    assert workflow["monitor"]["duration_s"] == 0.5
    assert workflow["monitor"]["inconclusive_timeout_s"] == 0.5  # follows the stage's own duration
    guardrails = workflow["guardrails"]
    assert (guardrails["min_samples"], guardrails["max_error_rate"]) == (7, 0.1)
    assert guardrails["max_ttft_p99_increase"] == 0.5
    assert guardrails["on_canary_scrape_error"] == "inconclusive"
    assert workflow["judge"]["min_canary_requests"] == 1000  # a settings default is no request's floor


@pytest.mark.parametrize(
    ("extra", "judge"),
    [
        # A body written for the per-window gate: its min_samples becomes the stage's pooled floor.
        (
            {"guardrails": {"min_samples": 250}},
            {"alpha": 0.05, "min_canary_requests": 250, "max_stage_extension_s": None},
        ),
        (
            {"guardrails": {"min_samples": 250}, "judge": {"min_canary_requests": 4000}},
            {"alpha": 0.05, "min_canary_requests": 4000, "max_stage_extension_s": None},
        ),
        (
            {"judge": {"alpha": 0.01, "max_stage_extension_s": 120}},
            {"alpha": 0.01, "min_canary_requests": 1000, "max_stage_extension_s": 120.0},
        ),
    ],
)
def test_the_judge_block_and_the_min_samples_floor(
    client: TestClient[Litestar], extra: dict[str, Any], judge: dict[str, Any]
) -> None:
    ids = register(client, 2)
    response = client.post(WORKFLOWS, json=body(ids, **extra))
    assert response.status_code == 201, response.text
    assert response.json()["judge"] == judge


def test_approval_required_starts_pending_with_its_deadline(client: TestClient[Litestar]) -> None:
    ids = register(client)
    response = client.post(
        WORKFLOWS, json=body(ids, approval={"required": True, "stage_gates": [2, 1], "timeout_s": 600})
    )
    assert response.status_code == 201
    workflow = response.json()
    assert workflow["status"] == "pending_approval"
    assert workflow["approval"] == {"required": True, "stage_gates": [1, 2], "timeout_s": 600.0}
    assert workflow["approval_deadline"] is not None
    assert workflow["allowed_actions"] == ["abort", "approve", "cancel", "reject"]


@pytest.mark.parametrize(
    ("patch", "fields"),
    [
        ({"stages": [50, 10, 100]}, ["body.stages"]),
        ({"stages": [10, 50]}, ["body.stages"]),
        ({"stages": [0, 100]}, ["body.stages"]),
        ({"approval": {"stage_gates": [0]}}, ["body.approval.stage_gates"]),
        ({"approval": {"stage_gates": [3]}}, ["body.approval.stage_gates"]),
        ({"plan_id": "p-1", "recommendation_ids": ["r-1"]}, ["body.plan_id"]),
        ({"changes": {}}, ["body.changes"]),
        ({"bogus": 1}, ["body.bogus"]),
        ({"monitor": {"duration_s": "300"}}, ["body.monitor.duration_s"]),
        ({"monitor": {"interval_s": 0}}, ["body.monitor.interval_s"]),
        ({"guardrails": {"max_error_rate": 2}}, ["body.guardrails.max_error_rate"]),
        ({"guardrails": {"on_canary_scrape_error": "ignore"}}, ["body.guardrails.on_canary_scrape_error"]),
        ({"actuator": {"type": "ssh"}}, ["body.actuator.type"]),
        ({"guardrails": {"max_goodput_decrease": 1.5}}, ["body.guardrails.max_goodput_decrease"]),
        ({"judge": {"alpha": 0}}, ["body.judge.alpha"]),
        ({"judge": {"alpha": 0.9}}, ["body.judge.alpha"]),
        ({"judge": {"min_canary_requests": 0}}, ["body.judge.min_canary_requests"]),
        ({"judge": {"max_stage_extension_s": -1}}, ["body.judge.max_stage_extension_s"]),
        ({"judge": {"alpha": 0.05, "threshold": 20}}, ["body.judge.threshold"]),
        ({"instance_ids": []}, ["body.instance_ids"]),
    ],
)
def test_invalid_bodies_are_422_naming_the_fields(
    client: TestClient[Litestar], patch: dict[str, Any], fields: list[str]
) -> None:
    ids = register(client, 2)
    response = client.post(WORKFLOWS, json={**body(ids), **patch})
    envelope = assert_envelope(response, 422, "validation_error")
    assert envelope["invalid_fields"] == fields


def test_plan_form_without_changes_needs_both_halves(client: TestClient[Litestar]) -> None:
    ids = register(client, 1)
    response = client.post(
        WORKFLOWS, json={"instance_ids": ids, "recommendation_ids": ["r-1"], "actuator": {"url": HOOK}}
    )
    assert assert_envelope(response, 422, "validation_error")["invalid_fields"] == ["body.plan_id"]
    response = client.post(WORKFLOWS, json={"instance_ids": ids, "plan_id": "nope", "recommendation_ids": ["r-1"]})
    envelope = assert_envelope(response, 422, "validation_error")
    assert envelope["invalid_fields"] == ["body.plan_id"]
    assert envelope["details"][0]["type"] == "not_found"


def test_unknown_duplicate_and_mixed_engine_instances_are_422(client: TestClient[Litestar]) -> None:
    vllm = register(client, 2)
    tgi = register(client, 1, engine="tgi", prefix="t")
    response = client.post(WORKFLOWS, json=body([vllm[0], "ghost", vllm[0], tgi[0], vllm[1]]))
    envelope = assert_envelope(response, 422, "validation_error")
    assert envelope["invalid_fields"] == ["body.instance_ids.1", "body.instance_ids.2", "body.instance_ids.3"]
    messages = [detail["message"] for detail in envelope["details"]]
    assert messages == [
        "ghost is not a registered instance",
        "v0 is listed twice",
        "t0 runs tgi; a workflow changes one engine (vllm)",
    ]


def test_no_actuator_anywhere_is_422(client: TestClient[Litestar]) -> None:
    ids = register(client, 1)
    response = client.post(WORKFLOWS, json={"instance_ids": ids, "changes": {"a": 1}})
    assert assert_envelope(response, 422, "validation_error")["invalid_fields"] == ["body.actuator"]
    response = client.post(WORKFLOWS, json={"instance_ids": ids, "changes": {"a": 1}, "actuator": {"type": "webhook"}})
    assert assert_envelope(response, 422, "validation_error")["invalid_fields"] == ["body.actuator.url"]


def test_actuator_url_outside_the_webhook_allowlist_is_403(client: TestClient[Litestar]) -> None:
    ids = register(client, 1)
    response = client.post(WORKFLOWS, json={**body(ids), "actuator": {"url": "http://169.254.169.254/latest"}})
    assert_envelope(response, 403, "target_not_allowed")
    response = client.post(WORKFLOWS, json={**body(ids), "actuator": {"url": "http://10.1.2.3/hook"}})
    assert_envelope(response, 403, "target_not_allowed")
    assert client.get(WORKFLOWS).json() == []


def test_an_instance_in_an_active_workflow_is_409_until_it_ends(client: TestClient[Litestar]) -> None:
    ids = register(client, 3)
    first = client.post(WORKFLOWS, json=body(ids[:2])).json()
    response = client.post(WORKFLOWS, json=body([ids[2], ids[1]]))
    envelope = assert_envelope(response, 409, "workflow_conflict")
    assert envelope["context"] == {"workflow_id": first["workflow_id"], "instance_id": ids[1]}
    assert client.post(WORKFLOWS, json=body([ids[2]])).status_code == 201  # a free instance is fine
    deleted = client.delete(f"/api/v1/instances/{ids[0]}")
    assert assert_envelope(deleted, 409, "workflow_conflict")["context"]["workflow_id"] == first["workflow_id"]
    cancelled = client.post(f"{WORKFLOWS}/{first['workflow_id']}/cancel", json={"reason": "wrong fleet"})
    assert cancelled.json()["status"] == "cancelled"
    assert client.post(WORKFLOWS, json=body([ids[1]])).status_code == 201
    assert client.delete(f"/api/v1/instances/{ids[0]}").status_code == 204


def test_idempotency_key_replays_the_first_workflow(client: TestClient[Litestar]) -> None:
    ids = register(client, 2)
    first = client.post(WORKFLOWS, json=body(ids), headers={"Idempotency-Key": "deploy-42"})
    again = client.post(WORKFLOWS, json=body(ids), headers={"Idempotency-Key": "deploy-42"})
    assert first.status_code == again.status_code == 201
    assert again.json()["workflow_id"] == first.json()["workflow_id"]
    assert len(client.get(WORKFLOWS).json()) == 1
    changed = client.post(WORKFLOWS, json=body(ids, stages=[50, 100]), headers={"Idempotency-Key": "deploy-42"})
    envelope = assert_envelope(changed, 409, "idempotency_key_reused")
    assert envelope["context"] == {"workflow_id": first.json()["workflow_id"]}
    other_key = client.post(WORKFLOWS, json=body(ids), headers={"Idempotency-Key": "deploy-43"})
    assert_envelope(other_key, 409, "workflow_conflict")  # a new key is a new request


def test_listing_pages_newest_first_with_a_cursor(client: TestClient[Litestar]) -> None:
    ids = register(client, 5)
    created = [client.post(WORKFLOWS, json=body([instance_id])).json()["workflow_id"] for instance_id in ids]
    client.post(f"{WORKFLOWS}/{created[1]}/cancel")
    first = client.get(WORKFLOWS, params={"limit": 2})
    assert [w["workflow_id"] for w in first.json()] == [created[4], created[3]]
    assert first.json()[0]["windows"] is None
    second = client.get(WORKFLOWS, params={"limit": 2, "cursor": first.headers["x-next-cursor"]})
    assert [w["workflow_id"] for w in second.json()] == [created[2], created[1]]
    last = client.get(WORKFLOWS, params={"limit": 2, "cursor": second.headers["x-next-cursor"]})
    assert [w["workflow_id"] for w in last.json()] == [created[0]]
    assert "x-next-cursor" not in last.headers
    cancelled = client.get(WORKFLOWS, params={"status": "cancelled"}).json()
    assert [w["workflow_id"] for w in cancelled] == [created[1]]
    by_instance = client.get(WORKFLOWS, params={"instance_id": ids[3]}).json()
    assert [w["workflow_id"] for w in by_instance] == [created[3]]
    assert client.get(WORKFLOWS, params={"instance_id": "nobody"}).json() == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "running"}, "query.status"),
        ({"limit": 0}, "query.limit"),
        ({"cursor": "not-a-cursor"}, "query.cursor"),
        ({"cursor": "d2Y6eA"}, "query.cursor"),  # "wf:x"
    ],
)
def test_invalid_list_parameters_are_422(client: TestClient[Litestar], params: dict[str, Any], field: str) -> None:
    envelope = assert_envelope(client.get(WORKFLOWS, params=params), 422, "validation_error")
    assert envelope["invalid_fields"] == [field]


def test_unknown_workflow_is_404_everywhere(client: TestClient[Litestar]) -> None:
    for response in (
        client.get(f"{WORKFLOWS}/nope"),
        client.get(f"{WORKFLOWS}/nope/events"),
        client.post(f"{WORKFLOWS}/nope/approve", json={"approver": "a"}),
        client.post(f"{WORKFLOWS}/nope/abort"),
    ):
        assert assert_envelope(response, 404, "not_found")["context"] == {"workflow_id": "nope"}


def test_events_record_actor_time_comment_and_reason(client: TestClient[Litestar]) -> None:
    ids = register(client, 2)
    workflow = client.post(WORKFLOWS, json=body(ids, approval={"required": True})).json()
    path = f"{WORKFLOWS}/{workflow['workflow_id']}"
    approved = client.post(f"{path}/approve", json={"approver": "alice", "comment": "looks safe"})
    assert approved.status_code == 200
    assert approved.json()["approvals"][0]["actor"] == "alice"
    assert approved.json()["approvals"][0]["gate"] == 0
    assert client.post(f"{path}/abort", json={"reason": "change window closed"}).json()["status"] == "cancelled"
    events = client.get(f"{path}/events").json()
    assert [(e["seq"], e["type"], e["action"], e["from_status"], e["to_status"], e["actor"]) for e in events] == [
        (1, "created", "create", None, "pending_approval", "anonymous"),
        (2, "action", "approve", "pending_approval", "capturing_baseline", "alice"),
        (3, "action", "abort", "capturing_baseline", "cancelled", "anonymous"),
    ]
    assert events[1]["comment"] == "looks safe"
    assert events[1]["details"] == {"gate": 0}
    assert events[2]["reason"] == "change window closed"
    assert all(e["at"].endswith("Z") for e in events)
    final = client.get(path).json()
    assert final["status_reason"] == "abort by anonymous: change window closed"
    assert final["finished_at"] is not None


def test_same_actor_approving_the_same_gate_again_is_200_without_a_second_event(client: TestClient[Litestar]) -> None:
    ids = register(client, 2)
    workflow = client.post(WORKFLOWS, json=body(ids, approval={"required": True})).json()
    path = f"{WORKFLOWS}/{workflow['workflow_id']}"
    first = client.post(f"{path}/approve", json={"approver": "alice"})
    again = client.post(f"{path}/approve", json={"approver": "alice"})
    assert first.status_code == again.status_code == 200
    assert again.json()["status"] == "capturing_baseline"
    assert again.json()["version"] == first.json()["version"]
    other = client.post(f"{path}/approve", json={"approver": "bob"})
    envelope = assert_envelope(other, 409, "invalid_transition")
    assert envelope["context"]["allowed_actions"] == ["abort", "cancel"]
    assert envelope["context"]["status"] == "capturing_baseline"
    assert [e["action"] for e in client.get(f"{path}/events").json()] == ["create", "approve"]


def test_if_match_must_name_the_current_version(client: TestClient[Litestar]) -> None:
    ids = register(client, 1)
    workflow = client.post(WORKFLOWS, json=body(ids, approval={"required": True})).json()
    path = f"{WORKFLOWS}/{workflow['workflow_id']}"
    stale = client.post(f"{path}/cancel", headers={"If-Match": '"7"'})
    envelope = assert_envelope(stale, 409, "version_conflict")
    assert envelope["context"]["version"] == 1
    malformed = client.post(f"{path}/cancel", headers={"If-Match": "yesterday"})
    assert assert_envelope(malformed, 422, "validation_error")["invalid_fields"] == ["header.If-Match"]
    current = client.post(f"{path}/cancel", headers={"If-Match": '"1"'})
    assert current.status_code == 200
    assert current.headers["etag"] == '"2"'


def test_action_bodies_are_strict(client: TestClient[Litestar]) -> None:
    ids = register(client, 1)
    workflow = client.post(WORKFLOWS, json=body(ids, approval={"required": True})).json()
    path = f"{WORKFLOWS}/{workflow['workflow_id']}"
    wrong = client.post(f"{path}/approve", json={"approver": "a", "reason": "x"})
    assert assert_envelope(wrong, 422, "validation_error")["invalid_fields"] == ["body.reason"]
    wrong = client.post(f"{path}/cancel", json={"approver": "a"})
    assert assert_envelope(wrong, 422, "validation_error")["invalid_fields"] == ["body.approver"]
    assert client.get(path).json()["status"] == "pending_approval"


def test_with_auth_the_actor_is_the_key_name_and_roles_are_enforced(client_factory: ClientFactory) -> None:
    client = client_factory(workflow_tick_s=60.0, api_keys=KEYS)
    ops = {"X-API-Key": OPERATOR_KEY}
    ids = register(client, 2, **ops)
    assert_envelope(client.post(WORKFLOWS, json=body(ids), headers={"X-API-Key": VIEWER_KEY}), 403, "forbidden")
    workflow = client.post(WORKFLOWS, json=body(ids, approval={"required": True}), headers=ops).json()
    assert workflow["created_by"] == "ops"
    path = f"{WORKFLOWS}/{workflow['workflow_id']}"
    assert_envelope(client.post(f"{path}/approve", json={"approver": "ops"}, headers=ops), 403, "forbidden")
    assert client.get(path, headers={"X-API-Key": VIEWER_KEY}).status_code == 200
    approved = client.post(
        f"{path}/approve", json={"approver": "mallory"}, headers={"Authorization": f"Bearer {APPROVER_KEY}"}
    )
    assert approved.status_code == 200
    assert approved.json()["approvals"][0]["actor"] == "lead"
    events = client.get(f"{path}/events", headers=ops).json()
    assert [e["actor"] for e in events] == ["ops", "lead"]


def recommendation(
    rec_id: str,
    changes: dict[str, Any],
    env: dict[str, str],
    executable: bool,
    impact: dict[str, dict[str, float]] | None = None,
) -> dict[str, Any]:
    """A stored plan's recommendation as `POST /optimize` writes it."""
    return {
        "id": rec_id,
        "type": "batching",
        "title": rec_id,
        "changes": changes,
        "env": env,
        "rationale": "test",
        "estimated_impact": impact or {},
        "addresses": [],
        "assumptions": [],
        "risk": {"quality": "low", "stability": "low"},
        "requires_restart": True,
        "executable": executable,
    }


def store_plan(client: TestClient[Litestar], plan_id: str, engine: str, instance_id: str) -> None:
    """A plan as `POST /optimize` stores it, with one executable and one advisory recommendation."""
    plan = msgspec.convert(
        {
            "plan_id": plan_id,
            "instance_id": instance_id,
            "engine": engine,
            "created_at": "2026-01-01T00:00:00Z",
            "objective": "balanced",
            "constraints": {},
            "current_config": {"engine": engine, "engine_version": None, "settings": {}},
            "recommendations": [
                recommendation("r-batch", {"--max-num-seqs": 512}, {}, True),
                recommendation("r-prefix", {}, {"PREFIX_CACHING": "1"}, True),
                recommendation("r-awq", {"--quantization": "awq"}, {}, False),
            ],
            "findings": [],
            "summary": "test plan",
            "notes": [],
        },
        OptimizationPlan,
    )
    client.blocking_portal.call(SqlPlanRepository(client.app.state.context.database).add, plan)


def test_a_stored_plan_s_executable_recommendations_can_be_rolled_out(client: TestClient[Litestar]) -> None:
    ids = register(client, 2)
    store_plan(client, "plan-1", "vllm", ids[0])
    response = client.post(
        WORKFLOWS,
        json={
            "instance_ids": ids,
            "plan_id": "plan-1",
            "recommendation_ids": ["r-batch", "r-prefix"],
            "actuator": {"url": HOOK},
        },
    )
    assert response.status_code == 201, response.text
    workflow = response.json()
    assert (workflow["plan_id"], workflow["recommendation_ids"]) == ("plan-1", ["r-batch", "r-prefix"])
    assert workflow["changes"] == {"--max-num-seqs": 512}
    assert workflow["env"] == {"PREFIX_CACHING": "1"}


def test_non_executable_recommendations_and_foreign_engines_are_refused(client: TestClient[Litestar]) -> None:
    ids = register(client, 1)
    store_plan(client, "plan-1", "vllm", ids[0])
    store_plan(client, "plan-tgi", "tgi", ids[0])
    advisory = client.post(
        WORKFLOWS,
        json={"instance_ids": ids, "plan_id": "plan-1", "recommendation_ids": ["r-awq"], "actuator": {"url": HOOK}},
    )
    envelope = assert_envelope(advisory, 422, "recommendation_not_executable")
    assert envelope["context"] == {"plan_id": "plan-1", "recommendation_ids": ["r-awq"]}
    foreign = client.post(
        WORKFLOWS,
        json={"instance_ids": ids, "plan_id": "plan-tgi", "recommendation_ids": ["r-batch"], "actuator": {"url": HOOK}},
    )
    assert assert_envelope(foreign, 422, "validation_error")["invalid_fields"] == ["body.plan_id"]
    assert client.get(WORKFLOWS).json() == []
