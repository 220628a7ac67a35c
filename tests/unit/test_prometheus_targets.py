"""Registrations as Prometheus `http_sd_configs` target groups: address, scheme, path, parameters, labels."""

from __future__ import annotations

import pytest

from performance_agent.fleet.schemas import InstanceSpec, ModelInfo
from performance_agent.prometheus.targets import target_group, target_groups


def spec(endpoint: str, metrics_path: str = "/metrics", model: ModelInfo | None = None) -> InstanceSpec:
    return InstanceSpec(engine="vllm", endpoint=endpoint, metrics_path=metrics_path, model=model)


def test_a_registration_becomes_one_group_with_the_agents_labels() -> None:
    group = target_group("vllm-0", spec("http://10.0.0.5:8000", model=ModelInfo(name="llama")))

    assert group.targets == ["10.0.0.5:8000"]
    assert group.labels == {
        "__scheme__": "http",
        "__metrics_path__": "/metrics",
        "instance_id": "vllm-0",
        "perf_agent_engine": "vllm",
        "model": "llama",
    }
    assert "engine" not in group.labels  # vLLM's own data-parallel rank label


@pytest.mark.parametrize(
    ("endpoint", "metrics_path", "target", "scheme", "path"),
    [
        ("https://vllm.example", "/metrics", "vllm.example:443", "https", "/metrics"),
        ("http://vllm.example", "/metrics", "vllm.example:80", "http", "/metrics"),
        ("http://10.0.0.5:8000/prefix/", "/metrics", "10.0.0.5:8000", "http", "/prefix/metrics"),
        ("http://[fd00::5]:8000", "/metrics", "[fd00::5]:8000", "http", "/metrics"),
        ("http://user:secret@10.0.0.5:8000", "/metrics", "10.0.0.5:8000", "http", "/metrics"),
    ],
)
def test_address_scheme_and_path(endpoint: str, metrics_path: str, target: str, scheme: str, path: str) -> None:
    group = target_group("i", spec(endpoint, metrics_path))

    assert group.targets == [target]
    assert (group.labels["__scheme__"], group.labels["__metrics_path__"]) == (scheme, path)
    assert "secret" not in repr(group)


def test_a_query_in_the_metrics_path_becomes_scrape_parameters() -> None:
    group = target_group("i", spec("http://10.0.0.5:8000", "/metrics?format=prometheus&name[]=vllm"))

    assert group.labels["__metrics_path__"] == "/metrics"
    assert group.labels["__param_format"] == "prometheus"
    assert not any(label.startswith("__param_name") for label in group.labels)  # `name[]` is no label name


def test_no_model_no_model_label_and_order_is_kept() -> None:
    groups = target_groups([("b", spec("http://10.0.0.6:1")), ("a", spec("http://10.0.0.5:1"))])

    assert [g.labels["instance_id"] for g in groups] == ["b", "a"]
    assert all("model" not in g.labels for g in groups)
