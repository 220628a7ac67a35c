"""Analyze, SLO targets and alerts endpoints. Thin: parse, call the service or repository, answer."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Controller, get, post, put
from litestar.params import PathParameter, QueryParameter

from performance_agent.analysis.api import AnalysisResponse, AnalyzeRequest, SloTargetsUpdate
from performance_agent.analysis.examples import (
    alerts_example,
    analysis_example,
    analyze_request_example,
    slo_update_example,
)
from performance_agent.analysis.schemas import AlertState
from performance_agent.analysis.service import AnalysisService
from performance_agent.context import AgentDependency
from performance_agent.errors import ErrorDetail, RequestValidationError
from performance_agent.fleet.schemas import INSTANCE_ID_PATTERN, Instance
from performance_agent.openapi_spec import example_body, responses
from performance_agent.security import Role
from performance_agent.storage.alerts import SqliteAlertRepository

__all__ = ("AlertsController", "AnalyzeController", "SloController")

_OPERATOR = {"role": Role.operator}
_STATES: dict[str, Literal["firing", "resolved"]] = {"firing": "firing", "resolved": "resolved"}

InstanceIdPath = Annotated[
    str,
    PathParameter(
        pattern=INSTANCE_ID_PATTERN,
        max_length=128,
        description="Letters, digits, `.`, `_` and `-`; 1 to 128 characters.",
    ),
]

_INSTANCE_EXAMPLE = {
    "instance_id": "vllm-llama-0",
    "engine": "vllm",
    "endpoint": "http://10.0.0.5:8000",
    "metrics_path": "/metrics",
    "labels": {"team": "search"},
    "slo": {
        "ttft_p99_s": 1.5,
        "ttft_p95_s": 0.8,
        "itl_p99_s": 0.08,
        "e2e_p99_s": 30.0,
        "error_rate": 0.005,
        "min_generation_tokens_per_s": None,
        "target_ratio": 0.995,
    },
    "engine_args": {"max_num_seqs": 256},
    "gpu": {"model": "H100-80GB", "memory_gib": 80.0, "count": 1},
    "model": {
        "name": "meta-llama/Llama-3.1-8B-Instruct",
        "architecture": None,
        "parameters_b": 8.0,
        "max_model_len": None,
    },
    "headers": {},
    "tls_verify": True,
    "ca_bundle": None,
    "status": "up",
    "last_seen": "2026-01-01T12:00:00Z",
    "last_scrape_at": "2026-01-01T12:00:00Z",
    "last_error": None,
    "consecutive_failures": 0,
    "created_at": "2026-01-01T09:00:00Z",
    "updated_at": "2026-01-01T12:00:05Z",
}


class AnalyzeController(Controller):
    path = "/api/v1/analyze"
    tags = ["Analysis"]

    @post(
        "/",
        opt=_OPERATOR,
        status_code=200,
        operation_id="AnalyzeInstance",
        summary="Find bottlenecks and report SLO compliance over a window",
        responses=responses(
            200,
            AnalysisResponse,
            analysis_example(),
            "Findings with evidence, the SLO report and a verdict.",
            404,
            409,
            422,
        ),
    )
    async def analyze(
        self,
        agent: AgentDependency,
        data: Annotated[AnalyzeRequest, example_body("Last 15 minutes, stricter TTFT", analyze_request_example())],
    ) -> AnalysisResponse:
        """Analyse the stored history of a registered instance over the last `window_minutes`.

        Window figures come from the summed histogram and counter deltas of the window (gauges:
        the mean of the window's scrapes). An instance with no history is scraped once first.
        `slo` overrides the instance's targets for this analysis only; `model_name` analyses
        one model of a multi-model server. 404 unknown instance; 409 `insufficient_data` when
        the window holds no usable data (context: `scrapes_in_window`, `scrape_error`,
        `available_models`).
        """
        return await AnalysisService.of(agent).analyze(data)


class SloController(Controller):
    path = "/api/v1/instances"
    tags = ["Analysis"]

    @put(
        "/{instance_id:str}/slo",
        opt=_OPERATOR,
        operation_id="ReplaceInstanceSlo",
        summary="Replace an instance's SLO targets",
        responses=responses(200, Instance, _INSTANCE_EXAMPLE, "The instance with its new targets.", 404, 422),
    )
    async def replace_slo(
        self,
        agent: AgentDependency,
        instance_id: InstanceIdPath,
        data: Annotated[SloTargetsUpdate, example_body("Stricter latency targets", slo_update_example())],
    ) -> Instance:
        """Replace the targets: named ones as given, every other one from the configured defaults.

        Latencies must be positive seconds, `error_rate` and `target_ratio` fractions in (0, 1];
        anything else is a 422 naming the field (`body.ttft_p99_s`). `GET /instances/{id}`
        shows the stored targets; analyses and background alerts use them from the next scrape.
        """
        return await AnalysisService.of(agent).replace_slo(instance_id, data)


class AlertsController(Controller):
    path = "/api/v1/alerts"
    tags = ["Analysis"]

    @get(
        "/",
        operation_id="ListAlerts",
        summary="SLO burn-rate alerts, newest first",
        responses=responses(200, list[AlertState], alerts_example(), "Alert episodes with fire/resolve times.", 422),
    )
    async def list_alerts(
        self,
        agent: AgentDependency,
        alert_state: Annotated[
            str | None,
            QueryParameter(name="state", enum=["firing", "resolved"], description="Only alerts in this state."),
        ] = None,
        instance_id: Annotated[
            str | None, QueryParameter(pattern=INSTANCE_ID_PATTERN, max_length=128, description="Only this instance.")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000, description="At most this many alerts.")] = 100,
    ) -> list[AlertState]:
        """Each firing episode of each burn-rate alert: `started_at` when it fired, `ended_at` when it resolved.

        Alerts are evaluated in the background after each scrape with the SRE workbook's
        multi-window pairs (1h with 5m at 14.4x, 6h with 30m at 6x); see docs/analysis.md.
        """
        if alert_state is not None and alert_state not in _STATES:
            # Validated here: `state` is a reserved parameter name in Litestar, so it cannot be a typed Literal.
            raise RequestValidationError(
                f"state must be firing or resolved, got {alert_state!r}",
                [ErrorDetail(field="query.state", message="expected firing or resolved", type="invalid")],
            )
        wanted = _STATES[alert_state] if alert_state is not None else None
        return await SqliteAlertRepository(agent.database).list(state=wanted, instance_id=instance_id, limit=limit)
