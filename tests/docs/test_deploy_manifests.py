"""The compose file and Kubernetes manifests in docs/deploy parse and name only real settings.

They are documentation a team copies, so a renamed setting or a broken indentation must fail
here rather than in someone's cluster.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml  # type: ignore[import-untyped]

from performance_agent.settings import Settings, env_name
from tests.paths import REPO_ROOT

DEPLOY = REPO_ROOT / "docs" / "deploy"
MANIFESTS = sorted(DEPLOY.rglob("*.yaml"))
SETTINGS = {env_name(field.name) for field in msgspec.structs.fields(Settings)}


def _documents(path: Path) -> list[Any]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document is not None]


@pytest.mark.parametrize("path", MANIFESTS, ids=[str(p.relative_to(DEPLOY)) for p in MANIFESTS])
def test_manifest_parses_and_names_only_real_settings(path: Path) -> None:
    assert _documents(path), path
    named = set(re.findall(r"\bPERF_AGENT_[A-Z0-9_]+", path.read_text()))
    assert named <= SETTINGS, sorted(named - SETTINGS)


def test_kubernetes_runs_two_replicas_on_postgresql_with_a_migration_first() -> None:
    documents = _documents(DEPLOY / "kubernetes" / "agent.yaml")
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["command"] == ["python", "-m", "performance_agent", "migrate"]
    env = {item["name"]: item for item in pod["containers"][0]["env"]}
    assert env["PERF_AGENT_DATABASE_URL"]["value"].startswith("postgresql://")
    assert "@" in env["PERF_AGENT_DATABASE_URL"]["value"]
    assert ":" not in env["PERF_AGENT_DATABASE_URL"]["value"].split("@")[0].removeprefix("postgresql://")
    assert "secretKeyRef" in env["PGPASSWORD"]["valueFrom"]  # the password comes from a secret, not the URL
    assert {d["kind"] for d in documents} == {"Service", "Deployment", "PodDisruptionBudget"}


def test_compose_starts_agents_only_after_the_migration() -> None:
    (compose,) = _documents(DEPLOY / "compose.yaml")
    agents = [name for name in compose["services"] if name.startswith("agent-")]
    assert len(agents) == 2
    for name in agents:
        service = compose["services"][name]
        assert service["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
        assert service["environment"]["PERF_AGENT_REPLICA_ID"] == name
    assert compose["services"]["migrate"]["command"][-1] == "migrate"
