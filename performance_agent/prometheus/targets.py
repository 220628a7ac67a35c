"""Registered servers as Prometheus HTTP service discovery target groups (pure).

Format (Prometheus docs, `<http_sd_config>`): a JSON array of `{"targets": ["host:port"],
"labels": {...}}`; `__scheme__`, `__metrics_path__` and `__param_<name>` set how the target is
scraped. The engine goes in `perf_agent_engine`, not `engine`: vLLM already uses `engine` for
its data-parallel rank, and a target label would overwrite it on every series.
Why an explicit port: an `http://host` endpoint means port 80 to the agent, so it says so
rather than leave the default to the scraper. Credentials in the endpoint's user part are never
served (the targets endpoint is readable by viewers). A query parameter whose name cannot be
part of a label name (`[A-Za-z0-9_]`) cannot be expressed as `__param_<name>` and is left out.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

import msgspec

if TYPE_CHECKING:
    from collections.abc import Iterable

    from performance_agent.fleet.schemas import InstanceSpec

__all__ = ("TargetGroup", "target_group", "target_groups")

_DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL_NAME_PART = re.compile(r"[A-Za-z0-9_]+")


class TargetGroup(msgspec.Struct, kw_only=True):
    """One `http_sd_configs` entry: the servers to scrape and the labels their series get."""

    targets: list[str]
    labels: dict[str, str]


def target_group(instance_id: str, spec: InstanceSpec) -> TargetGroup:
    """The group that makes Prometheus scrape this registration where the agent does."""
    url = urlsplit(spec.endpoint.rstrip("/") + spec.metrics_path)
    host = url.hostname or ""
    port = url.port if url.port is not None else _DEFAULT_PORTS.get(url.scheme, 80)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    labels = {
        "__scheme__": url.scheme,
        "__metrics_path__": url.path or "/",
        "instance_id": instance_id,
        "perf_agent_engine": spec.engine,
    }
    for name, value in parse_qsl(url.query, keep_blank_values=True):
        if _LABEL_NAME_PART.fullmatch(name):
            labels[f"__param_{name}"] = value
    if spec.model is not None and spec.model.name:
        labels["model"] = spec.model.name
    return TargetGroup(targets=[address], labels=labels)


def target_groups(registrations: Iterable[tuple[str, InstanceSpec]]) -> list[TargetGroup]:
    """One group per registration, in the order given (the repository's, by id)."""
    return [target_group(instance_id, spec) for instance_id, spec in registrations]
