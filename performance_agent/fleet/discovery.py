"""Prometheus discovery rules and what one discovery round changes in the registry (pure).

A rule names an engine and label matchers (`{job="vllm"}`). A round lists the series of the
engine's signature metric and of `up` that match. Each `up` series is one scrape target, labelled
with exactly the labels Prometheus gave the target (`job`, `instance`, relabelled ones such as
`namespace`, `pod`); a target with signature series is one server. Without `up` (federated or
remote-written data), every distinct label set of the signature metric is one server, once the
labels that tell apart the series of one server are ignored (model name, ranks, `le`). The
instance id comes from the rule's template (`{namespace}-{pod}`), with characters outside the id
alphabet turned into `-`; the server's labels, as equality matchers, become the instance's
`match`, so it reads exactly that server.

A registered discovered instance that no round finds is marked gone (kept with its history); one
found again is no longer gone. Instances registered by hand are never touched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

import msgspec
from msgspec import Meta

from performance_agent.fleet.schemas import ENGINE_PATTERN, INSTANCE_ID_PATTERN, Labels, Match
from performance_agent.fleet.selectors import LabelMatcher, SelectorError, parse_selector, render_selector
from performance_agent.fleet.slo import SloTargetsUpdate

__all__ = (
    "SERVER_INTERNAL_LABELS",
    "SIGNATURE_METRICS",
    "DiscoveredServer",
    "DiscoveryPlan",
    "DiscoveryRule",
    "KnownInstance",
    "discovery_selectors",
    "parse_discovery_rules",
    "plan_discovery",
    "render_instance_id",
    "series_window",
    "servers_of",
)

#: Labels that differ between the series of one server, never between servers: the metric name,
#: histogram bucket bounds, model names (vLLM/SGLang `model_name`, TGI has none), vLLM's
#: data-parallel `engine` rank and SGLang's `tp_rank`/`dp_rank`/`pp_rank`.
SERVER_INTERNAL_LABELS = frozenset(
    {"__name__", "le", "model_name", "model", "engine", "tp_rank", "dp_rank", "pp_rank", "moe_ep_rank"}
)
_TARGET_METRIC = "up"
#: Per engine, a gauge every version of it exports once per server (and rank/model): what discovery lists.
SIGNATURE_METRICS = {"vllm": "vllm:num_requests_running", "sglang": "sglang:num_running_reqs", "tgi": "tgi_queue_size"}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_OUTSIDE_ID_ALPHABET = re.compile(r"[^A-Za-z0-9._-]")
_ID = re.compile(INSTANCE_ID_PATTERN)
_MAX_ID = 128


class DiscoveryRule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One `PERF_AGENT_PROMETHEUS_DISCOVERY` entry."""

    engine: Annotated[str, Meta(pattern=ENGINE_PATTERN)]
    match: Match
    instance_id: Annotated[str, Meta(min_length=1, max_length=256)]
    labels: Labels = msgspec.field(default_factory=dict)
    #: Applied when an instance is first registered; never re-applied.
    slo: SloTargetsUpdate | None = None


_rules_decoder = msgspec.json.Decoder(list[DiscoveryRule])


def parse_discovery_rules(text: str) -> list[DiscoveryRule]:
    """The rules in `text`; ValueError names the first problem (bad JSON, a field, a match, a template)."""
    try:
        rules = _rules_decoder.decode(text)
    except msgspec.ValidationError as invalid:
        raise ValueError(str(invalid)) from None
    except msgspec.DecodeError as invalid:
        raise ValueError(f"not a JSON array of rules: {invalid}") from None
    for index, rule in enumerate(rules):
        try:
            parse_selector(rule.match)
        except SelectorError as invalid:
            raise ValueError(f"rule {index}: match: {invalid}") from None
        if not _PLACEHOLDER.search(rule.instance_id):
            raise ValueError(f"rule {index}: instance_id must name at least one label, e.g. {{namespace}}-{{pod}}")
        unknown = set(_PLACEHOLDER.sub("", rule.instance_id)) & set("{}")
        if unknown:
            raise ValueError(f"rule {index}: instance_id has a brace outside a {{label}} placeholder")
    return rules


def render_instance_id(template: str, labels: dict[str, str]) -> str | None:
    """The id for a server's labels, or None when a named label is missing or the result is empty."""
    missing = False

    def substitute(found: re.Match[str]) -> str:
        nonlocal missing
        value = labels.get(found.group(1), "")
        missing = missing or value == ""
        return value

    rendered = _OUTSIDE_ID_ALPHABET.sub("-", _PLACEHOLDER.sub(substitute, template))[:_MAX_ID]
    if missing or _ID.fullmatch(rendered) is None:
        return None
    return rendered


@dataclass(frozen=True, slots=True)
class DiscoveredServer:
    instance_id: str
    labels: dict[str, str]
    #: Equality matchers on every label of the server: its instance's `match`.
    match: str


def discovery_selectors(rule: DiscoveryRule) -> list[str]:
    """The `match[]` selectors of a rule's series listing: its engine's signature metric and `up`."""
    matchers = render_selector(parse_selector(rule.match))
    return [SIGNATURE_METRICS[rule.engine] + matchers, _TARGET_METRIC + matchers]


def _server_identities(series: list[dict[str, str]]) -> set[tuple[tuple[str, str], ...]]:
    targets = [labels for labels in series if labels.get("__name__") == _TARGET_METRIC]
    signatures = [labels for labels in series if labels.get("__name__") != _TARGET_METRIC]
    if not targets:
        return {
            tuple(sorted((name, value) for name, value in labels.items() if name not in SERVER_INTERNAL_LABELS))
            for labels in signatures
        }
    identities = set()
    for target in targets:
        own = {name: value for name, value in target.items() if name != "__name__"}
        if any(all(labels.get(name) == value for name, value in own.items()) for labels in signatures):
            identities.add(tuple(sorted(own.items())))
    return identities


def servers_of(series: list[dict[str, str]], rule: DiscoveryRule) -> list[DiscoveredServer]:
    """One server per target with signature series (see the module docstring), in id order; unnamed ones skipped.

    Two servers that render the same id keep the first (in label order), so a template that does
    not tell servers apart never registers one instance reading two servers.
    """
    distinct = _server_identities(series)
    servers: dict[str, DiscoveredServer] = {}
    for identity in sorted(distinct):
        labels = dict(identity)
        instance_id = render_instance_id(rule.instance_id, labels)
        if instance_id is None or instance_id in servers:
            continue
        matchers = tuple(LabelMatcher(name, "=", value) for name, value in identity)
        servers[instance_id] = DiscoveredServer(instance_id, labels, render_selector(matchers))
    return [servers[instance_id] for instance_id in sorted(servers)]


@dataclass(frozen=True, slots=True)
class KnownInstance:
    """What a discovery round needs to know of a registered instance."""

    instance_id: str
    discovered: bool
    gone_since: datetime | None


@dataclass(frozen=True, slots=True)
class DiscoveryPlan:
    register: list[DiscoveredServer]
    mark_gone: list[str]
    mark_back: list[str]
    #: Found servers whose id a hand-registered instance holds: left alone, reported.
    conflicts: list[str]


def plan_discovery(found: list[DiscoveredServer], known: list[KnownInstance]) -> DiscoveryPlan:
    """What one round changes: new servers, discovered instances not found (gone), gone ones found again.

    `found` must hold every server of every rule of a round that fully succeeded: a round with a
    failed query is not planned at all, or a Prometheus outage would mark the fleet gone.
    """
    by_id = {instance.instance_id: instance for instance in known}
    found_ids = {server.instance_id for server in found}
    register = [server for server in found if server.instance_id not in by_id]
    conflicts = [
        server.instance_id
        for server in found
        if server.instance_id in by_id and not by_id[server.instance_id].discovered
    ]
    mark_gone = [
        instance.instance_id
        for instance in known
        if instance.discovered and instance.gone_since is None and instance.instance_id not in found_ids
    ]
    mark_back = [
        instance.instance_id
        for instance in known
        if instance.discovered and instance.gone_since is not None and instance.instance_id in found_ids
    ]
    return DiscoveryPlan(register=register, mark_gone=mark_gone, mark_back=mark_back, conflicts=conflicts)


def series_window(now: datetime, interval_s: float) -> tuple[datetime, datetime]:
    """The time range a round lists series over: one interval back from now.

    Why a range: the series API without one also returns series that vanished minutes ago (it
    looks back over the whole head block), so a stopped server would never look gone. With one
    interval, a server stopped at t is found until t + interval + one scrape interval at most,
    and marked gone at the first round after: within two intervals of stopping, inside the
    three the contract allows.
    """
    return now - timedelta(seconds=interval_s), now
