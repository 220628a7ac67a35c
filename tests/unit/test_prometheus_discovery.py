"""Discovery rules, instance-id templates, servers from series and what a round changes, with plain values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from performance_agent.fleet.discovery import (
    DiscoveredServer,
    DiscoveryRule,
    KnownInstance,
    discovery_selectors,
    parse_discovery_rules,
    plan_discovery,
    render_instance_id,
    series_window,
    servers_of,
)
from performance_agent.fleet.selectors import parse_selector

RULE = DiscoveryRule(engine="vllm", match='{job="vllm"}', instance_id="{namespace}-{pod}")
NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def test_rules_parse_with_labels_and_slo() -> None:
    (rule,) = parse_discovery_rules(
        '[{"engine": "vllm", "match": "{job=\\"vllm\\"}", "instance_id": "{namespace}-{pod}",'
        ' "labels": {"team": "search"}, "slo": {"ttft_p99_s": 1.5}}]'
    )
    assert (rule.engine, rule.labels, rule.slo is not None and rule.slo.ttft_p99_s) == ("vllm", {"team": "search"}, 1.5)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[{,", "not a JSON array"),
        ("{}", "Expected `array`"),
        ('[{"engine": "llama", "match": "{job=\\"x\\"}", "instance_id": "{pod}"}]', "engine"),
        ('[{"engine": "vllm", "match": "job", "instance_id": "{pod}"}]', "rule 0: match"),
        ('[{"engine": "vllm", "match": "{job=\\"x\\"}", "instance_id": "fixed"}]', "must name at least one label"),
        ('[{"engine": "vllm", "match": "{job=\\"x\\"}", "instance_id": "{pod}-{"}]', "brace outside"),
        ('[{"engine": "vllm", "match": "{job=\\"x\\"}", "instance_id": "{pod}", "extra": 1}]', "extra"),
    ],
)
def test_bad_rules_are_refused_naming_the_problem(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_discovery_rules(text)


def test_ids_replace_characters_outside_the_alphabet_and_need_every_label() -> None:
    assert render_instance_id("{namespace}-{pod}", {"namespace": "llm", "pod": "vllm/0:a b"}) == "llm-vllm-0-a-b"
    assert render_instance_id("{namespace}-{pod}", {"namespace": "llm"}) is None
    assert len(render_instance_id("{pod}", {"pod": "x" * 300}) or "") == 128


def test_one_server_per_label_set_ignoring_model_rank_and_bucket_labels() -> None:
    target = {"job": "vllm", "instance": "10.0.0.5:8000", "namespace": "llm", "pod": "vllm-0"}
    series = [
        {"__name__": "vllm:num_requests_running", **target, "model_name": "m", "engine": str(rank)} for rank in range(4)
    ] + [{"__name__": "vllm:num_requests_running", **target, "pod": "vllm-1", "instance": "10.0.0.6:8000"}]
    servers = servers_of(series, RULE)
    assert [server.instance_id for server in servers] == ["llm-vllm-0", "llm-vllm-1"]
    assert servers[0].labels == target
    assert {m.name: m.value for m in parse_selector(servers[0].match)} == target


def test_with_up_a_server_is_a_target_with_signature_series_whatever_engine_labels_it_carries() -> None:
    target = {"job": "sglang", "instance": "10.0.0.7:30000", "namespace": "llm", "pod": "sglang-0"}
    idle = {"job": "sglang", "instance": "10.0.0.8:30000", "namespace": "llm", "pod": "sglang-1"}
    series = [
        {"__name__": "up", **target},
        {"__name__": "up", **idle},  # a target without the engine's series: not a server of this rule
        {"__name__": "sglang:num_running_reqs", **target, "engine_type": "unified", "moe_ep_rank": "0", "tp_rank": "1"},
    ]
    (server,) = servers_of(series, RULE)
    assert (server.instance_id, server.labels) == ("llm-sglang-0", target)
    assert {m.name for m in parse_selector(server.match)} == set(target)


def test_a_rule_lists_its_signature_metric_and_up() -> None:
    assert discovery_selectors(RULE) == ['vllm:num_requests_running{job="vllm"}', 'up{job="vllm"}']


def test_servers_whose_ids_collide_or_lack_a_label_are_skipped() -> None:
    series = [{"namespace": "llm", "pod": "a/b"}, {"namespace": "llm", "pod": "a:b"}, {"namespace": "llm"}]
    assert [server.labels for server in servers_of(series, RULE)] == [{"namespace": "llm", "pod": "a/b"}]


def _server(instance_id: str) -> DiscoveredServer:
    return DiscoveredServer(instance_id, {"pod": instance_id}, f'{{pod="{instance_id}"}}')


def test_a_round_registers_new_marks_vanished_gone_and_found_again_back() -> None:
    known = [
        KnownInstance("kept", discovered=True, gone_since=None),
        KnownInstance("vanished", discovered=True, gone_since=None),
        KnownInstance("returned", discovered=True, gone_since=NOW),
        KnownInstance("still-gone", discovered=True, gone_since=NOW),
        KnownInstance("by-hand", discovered=False, gone_since=None),
        KnownInstance("by-hand-found", discovered=False, gone_since=None),
    ]
    plan = plan_discovery([_server("kept"), _server("new"), _server("returned"), _server("by-hand-found")], known)
    assert [server.instance_id for server in plan.register] == ["new"]
    assert plan.mark_gone == ["vanished"]
    assert plan.mark_back == ["returned"]
    assert plan.conflicts == ["by-hand-found"]


def test_series_are_listed_over_one_interval_back() -> None:
    assert series_window(NOW, 30) == (NOW - timedelta(seconds=30), NOW)
