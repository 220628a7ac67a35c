"""`GET /api/v1/prometheus/targets` and `/rules`: what a team's Prometheus reads from the agent. Thin."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import SkipValidation

from performance_agent.errors import error_responses
from performance_agent.openapi_spec import responses
from performance_agent.prometheus import examples
from performance_agent.prometheus.rules import RuleFile
from performance_agent.prometheus.service import PrometheusService
from performance_agent.prometheus.targets import TargetGroup

__all__ = ("PrometheusController", "PrometheusDependency")

#: How handlers receive the app's one `PrometheusService` (built by the composition root).
PrometheusDependency = NamedDependency[SkipValidation[PrometheusService]]
RULES_MEDIA_TYPE = "application/yaml"


class PrometheusController(Controller):
    path = "/api/v1/prometheus"
    tags = ["Prometheus"]

    @get(
        "/targets",
        operation_id="PrometheusTargets",
        summary="Registered servers for Prometheus HTTP service discovery",
        responses=responses(200, list[TargetGroup], examples.TARGETS, "Target groups (http_sd_configs format)"),
    )
    async def targets(self, prometheus: PrometheusDependency) -> list[TargetGroup]:
        """Every registered server as `[{"targets": ["host:port"], "labels": {...}}]`, for `http_sd_configs`.

        Labels: `__scheme__`, `__metrics_path__` (and `__param_<name>` for a query string in the
        metrics path), `instance_id`, `perf_agent_engine`, and `model` when registered. Point a
        Prometheus `http_sd_configs` entry here (with the bearer key when auth is on) and it
        scrapes the servers the agent scrapes; see docs/integrations.md.
        """
        return await prometheus.targets()

    @get(
        "/rules",
        operation_id="PrometheusRules",
        summary="Prometheus recording and alerting rules for the registered SLOs",
        media_type=RULES_MEDIA_TYPE,
        responses={
            **error_responses(),
            # Documented as the structure the YAML parses to, so a client (or schemathesis) that
            # reads YAML can check the answer against it.
            200: ResponseSpec(
                data_container=RuleFile,
                media_type=RULES_MEDIA_TYPE,
                description="A Prometheus rule file (YAML)",
                generate_examples=False,
                examples=[Example(summary="One vLLM instance with the default targets", value=examples.RULES)],
            ),
        },
    )
    async def rules(self, prometheus: PrometheusDependency) -> str:
        """Rules that compute each registered instance's SLO burn rates from the engine's own series.

        One group per instance: the objective's figure (`perf_agent:slo_sli`), whether it misses
        the target (`perf_agent:slo_window_bad`), the burn rate over 5m, 30m, 1h and 6h
        (`perf_agent:slo_burn_rate{window}`) and `PerformanceAgentSLOBurnRate` alerts for the
        1h/5m (14.4x) and 6h/30m (6x) pairs, labelled as the agent labels its own alerts.
        `promtool check rules` accepts the file; see docs/integrations.md.
        """
        return await prometheus.rules()
