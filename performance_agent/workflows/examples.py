"""OpenAPI examples of the workflow endpoints: a four-instance vLLM rollout held at its stage-2 gate.

`tests/api/test_openapi_contract.py` decodes each example strictly into its operation's types,
so they cannot drift from the code unnoticed.
"""

from __future__ import annotations

from typing import Any

__all__ = (
    "ACTION_BODY",
    "APPROVAL_BODY",
    "EVENTS",
    "WORKFLOW",
    "WORKFLOW_CREATE",
    "WORKFLOW_STARTED",
    "WORKFLOW_SUMMARY",
)

WORKFLOW_CREATE: dict[str, Any] = {
    "instance_ids": ["vllm-llama-0", "vllm-llama-1", "vllm-llama-2", "vllm-llama-3"],
    "changes": {"--max-num-seqs": 128},
    "env": {},
    "stages": [10, 50, 100],
    "approval": {"required": True, "stage_gates": [2], "timeout_s": 3600},
    "monitor": {"duration_s": 300, "interval_s": 15, "warmup_s": 60},
    "guardrails": {"max_ttft_p99_increase": 0.2, "max_goodput_decrease": 0.02, "consecutive_failures": 2},
    "judge": {"alpha": 0.05, "min_canary_requests": 1000, "max_stage_extension_s": 300},
    "actuator": {"type": "webhook", "url": "http://deployer.internal:8080/rollouts"},
    "description": "Halve max-num-seqs to cut ITL p99 (plan 7f3c)",
}

APPROVAL_BODY: dict[str, Any] = {"approver": "alice", "comment": "stage 1 looked clean for 10 minutes"}
ACTION_BODY: dict[str, Any] = {"reason": "latency alert on the canary"}

_COHORT = {
    "instances": 2,
    "requests": 3120.0,
    "requests_per_s_per_instance": 5.2,
    "ttft_p99_s": 0.231,
    "itl_p99_s": 0.048,
    "e2e_p99_s": 11.9,
    "error_rate": 0.0006,
    "preemptions_per_s_per_instance": 0.0,
}

_WINDOW = {
    "seq": 21,
    "stage_index": 1,
    "status": "monitoring",
    "started_at": "2026-01-01T10:24:45Z",
    "ended_at": "2026-01-01T10:25:00Z",
    "verdict": "pass",
    "critical": False,
    "reference": "control",
    "reasons": [],
    "checks": [
        {
            "metric": "ttft_p99_s",
            "kind": "relative",
            "canary": 0.236,
            "reference": 0.231,
            "threshold": 0.2,
            "observed": 0.0216,
            "passed": True,
            "critical": False,
        },
        {
            "metric": "error_rate",
            "kind": "absolute",
            "canary": 0.0005,
            "reference": None,
            "threshold": 0.02,
            "observed": 0.0005,
            "passed": True,
            "critical": True,
        },
    ],
    "canary": {**_COHORT, "ttft_p99_s": 0.236, "error_rate": 0.0005},
    "control": _COHORT,
    "min_samples": 100,
    "scrape_errors": {},
}

WORKFLOW_SUMMARY: dict[str, Any] = {
    "workflow_id": "0d9c4d55-3f0e-4f7e-8a51-2f1b7a0c9e21",
    "status": "awaiting_approval",
    "status_reason": None,
    "version": 14,
    "allowed_actions": ["abort", "approve", "pause", "reject"],
    "engine": "vllm",
    "instance_ids": WORKFLOW_CREATE["instance_ids"],
    "changes": {"--max-num-seqs": 128},
    "env": {},
    "plan_id": None,
    "recommendation_ids": None,
    "description": WORKFLOW_CREATE["description"],
    "stages": [10, 50, 100],
    "stage_index": 1,
    "percent": 50,
    "changed_count": 2,
    "cohorts": {"canary": ["vllm-llama-0", "vllm-llama-1"], "control": ["vllm-llama-2", "vllm-llama-3"]},
    "approval": {"required": True, "stage_gates": [2], "timeout_s": 3600.0},
    "monitor": {
        "duration_s": 300.0,
        "interval_s": 15.0,
        "warmup_s": 60.0,
        "min_passing_windows": 3,
        "inconclusive_timeout_s": 300.0,
    },
    "guardrails": {
        "min_samples": 100,
        "max_ttft_p99_increase": 0.2,
        "max_itl_p99_increase": 0.15,
        "max_e2e_p99_increase": 0.2,
        "max_error_rate": 0.02,
        "max_error_rate_increase": 0.01,
        "max_preemptions_per_s": None,
        "max_preemptions_increase": 1.0,
        "max_throughput_decrease": 0.5,
        "max_ttft_p99_s": None,
        "max_itl_p99_s": None,
        "max_e2e_p99_s": None,
        "consecutive_failures": 2,
        "on_canary_scrape_error": "fail",
        "max_goodput_decrease": 0.02,
    },
    "judge": {"alpha": 0.05, "min_canary_requests": 1000, "max_stage_extension_s": 300.0},
    "actuator": {"type": "webhook", "url": "http://deployer.internal:8080/rollouts"},
    "created_by": "ops-pipeline",
    "created_at": "2026-01-01T10:00:00Z",
    "updated_at": "2026-01-01T10:25:00Z",
    "status_since": "2026-01-01T10:25:00Z",
    "finished_at": None,
    "stage_started_at": "2026-01-01T10:19:58Z",
    "warmup_until": "2026-01-01T10:21:00Z",
    "stage_deadline": "2026-01-01T10:25:00Z",
    "approval_deadline": "2026-01-01T11:25:00Z",
    "baseline": {"captured_at": "2026-01-01T10:02:15Z", "window_s": 15.0, "figures": {**_COHORT, "instances": 4}},
    "approvals": [{"gate": 0, "actor": "alice", "at": "2026-01-01T10:02:00Z", "comment": "go"}],
    "windows": None,
}

WORKFLOW: dict[str, Any] = {**WORKFLOW_SUMMARY, "windows": [_WINDOW]}

#: The same workflow as `StartWorkflow` answers it: waiting for the first approval, nothing changed yet.
WORKFLOW_STARTED: dict[str, Any] = {
    **WORKFLOW_SUMMARY,
    "status": "pending_approval",
    "version": 1,
    "allowed_actions": ["abort", "approve", "cancel", "reject"],
    "stage_index": 0,
    "percent": 10,
    "changed_count": 0,
    "cohorts": {"canary": [], "control": WORKFLOW_CREATE["instance_ids"]},
    "updated_at": "2026-01-01T10:00:00Z",
    "status_since": "2026-01-01T10:00:00Z",
    "stage_started_at": None,
    "warmup_until": None,
    "stage_deadline": None,
    "approval_deadline": "2026-01-01T11:00:00Z",
    "baseline": None,
    "approvals": [],
    "windows": [],
}

EVENTS: list[dict[str, Any]] = [
    {
        "seq": 1,
        "at": "2026-01-01T10:00:00Z",
        "type": "created",
        "action": "create",
        "from_status": None,
        "to_status": "pending_approval",
        "actor": "ops-pipeline",
        "comment": WORKFLOW_CREATE["description"],
        "reason": None,
        "stage_index": 0,
        "details": {},
    },
    {
        "seq": 2,
        "at": "2026-01-01T10:02:00Z",
        "type": "action",
        "action": "approve",
        "from_status": "pending_approval",
        "to_status": "capturing_baseline",
        "actor": "alice",
        "comment": "go",
        "reason": None,
        "stage_index": 0,
        "details": {"gate": 0},
    },
    {
        "seq": 9,
        "at": "2026-01-01T10:25:00Z",
        "type": "transition",
        "action": "analysis_passed",
        "from_status": "monitoring",
        "to_status": "awaiting_approval",
        "actor": "agent",
        "comment": None,
        "reason": None,
        "stage_index": 1,
        "details": {"window": 21, "passing_windows": 20},
    },
]
