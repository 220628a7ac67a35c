"""docs/grafana/performance-agent.json asks only for series the agent really exports.

The agent is run in-process (Litestar's test client, its background loops included) and exercised
until every family it declares carries samples, except the SLO alert families, which need hours
of scrape history to fill: successful and failed scrapes, a workflow rejected at its start gate,
and one approved, watched for a health window and aborted (a rollback). `/metrics` is then read
with the agent's own exposition parser. Every metric name in every PromQL expression must be
exported (histograms with their `_bucket`, `_sum` and `_count` series), and every label an
expression filters or groups by must be on that metric's samples.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from litestar.testing import TestClient

from performance_agent.app import create_app
from performance_agent.metrics.exposition import parse_page
from performance_agent.simulator.fleet import start_simulator
from tests.agent_process import free_port
from tests.conftest import make_settings
from tests.paths import REPO_ROOT

pytestmark = pytest.mark.e2e

DASHBOARD = REPO_ROOT / "docs" / "grafana" / "performance-agent.json"
#: Families that only carry samples after SLO alerts were evaluated over long scrape history (or
#: were sent to an Alertmanager, which this agent has none of).
ALERT_FAMILIES = frozenset(
    {
        "performance_agent_slo_alert_firing",
        "performance_agent_slo_burn_rate",
        "performance_agent_slo_alert_transitions_total",
        "performance_agent_alert_webhook_deliveries_total",
        "performance_agent_alertmanager_posts_total",
    }
)
#: Labels Prometheus adds to every series it scrapes (the target's), not written by the agent.
TARGET_LABELS = frozenset({"job", "instance"})
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}
)
_STRING = re.compile(r'"(?:\\.|[^"\\])*"')
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"\{([^}]*)\}")
_MATCHER_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_RANGE = re.compile(r"\[[^\]]*\]")
_IDENTIFIER = re.compile(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL_VALUES = re.compile(r"^label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)$")


@dataclass(frozen=True, slots=True)
class Exported:
    names: frozenset[str]
    labels: dict[str, frozenset[str]]
    without_samples: frozenset[str]


def promql_references(expression: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) an expression refers to; functions, keywords and numbers are not names."""
    text = _GRAFANA_VARIABLE.sub("", _STRING.sub('""', expression))
    labels: set[str] = set()

    def grouping(match: re.Match[str]) -> str:
        labels.update(label.strip() for label in match[1].split(",") if label.strip())
        return " "

    def selector(match: re.Match[str]) -> str:
        labels.update(_MATCHER_LABEL.findall(match[1]))
        return " "

    text = _RANGE.sub(" ", _SELECTOR.sub(selector, _GROUPING.sub(grouping, text)))
    names = {
        match[0]
        for match in _IDENTIFIER.finditer(text)
        if not text[match.end() :].lstrip().startswith("(") and match[0] not in _KEYWORDS
    }
    return names, labels


def dashboard_expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target, rows' nested panels included."""
    found: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            found.extend((panel["title"], target["expr"]) for target in panel.get("targets", []))
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    return found


def exported_series(metrics_text: str) -> Exported:
    page = parse_page(metrics_text)
    names = set(page.series)
    labels: dict[str, set[str]] = {}
    for name, samples in page.series.items():
        for sample in samples:
            labels.setdefault(name, set()).update(sample.labels)
    for name, family in page.families.items():
        names.add(name)
        if family.type == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    without = frozenset(name for name, family in page.families.items() if not family.samples)
    return Exported(frozenset(names), {name: frozenset(found) for name, found in labels.items()}, without)


def _wait(client: TestClient[Any], workflow_id: str, done: Any, what: str) -> dict[str, Any]:
    give_up = time.monotonic() + 30
    while True:
        workflow: dict[str, Any] = client.get(f"/api/v1/workflows/{workflow_id}").json()
        if done(workflow):
            return workflow
        assert time.monotonic() < give_up, f"workflow never {what}: {workflow['status']}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def exported() -> Iterator[Exported]:
    """Run the agent and exercise it until its families carry samples; then read /metrics."""
    # Background collection stays on (it publishes `performance_agent_instances`); with the default
    # test interval of an hour no instance falls due during the test.
    settings = make_settings(workflow_tick_s=0.05)
    with start_simulator("vllm", 2, time_scale=20) as fleet, TestClient(create_app(settings)) as client:
        for handle in fleet.instances:
            body = {"instance_id": handle.instance_id, "endpoint": handle.endpoint}
            assert client.post("/api/v1/instances", json={**body, "engine": "vllm"}).status_code == 201
            assert client.post("/api/v1/collect/vllm", json=body).status_code == 200
        dark = {"instance_id": "dark-0", "endpoint": f"http://127.0.0.1:{free_port()}"}
        assert client.post("/api/v1/collect/vllm", json=dark).status_code == 502
        ids = [handle.instance_id for handle in fleet.instances]
        rollout = {
            "instance_ids": ids,
            "changes": {"--max-num-seqs": 128},
            "approval": {"required": True},
            "monitor": {"duration_s": 600, "interval_s": 0.2, "warmup_s": 0.1},
            "actuator": {"type": "simulator"},
        }
        rejected = client.post("/api/v1/workflows", json=rollout).json()["workflow_id"]
        assert client.post(f"/api/v1/workflows/{rejected}/reject").json()["status"] == "rejected"
        watched = client.post("/api/v1/workflows", json=rollout).json()["workflow_id"]
        assert client.post(f"/api/v1/workflows/{watched}/approve").status_code == 200
        _wait(client, watched, lambda w: w["status"] == "monitoring" and w["windows"], "judged a window")
        assert client.post(f"/api/v1/workflows/{watched}/abort").status_code == 200
        _wait(client, watched, lambda w: w["status"] == "rolled_back", "rolled back")
        time.sleep(0.2)  # one more reconciler pass publishes the status counts
        response = client.get("/metrics")
        assert response.status_code == 200
        yield exported_series(response.text)


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def test_promql_references_finds_names_and_labels() -> None:
    names, labels = promql_references(
        'histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{job=~"$job",status!="5.."}[$__rate_interval])))'
        ' / on (route) group_left (x) b_total{y="1e3"} or vector(0) > bool 1e3'
    )
    assert names == {"a_bucket", "b_total"}
    assert labels == {"le", "route", "job", "status", "x", "y"}
    assert promql_references("count(up == 1)") == ({"up"}, set())


def test_the_agent_was_exercised_until_its_families_carry_samples(exported: Exported) -> None:
    assert exported.without_samples <= ALERT_FAMILIES, sorted(exported.without_samples - ALERT_FAMILIES)
    for name in ("performance_agent_workflow_rollbacks_total", "performance_agent_workflow_windows_total"):
        assert name in exported.labels


def test_every_expression_names_only_exported_series(dashboard: dict[str, Any], exported: Exported) -> None:
    expressions = dashboard_expressions(dashboard)
    assert len(expressions) >= 20
    problems = []
    for title, expression in expressions:
        names, labels = promql_references(expression)
        if not names:
            problems.append(f"{title}: no metric in {expression!r}")
        problems += [f"{title}: {name} is not exported" for name in sorted(names - exported.names)]
        known = set(TARGET_LABELS)
        for name in names:
            known |= exported.labels.get(name, frozenset())
        if all(name in exported.labels for name in names):
            problems += [f"{title}: label {label} is on no series of {sorted(names)}" for label in labels - known]
        elif names <= exported.names and not names & ALERT_FAMILIES:
            problems.append(f"{title}: {sorted(names)} carry no samples, so their labels cannot be checked")
    assert not problems, "\n".join(problems)


def test_the_dashboard_covers_what_operators_watch(dashboard: dict[str, Any]) -> None:
    joined = " ".join(expression for _, expression in dashboard_expressions(dashboard))
    for needed in (
        "performance_agent_scrape_failures_total",
        "performance_agent_instances",
        "performance_agent_slo_burn_rate",
        "performance_agent_slo_alert_firing",
        "performance_agent_workflows",
        "performance_agent_workflow_rollbacks_total",
    ):
        assert needed in joined


def test_panels_and_variables_are_well_formed(dashboard: dict[str, Any], exported: Exported) -> None:
    panels = [*dashboard["panels"], *(p for row in dashboard["panels"] for p in row.get("panels", []))]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
            assert len({target["refId"] for target in panel["targets"]}) == len(panel["targets"])
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    match = _LABEL_VALUES.match(variables["job"]["query"]["query"])
    assert match is not None
    assert match[1] in exported.names
    assert match[2] in TARGET_LABELS
