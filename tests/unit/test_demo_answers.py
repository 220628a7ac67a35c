"""The demo's reading of answers, its HTTP wrapper and its output, including every way a step can fail.

The full story runs in tests/e2e/test_demo.py; here the agent is replaced by an httpx
MockTransport so that wrong answers (a missing finding, a rollout that does not roll back, an
error envelope, no answer at all) can be produced on purpose.
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any, cast

import httpx
import pytest

from performance_agent.demo.answers import (
    StepFailed,
    choose_recommendation,
    evidence_text,
    failed_windows,
    finding_of,
    progress_text,
    recommendation_line,
    require_status,
    snapshot_line,
    window_lines,
)
from performance_agent.demo.client import APPROVER, OPERATOR, DemoClient, describe_error
from performance_agent.demo.console import ERASE_LINE, Console, short_body
from performance_agent.demo.story import Story

if TYPE_CHECKING:
    from collections.abc import Callable

    from performance_agent.simulator import SimulatedFleet

KEYS = {OPERATOR: "operator-key-0123456789", APPROVER: "approver-key-0123456789"}
FP8 = {
    "id": "kv_cache:fp8-kv-cache",
    "title": "Store the KV cache in FP8",
    "changes": {"--kv-cache-dtype": "fp8"},
    "env": {},
    "executable": True,
    "addresses": ["kv_cache_pressure"],
}
AWQ = {**FP8, "id": "quantization:awq", "title": "Use an AWQ checkpoint", "executable": False}
QUEUE_ONLY = {**FP8, "id": "batching:raise-max-running", "addresses": ["queueing"]}


def kv_finding(severity: str = "medium") -> dict[str, Any]:
    return {
        "type": "kv_cache_pressure",
        "severity": severity,
        "evidence": {"load.kv_cache_usage": {"observed": 0.9612, "threshold": 0.9, "comparison": ">="}},
    }


# ------------------------------------------------------------------------------ answers
def test_the_first_executable_recommendation_for_the_bottleneck_is_chosen() -> None:
    plan = {"recommendations": [QUEUE_ONLY, AWQ, FP8]}
    assert choose_recommendation(plan, "kv_cache_pressure") is FP8


def test_a_plan_without_an_executable_fix_stops_the_story_naming_what_was_offered() -> None:
    with pytest.raises(StepFailed, match=r"no executable recommendation addressing kv_cache_pressure") as failed:
        choose_recommendation({"recommendations": [AWQ, QUEUE_ONLY]}, "kv_cache_pressure")
    assert "quantization:awq, batching:raise-max-running" in str(failed.value)
    with pytest.raises(StepFailed, match=r"\(offered: none\)"):
        choose_recommendation({"recommendations": []}, "kv_cache_pressure")


def test_only_findings_above_low_severity_count() -> None:
    report = {"bottlenecks": [kv_finding("low"), {"type": "queueing", "severity": "high", "evidence": {}}]}
    assert finding_of(report, "kv_cache_pressure") is None
    assert finding_of(report, "queueing") == report["bottlenecks"][1]
    assert finding_of({"bottlenecks": [kv_finding("critical")]}, "kv_cache_pressure") is not None


def test_evidence_reads_as_observed_comparison_threshold() -> None:
    assert evidence_text(kv_finding()) == "load.kv_cache_usage 0.961 >= 0.9"


def test_a_status_other_than_the_expected_one_fails_with_the_workflows_reason() -> None:
    require_status({"status": "completed"}, "completed")
    with pytest.raises(StepFailed) as failed:
        require_status(
            {"workflow_id": "w-1", "status": "paused", "status_reason": "inconclusive for 10 s"}, "completed"
        )
    assert str(failed.value) == "workflow w-1 is 'paused', expected 'completed' (reason: inconclusive for 10 s)"
    with pytest.raises(StepFailed, match=r"reason: none given"):
        require_status({"workflow_id": "w-1", "status": "failed", "status_reason": None}, "rolled_back")


def test_snapshot_line_shows_unknown_figures_as_unknown() -> None:
    snapshot = {
        "engine": "tgi",
        "engine_version": None,
        "load": {"requests_running": 9.0, "requests_waiting": 0.0, "kv_cache_usage": None},
        "latency": {"ttft_s": {"p99": 0.0937}, "itl_s": {}},
    }
    assert snapshot_line(snapshot) == "tgi: 9 running, 0 waiting, KV cache n/a, TTFT p99 0.0937 s, ITL p99 n/a"
    assert snapshot_line({"engine": "vllm", "engine_version": "0.11.0", "load": {"kv_cache_usage": 0.48}}).startswith(
        "vllm 0.11.0: n/a running, n/a waiting, KV cache 48%"
    )


def test_recommendation_line_names_flags_env_and_whether_a_rollout_can_apply_it() -> None:
    assert recommendation_line(FP8) == (
        "Store the KV cache in FP8  [--kv-cache-dtype fp8; executable; addresses kv_cache_pressure]"
    )
    prefix = {**AWQ, "changes": {}, "env": {"PREFIX_CACHING": "1"}}
    assert "[PREFIX_CACHING=1; advice only;" in recommendation_line(prefix)
    assert "[no flag change; advice only;" in recommendation_line({**AWQ, "changes": {}})


def test_progress_counts_windows_by_verdict_and_fills_the_bar_by_changed_servers() -> None:
    workflow = {
        "stages": [10, 50, 100],
        "stage_index": 1,
        "percent": 50,
        "changed_count": 2,
        "instance_ids": ["a", "b", "c", "d"],
        "status": "monitoring",
        "windows": [{"verdict": "pass"}, {"verdict": "pass"}, {"verdict": "inconclusive"}, {"verdict": "fail"}],
    }
    assert progress_text(workflow, 4.56) == (
        "[#####-----] stage 2/3 (50%, 2 of 4 changed) monitoring; windows: 2 pass, 1 fail, 1 inconclusive; 4.6 s"
    )
    assert failed_windows(workflow) == [{"verdict": "fail"}]


def test_a_window_shows_each_crossed_metric_with_its_strongest_table() -> None:
    window = {
        "seq": 3,
        "stage_index": 0,
        "verdict": "fail",
        "reference": "control",
        "canary": {"requests": 73.0},
        "control": {"requests": 557.0},
        "reasons": ["throughput beyond max_throughput_decrease 0.5: evidence 3.2e+04 >= threshold 229"],
        "evidence": {
            "metrics": [
                {"metric": "throughput", "guardrail": "max_throughput_decrease", "tolerance": 0.5,
                 "evidence": 32000.0, "threshold": 228.6, "exceeded": True,
                 "edges": [{"edge": None, "canary_above": 73.0, "canary_total": 1.0, "reference_above": 557.0,
                            "reference_total": 3.0, "margin": 0.5, "tolerated_share": None, "evidence": 32000.0}]},
                {"metric": "ttft_s", "guardrail": "max_ttft_p99_increase", "tolerance": 1.0,
                 "evidence": 250.0, "threshold": 228.6, "exceeded": True,
                 "edges": [{"edge": 0.5, "canary_above": 40.0, "canary_total": 73.0, "reference_above": 30.0,
                            "reference_total": 557.0, "margin": 2.4, "evidence": 9.0},
                           {"edge": 1.0, "canary_above": 20.0, "canary_total": 73.0, "reference_above": 6.0,
                            "reference_total": 557.0, "margin": 3.1, "evidence": 480.0}]},
                {"metric": "error_rate", "guardrail": "max_error_rate", "tolerance": 0.02, "evidence": 0.001,
                 "threshold": 228.6, "exceeded": False,
                 "edges": [{"edge": None, "canary_above": 0.0, "canary_total": 73.0, "reference_above": None,
                            "margin": None, "tolerated_share": 0.02, "evidence": 0.001}]},
                {"metric": "e2e_s_limit", "guardrail": "max_e2e_p99_s", "tolerance": 20.0, "evidence": 300.0,
                 "threshold": 228.6, "exceeded": True,
                 "edges": [{"edge": 20.0, "canary_above": 9.0, "canary_total": 73.0, "reference_above": None,
                            "margin": None, "tolerated_share": 0.01, "evidence": 300.0}]},
            ]
        },
    }  # fmt: skip
    assert window_lines(window) == [
        "window 3 (stage 1): fail vs control; canary served 73 requests, control 557",
        "  reason: throughput beyond max_throughput_decrease 0.5: evidence 3.2e+04 >= threshold 229",
        "  throughput (max_throughput_decrease 0.5): evidence 3.2e+04 of threshold 229 CROSSED",
        "    canary 73/1 vs reference 557/3 (margin 0.5), evidence 3.2e+04",
        "  ttft_s (max_ttft_p99_increase 1): evidence 250 of threshold 229 CROSSED",
        "    above 1 s: canary 20/73 vs reference 6/557 (margin 3.1), evidence 480",
        "  e2e_s_limit (max_e2e_p99_s 20): evidence 300 of threshold 229 CROSSED",
        "    above 20 s: canary 9/73 (allowed 1%), evidence 300",
    ]
    baseline = {**window, "reference": "baseline", "control": None, "reasons": [], "evidence": None}
    assert window_lines(baseline) == ["window 3 (stage 1): fail vs baseline; canary served 73 requests"]


# ------------------------------------------------------------------------------- console
def test_short_body_is_one_line_of_json_cut_with_an_ellipsis() -> None:
    assert short_body(None) == ""
    assert short_body({"a": 1}) == '{"a": 1}'
    long = short_body({"instance_ids": [f"vllm-{i}" for i in range(40)]}, width=40)
    assert len(long) == 40
    assert long.endswith("...")


def test_without_a_tty_progress_prints_a_line_per_state_not_per_poll() -> None:
    stream = io.StringIO()
    console = Console(stream, live=False)
    console.progress("monitoring 0.1 s", key=("monitoring", 0))
    console.progress("monitoring 0.4 s", key=("monitoring", 0))
    console.progress("monitoring 0.7 s", key=("monitoring", 1))
    console.finish_progress()
    console.answer(200, "done")
    assert stream.getvalue() == "   .. monitoring 0.1 s\n   .. monitoring 0.7 s\n   <- 200 done\n"


def test_on_a_tty_progress_rewrites_one_line_and_ends_it_before_other_output() -> None:
    stream = io.StringIO()
    console = Console(stream, live=True)
    console.progress("stage 1")
    console.progress("stage 1")
    console.progress("stage 2")
    console.step("Next")
    assert stream.getvalue() == f"{ERASE_LINE}   .. stage 1{ERASE_LINE}   .. stage 2\n\n== 1. Next\n"


# -------------------------------------------------------------------------------- client
def client_for(handler: Callable[[httpx.Request], httpx.Response]) -> tuple[DemoClient, Console, io.StringIO]:
    stream = io.StringIO()
    console = Console(stream, live=False)
    return DemoClient("http://agent.test", console, KEYS, transport=httpx.MockTransport(handler)), console, stream


def test_a_call_prints_the_request_sends_the_roles_key_and_returns_the_json() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "capturing_baseline"})

    client, _, stream = client_for(answer)
    body = {"approver": "demo-lead"}
    assert client.call("POST", "/api/v1/workflows/w/approve", body, role=APPROVER) == {"status": "capturing_baseline"}
    assert client.call("GET", "/api/v1/workflows/w", show=False) == {"status": "capturing_baseline"}
    assert [r.headers["X-API-Key"] for r in seen] == [KEYS[APPROVER], KEYS[OPERATOR]]
    assert json.loads(seen[0].content) == body
    assert stream.getvalue() == '   -> POST /api/v1/workflows/w/approve [as approver] {"approver": "demo-lead"}\n'


def test_an_unexpected_status_fails_the_step_with_the_error_envelope() -> None:
    envelope = {
        "error": "validation_error",
        "message": "2 problems",
        "details": [{"field": "body.stages", "message": "must end at 100", "type": "value"},
                    {"field": None, "message": "whole body", "type": "x"}],
    }  # fmt: skip
    client, _, _ = client_for(lambda _request: httpx.Response(422, json=envelope))
    with pytest.raises(StepFailed) as failed:
        client.call("POST", "/api/v1/workflows", {}, expect=201)
    assert str(failed.value) == (
        "POST /api/v1/workflows answered 422, expected 201: validation_error: 2 problems "
        "(body.stages: must end at 100; -: whole body)"
    )


def test_describe_error_falls_back_to_the_body_when_there_is_no_envelope() -> None:
    assert describe_error(httpx.Response(502, text="<html>bad gateway</html>")) == "<html>bad gateway</html>"
    assert describe_error(httpx.Response(500, text="")) == "(empty body)"
    assert describe_error(httpx.Response(500, json=["odd"])) == "['odd']"
    assert describe_error(httpx.Response(404, json={"error": "not_found", "message": "no plan"})) == (
        "not_found: no plan"
    )


def test_no_answer_or_a_body_that_is_not_json_fails_the_step() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client, _, _ = client_for(refuse)
    with pytest.raises(StepFailed, match=r"GET /api/v1/instances: no answer from the agent \(ConnectError"):
        client.call("GET", "/api/v1/instances")
    client, _, _ = client_for(lambda _request: httpx.Response(200, text="not json"))
    with pytest.raises(StepFailed, match=r"answered 200 with a body that is not JSON"):
        client.call("GET", "/api/v1/instances")
    client, _, _ = client_for(lambda _request: httpx.Response(204))
    assert client.call("DELETE", "/api/v1/instances/x", expect=204) is None
    client.close()


# --------------------------------------------------------------------------------- story
def story_against(routes: dict[tuple[str, str], Any]) -> tuple[Story, io.StringIO]:
    """A Story whose agent answers `routes[(method, path)]`: `(status, body)`, or a function of the request."""

    def answer(request: httpx.Request) -> httpx.Response:
        found = routes[(request.method, request.url.path)]
        status, body = found(request) if callable(found) else found
        return httpx.Response(status, json=body)

    client, console, stream = client_for(answer)
    return Story(client, console, cast("SimulatedFleet", None), "http://hub.test"), stream


def report(instance_id: str, *findings: dict[str, Any]) -> dict[str, Any]:
    return {"instance_id": instance_id, "summary": "...", "bottlenecks": list(findings)}


def test_analysis_fails_the_story_when_kv_pressure_is_missing_from_the_chat_group() -> None:
    def analyze(request: httpx.Request) -> tuple[int, dict[str, Any]]:
        instance_id = json.loads(request.content)["instance_id"]
        pressured = instance_id in ("vllm-chat-0", "vllm-chat-1", "vllm-chat-2")  # vllm-chat-3 is not
        return 200, report(instance_id, *([kv_finding()] if pressured else []))

    story, _ = story_against({("POST", "/api/v1/analyze"): analyze})
    with pytest.raises(StepFailed) as failed:
        story.analyze()
    assert "expected KV-cache pressure on exactly the chat group" in str(failed.value)
    assert "found it on ['vllm-chat-0', 'vllm-chat-1', 'vllm-chat-2']" in str(failed.value)


def test_analysis_fails_the_story_when_kv_pressure_shows_up_outside_the_chat_group() -> None:
    def analyze(request: httpx.Request) -> tuple[int, dict[str, Any]]:
        instance_id = json.loads(request.content)["instance_id"]
        return 200, report(instance_id, *([kv_finding()] if "vllm" in instance_id else []))

    story, _ = story_against({("POST", "/api/v1/analyze"): analyze})
    with pytest.raises(StepFailed, match=r"found it on \[.*'vllm-batch-0'\]"):
        story.analyze()


def test_a_harmful_change_that_is_not_rolled_back_fails_the_story() -> None:
    created = {"workflow_id": "w-2", "status": "capturing_baseline", "changes": {"--max-num-seqs": 4}}
    done = {**created, "status": "completed", "status_reason": None, "stages": [10, 50, 100], "stage_index": 2,
            "percent": 100, "changed_count": 4, "instance_ids": ["a", "b", "c", "d"], "windows": []}  # fmt: skip
    story, stream = story_against(
        {("POST", "/api/v1/workflows"): (201, created), ("GET", "/api/v1/workflows/w-2"): (200, done)}
    )
    with pytest.raises(StepFailed, match=r"workflow w-2 is 'completed', expected 'rolled_back'"):
        story.roll_out_harmful_change()
    assert "rolled back automatically" not in stream.getvalue()


def test_a_rollback_without_a_failed_window_is_not_presented_as_evidence() -> None:
    created = {"workflow_id": "w-3", "status": "capturing_baseline", "changes": {"--max-num-seqs": 4}}
    done = {**created, "status": "rolled_back", "status_reason": "aborted", "stages": [100], "stage_index": 0,
            "percent": 100, "changed_count": 0, "instance_ids": ["a"], "windows": [{"verdict": "pass"}]}  # fmt: skip
    story, _ = story_against(
        {("POST", "/api/v1/workflows"): (201, created), ("GET", "/api/v1/workflows/w-3"): (200, done)}
    )
    with pytest.raises(StepFailed, match=r"rolled back without a failed health window"):
        story.roll_out_harmful_change()


def test_a_rollout_that_does_not_end_in_time_fails_with_its_last_status(monkeypatch: pytest.MonkeyPatch) -> None:
    import performance_agent.demo.story as story_module

    stuck = {"workflow_id": "w-4", "status": "monitoring", "status_reason": None, "stages": [100], "stage_index": 0,
             "percent": 100, "changed_count": 1, "instance_ids": ["a"], "windows": []}  # fmt: skip
    monkeypatch.setattr(story_module, "ROLLOUT_DEADLINE_S", 0.0)
    story, _ = story_against({("GET", "/api/v1/workflows/w-4"): (200, stuck)})
    with pytest.raises(StepFailed, match=r"workflow w-4 did not end within 0 s \(still monitoring: None\)"):
        story.watch("w-4")
