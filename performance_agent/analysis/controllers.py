"""Analyze and alerts endpoints. Thin: parse, call the service or repository, answer."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import QueryParameter, SkipValidation

from performance_agent.analysis.api import AnalysisResponse, AnalyzeRequest
from performance_agent.analysis.examples import (
    alerts_example,
    analysis_example,
    analyze_request_example,
)
from performance_agent.analysis.ports import AlertRepository
from performance_agent.analysis.schemas import AlertState
from performance_agent.analysis.service import AnalysisService
from performance_agent.errors import ErrorDetail, RequestValidationError
from performance_agent.fleet.schemas import INSTANCE_ID_PATTERN
from performance_agent.openapi_spec import example_body, responses
from performance_agent.security import Role

__all__ = ("AlertsController", "AlertsDependency", "AnalysisDependency", "AnalyzeController")

#: How handlers receive the app's one `AnalysisService` and alert repository (built by the composition root).
AnalysisDependency = NamedDependency[SkipValidation[AnalysisService]]
AlertsDependency = NamedDependency[SkipValidation[AlertRepository]]

_OPERATOR = {"role": Role.operator}
_STATES: dict[str, Literal["firing", "resolved"]] = {"firing": "firing", "resolved": "resolved"}


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
        analysis: AnalysisDependency,
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
        return await analysis.analyze(data)


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
        alerts: AlertsDependency,
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
        return await alerts.list(state=wanted, instance_id=instance_id, limit=limit)
