"""Actuator payloads and signatures byte for byte, simulator bodies, event ids, cursors and plan resolution."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import msgspec
import pytest

from performance_agent.errors import RequestValidationError, UnprocessableError
from performance_agent.outbound.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_headers, verify_signature
from performance_agent.workflows.actuators import simulator_bodies
from performance_agent.workflows.payloads import build_payload, decode_payload
from performance_agent.workflows.plans import PlanRecommendation, PlanView, resolve_plan_changes
from performance_agent.workflows.policy import Guardrails, MonitorPolicy
from performance_agent.workflows.schemas import ActuatorSpec, ApprovalSpec, WorkflowCreate
from performance_agent.workflows.service import decode_cursor, encode_cursor
from performance_agent.workflows.state import WorkflowDoc, apply_event_id, outbox_event_id


def doc() -> WorkflowDoc:
    return WorkflowDoc(
        workflow_id="wf-1",
        engine="vllm",
        instance_ids=["a", "b", "c"],
        changes={"--max-num-seqs": 128, "--enable-prefix-caching": False},
        env={"VLLM_ATTENTION_BACKEND": "FLASHINFER"},
        previous={"a": {"max_num_seqs": 256}, "b": None, "c": {"--max-num-seqs": 64, "other": 1}},
        stages=[10, 50, 100],
        approval=ApprovalSpec(),
        monitor=MonitorPolicy(),
        guardrails=Guardrails(),
        actuator=ActuatorSpec(url="http://127.0.0.1:9/hook"),
        created_by="ops",
        created_at=1.0,
        updated_at=1.0,
        status="applying",
        status_since=1.0,
    )


def test_the_payload_has_exactly_the_documented_fields() -> None:
    body = build_payload(doc(), event_id="e-1", action="apply", stage_index=1, instance_ids=["b", "c"])
    assert json.loads(body) == {
        "workflow_id": "wf-1",
        "event_id": "e-1",
        "action": "apply",
        "engine": "vllm",
        "stage_index": 1,
        "percent": 50,
        "instance_ids": ["b", "c"],
        "changes": {"--max-num-seqs": 128, "--enable-prefix-caching": False},
        "env": {"VLLM_ATTENTION_BACKEND": "FLASHINFER"},
        "previous": {"b": None, "c": {"--max-num-seqs": 64, "other": 1}},
    }
    assert decode_payload(body).percent == 50


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"event_id":"e-1"}'
    headers = signature_headers("top-secret", 1_700_000_000, body)
    expected = hmac.new(b"top-secret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert headers == {TIMESTAMP_HEADER: "1700000000", SIGNATURE_HEADER: f"sha256={expected}"}
    assert verify_signature("top-secret", "1700000000", headers[SIGNATURE_HEADER], body)
    assert not verify_signature("top-secret", "1700000001", headers[SIGNATURE_HEADER], body)
    assert not verify_signature("top-secret", "1700000000", headers[SIGNATURE_HEADER], body + b" ")
    assert not verify_signature("other", "1700000000", headers[SIGNATURE_HEADER], body)


@pytest.mark.parametrize("secret", [None, ""])
def test_without_a_secret_no_signature_headers_are_sent(secret: str | None) -> None:
    assert signature_headers(secret, 1, b"{}") == {}


def test_event_ids_are_stable_and_distinct_per_action_and_stage() -> None:
    assert outbox_event_id("wf-1", "apply", 0) == outbox_event_id("wf-1", "apply", 0) == apply_event_id("wf-1", 0)
    ids = {outbox_event_id(w, a, s) for w in ("wf-1", "wf-2") for a in ("apply", "rollback") for s in range(3)}
    assert len(ids) == 12


def test_simulator_bodies_apply_the_change_and_roll_back_to_declared_flags() -> None:
    workflow = doc()
    apply = decode_payload(
        build_payload(workflow, event_id="e", action="apply", stage_index=2, instance_ids=["a", "b"])
    )
    assert {k: json.loads(v) for k, v in simulator_bodies(apply).items()} == {
        instance: {
            "changes": {"--max-num-seqs": 128, "--enable-prefix-caching": False},
            "env": {"VLLM_ATTENTION_BACKEND": "FLASHINFER"},
        }
        for instance in ("a", "b")
    }
    rollback = decode_payload(
        build_payload(workflow, event_id="r", action="rollback", stage_index=2, instance_ids=["a", "b", "c"])
    )
    bodies = {k: json.loads(v) for k, v in simulator_bodies(rollback).items()}
    assert bodies["a"] == {  # declared as max_num_seqs: matched whatever the spelling
        "changes": {"--max-num-seqs": 256, "--enable-prefix-caching": None},
        "env": {"VLLM_ATTENTION_BACKEND": None},
    }
    assert bodies["b"]["changes"] == {"--max-num-seqs": None, "--enable-prefix-caching": None}
    assert bodies["c"]["changes"] == {"--max-num-seqs": 64, "--enable-prefix-caching": None}


def test_cursors_round_trip_and_foreign_ones_are_422() -> None:
    assert decode_cursor(encode_cursor(42)) == 42
    for bad in ("", "%%%", encode_cursor(1)[:-1] + "!", "eDox"):
        with pytest.raises(RequestValidationError) as refused:
            decode_cursor(bad)
        assert refused.value.details[0].field == "query.cursor"


PLAN = PlanView(
    plan_id="p-1",
    engine="vllm",
    recommendations=[
        PlanRecommendation(id="r-kv", executable=True, changes={"--gpu-memory-utilization": 0.95}, env={}),
        PlanRecommendation(id="r-batch", executable=True, changes={"--max-num-seqs": 512}, env={"X": "1"}),
        PlanRecommendation(id="r-awq", executable=False, changes={"--quantization": "awq"}, env={}),
        PlanRecommendation(id="r-clash", executable=True, changes={"--max-num-seqs": 64}, env={}),
    ],
)


async def lookup(plan_id: str) -> PlanView | None:
    return PLAN if plan_id == PLAN.plan_id else None


def resolve(plan_id: str, *recommendation_ids: str) -> tuple[object, ...]:
    body = msgspec.convert(
        {"instance_ids": ["a"], "plan_id": plan_id, "recommendation_ids": list(recommendation_ids)}, WorkflowCreate
    )
    return asyncio.run(resolve_plan_changes(lookup, body))


def test_a_plan_s_executable_recommendations_are_merged() -> None:
    assert resolve("p-1", "r-kv", "r-batch") == (
        {"--gpu-memory-utilization": 0.95, "--max-num-seqs": 512},
        {"X": "1"},
        "vllm",
    )


def test_non_executable_recommendations_are_refused() -> None:
    with pytest.raises(UnprocessableError) as refused:
        resolve("p-1", "r-kv", "r-awq")
    assert refused.value.error == "recommendation_not_executable"
    assert refused.value.status_code == 422
    assert refused.value.context == {"plan_id": "p-1", "recommendation_ids": ["r-awq"]}
    assert refused.value.details[0].field == "body.recommendation_ids.1"


def test_unknown_plans_recommendations_and_contradictions_are_422() -> None:
    with pytest.raises(RequestValidationError) as unknown_plan:
        resolve("p-9", "r-kv")
    assert unknown_plan.value.details[0].field == "body.plan_id"
    with pytest.raises(RequestValidationError) as unknown:
        resolve("p-1", "r-kv", "r-nope")
    assert [d.field for d in unknown.value.details] == ["body.recommendation_ids.1"]
    with pytest.raises(RequestValidationError) as clash:
        resolve("p-1", "r-batch", "r-clash")
    assert "contradicts" in clash.value.details[0].message
