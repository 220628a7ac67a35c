"""OpenAPI examples of the judgement endpoints: two canaries judged against six controls.

`tests/api/test_openapi_contract.py` decodes each example strictly into its operation's types,
so they cannot drift from the code unnoticed.
"""

from __future__ import annotations

from typing import Any

from performance_agent.workflows.examples import WINDOW_EVIDENCE, WORKFLOW_SUMMARY

__all__ = ("CREATE", "FLAGGER_CHECK", "FLAGGER_HOOK", "JUDGEMENT", "JUDGEMENT_STARTED", "JUDGEMENT_STOPPED")

_CANARY = ["vllm-llama-0", "vllm-llama-1"]
_CONTROL = [f"vllm-llama-{i}" for i in range(2, 8)]

CREATE: dict[str, Any] = {
    "canary_instance_ids": _CANARY,
    "control_instance_ids": _CONTROL,
    "interval_s": 15,
    "guardrails": {"max_ttft_p99_increase": 0.2, "max_error_rate": 0.02},
    "judge": {"alpha": 0.05, "min_canary_requests": 1000},
    "max_duration_s": 3600,
}

JUDGEMENT_STARTED: dict[str, Any] = {
    "judgement_id": "5b0f3c1e-8a2d-4c6f-9e7a-1d2c3b4a5f60",
    "status": "running",
    "verdict": "running",
    "ok": True,
    "reason": None,
    "canary_instance_ids": _CANARY,
    "control_instance_ids": _CONTROL,
    "interval_s": 15.0,
    "max_duration_s": 3600.0,
    "guardrails": WORKFLOW_SUMMARY["guardrails"],
    "judge": {"alpha": 0.05, "min_canary_requests": 1000, "max_stage_extension_s": None},
    "created_by": "argo-pipeline",
    "created_at": "2026-01-01T10:00:00Z",
    "updated_at": "2026-01-01T10:00:00Z",
    "ends_at": "2026-01-01T11:00:00Z",
    "finished_at": None,
    "windows": 0,
    "inconclusive_windows": 0,
    "canary_requests": 0.0,
    "control_requests": 0.0,
    "scrape_errors": {},
    "evidence": None,
}

JUDGEMENT: dict[str, Any] = {
    **JUDGEMENT_STARTED,
    "updated_at": "2026-01-01T10:06:00Z",
    "windows": 24,
    "canary_requests": 72480.0,
    "control_requests": 217900.0,
    "evidence": WINDOW_EVIDENCE,
}

JUDGEMENT_STOPPED: dict[str, Any] = {
    **JUDGEMENT,
    "status": "finished",
    "verdict": "pass",
    "reason": "stopped by DELETE: no evidence against the canary over 72480 requests (floor 1000)",
    "finished_at": "2026-01-01T10:06:10Z",
    "updated_at": "2026-01-01T10:06:10Z",
}

FLAGGER_HOOK: dict[str, Any] = {
    "name": "vllm-llama",
    "namespace": "inference",
    "phase": "Progressing",
    "checksum": "85d557f47b",
    "metadata": {},
}

FLAGGER_CHECK: dict[str, Any] = {"judgement_id": JUDGEMENT["judgement_id"], "verdict": "running", "ok": True}
