"""The guide reader and the checks of test_api_examples: they must refuse what they cannot run faithfully."""

from __future__ import annotations

from typing import Any

import pytest

from tests.docs.tour_parse import TourSyntaxError, jq_path, parse_curl, parse_tour, shell_words
from tests.docs.tour_run import missing_keys, route_of, uncovered_routes

VARIABLES = {"AGENT": "http://127.0.0.1:8000", "KEY": "secret-key-0123456789", "ID": "wf-1"}
SETUP = """```sh tour-setup
.venv/bin/python -m performance_agent simulate --engine vllm --count 2 --base-port 9100 --time-scale 20 &
export KEY=secret-key-0123456789 PERF_AGENT_API_KEYS="ops:operator:$KEY"
.venv/bin/python -m performance_agent serve &
export AGENT=http://127.0.0.1:8000
until curl -sf $AGENT/api/v1/health/ready >/dev/null; do sleep 0.5; done
```
"""


def lookup(name: str) -> str:
    if name not in VARIABLES:
        raise TourSyntaxError(f"${name} unset")
    return VARIABLES[name]


def guide(*blocks: str) -> str:
    return SETUP + "\n".join(blocks)


def test_shell_words_quote_and_expand_like_a_shell() -> None:
    words = shell_words("""curl "$AGENT/x/${ID}" -d '{"a": "$KEY"}' -H "X-API-Key: $KEY" a\\ b""", lookup)
    assert words == [
        "curl",
        "http://127.0.0.1:8000/x/wf-1",
        "-d",
        '{"a": "$KEY"}',
        "-H",
        "X-API-Key: secret-key-0123456789",
        "a b",
    ]
    assert shell_words("""'{"id": "'"$ID"'"}'""", lookup) == ['{"id": "wf-1"}']
    assert shell_words('"say \\"hi\\""', lookup) == ['say "hi"']


@pytest.mark.parametrize("text", ["curl 'open", 'curl "open', "curl $UNSET", "curl ${AGENT", "curl $ "])
def test_shell_words_refuse_what_a_shell_would_not_run_as_meant(text: str) -> None:
    with pytest.raises(TourSyntaxError):
        shell_words(text, lookup)


def test_parse_curl_reads_method_headers_and_body() -> None:
    call = parse_curl("""curl -s -X PUT $AGENT/a -H 'Content-Type: application/json' -d '{"x": 1}'""", lookup)
    assert (call.method, call.url, call.body) == ("PUT", "http://127.0.0.1:8000/a", '{"x": 1}')
    assert call.headers == (("Content-Type", "application/json"),)
    assert parse_curl("curl -s -d '{}' $AGENT/a", lookup).method == "POST"
    assert parse_curl("curl -s -I $AGENT/a", lookup).method == "HEAD"
    assert parse_curl("curl -s -D - -o /dev/null $AGENT/a", lookup).method == "GET"


@pytest.mark.parametrize(
    "text",
    [
        "curl -s --compressed $AGENT/a",
        "curl -s $AGENT/a $AGENT/b",
        "curl -s",
        "curl -s -H 'no colon' $AGENT/a",
        "curl -s -o out.json $AGENT/a",
        "curl -s $AGENT/a -X",
        "wget $AGENT/a",
    ],
)
def test_parse_curl_refuses_unsupported_commands(text: str) -> None:
    with pytest.raises(TourSyntaxError):
        parse_curl(text, lookup)


def test_jq_path_walks_objects_and_arrays() -> None:
    document: dict[str, Any] = {"a": {"b": [{"id": "x"}, {"id": "y"}]}, "n": 3}
    assert jq_path(document, ".a.b[1].id") == "y"
    assert jq_path(document, "'.n'") == 3
    assert jq_path(document, ".a.b[5]") is None
    assert jq_path(document, ".missing.deeper") is None
    assert jq_path([1, 2], ".[1]") == 2
    assert jq_path(document, ".") is document
    with pytest.raises(TourSyntaxError):
        jq_path(document, "a.b")
    with pytest.raises(TourSyntaxError):
        jq_path(document, ".a | length")


def test_parse_tour_reads_setup_examples_and_responses() -> None:
    tour = parse_tour(
        guide(
            "```sh expect=200 contains=ok\ncurl -s $AGENT/api/v1/health\n```\n",
            '```json response\n{"status": "ok"}\n```\n',
            "```sh expect=201\nID=$(curl -s -X POST $AGENT/w -d '{\n  \"a\": 1\n}' | jq -r .workflow_id)\n```\n",
            '```sh expect=200\nuntil [ "$(curl -s $AGENT/w/$ID | jq -r .status)" = done ]; do sleep 1; done\n```\n',
            "```sh expect=200\nC=$(curl -s -D - -o /dev/null $AGENT/w \\\n"
            "  | tr -d '\\r' | sed -n 's/^x-next-cursor: *//Ip')\n```\n",
            "```sh\nthis plain block is prose for readers and never runs\n```\n",
        )
    )
    assert [step.kind for step in tour.setup] == ["simulate", "export", "serve", "export", "ready"]
    fleet = tour.setup[0].fleet
    assert fleet is not None
    assert (fleet.engine, fleet.count, fleet.base_port) == ("vllm", 2, 9100)
    assert fleet.time_scale == 20.0
    health, capture, wait, header = tour.examples
    assert (health.kind, health.expect, health.contains, health.response) == ("call", 200, ("ok",), {"status": "ok"})
    assert (capture.kind, capture.name, capture.expr) == ("capture_json", "ID", ".workflow_id")
    assert '"a": 1' in capture.curl
    assert (wait.kind, wait.expr, wait.value) == ("wait", ".status", "done")
    assert (header.kind, header.name, header.expr) == ("capture_header", "C", "x-next-cursor")


@pytest.mark.parametrize(
    "markdown",
    [
        "```sh expect=200\ncurl -s http://127.0.0.1:8000/\n```\n",  # no setup block
        guide(SETUP),  # two setup blocks
        guide("```sh expect=200 eror=x\ncurl -s $AGENT/a\n```\n"),  # misspelt attribute
        guide("```sh expect=ok\ncurl -s $AGENT/a\n```\n"),  # status is not a number
        guide("```sh expect=200\ncurl -s $AGENT/a\ncurl -s $AGENT/b\n```\n"),  # two commands
        guide("```sh expect=200\ncurl -s $AGENT/a | grep x\n```\n"),  # unsupported pipeline
        guide("```sh expect=200\ncurl -s --fail-with-body $AGENT/a\n```\n"),  # unsupported option
        guide("```sh expect=200\nX=$(curl -s $AGENT/a | jq -r '.a | keys')\n```\n"),  # jq beyond paths
        guide('```sh expect=200\ncurl -s -d \'{"open": 1} $AGENT/a\n```\n'),  # unclosed quote
        guide('```json response\n{"a": 1}\n```\n'),  # response without its example
        guide("```sh expect=200\ncurl -s $AGENT/a\n```\n", "```json response\n{not json}\n```\n"),
        guide("```sh expect=200\ncurl -s $AGENT/a\n"),  # unterminated block
        SETUP.replace("--engine vllm", "--engine triton"),  # the simulator refuses it
        SETUP.replace("export AGENT", "AGENT"),  # not a supported setup statement
    ],
)
def test_parse_tour_refuses_what_it_cannot_run(markdown: str) -> None:
    with pytest.raises(TourSyntaxError):
        parse_tour(markdown)


def test_missing_keys_compares_shape_not_values() -> None:
    actual = {"a": 1, "b": {"c": [{"x": 1, "y": 2}, {"z": 3}]}, "d": []}
    assert missing_keys({"a": 99, "b": {"c": [{"z": 0}, {"y": 0}]}}, actual) == []
    assert missing_keys({"a": 1, "e": 2}, actual) == ["$.e"]
    assert missing_keys({"b": {"c": [{"w": 1}]}}, actual) == ["$.b.c[0].w"]
    assert missing_keys({"d": [{"q": 1}]}, actual) == ["$.d[0] (the array is empty)"]
    assert missing_keys({"a": {"nested": 1}}, actual) == ["$.a is int, documented as an object"]
    assert missing_keys([{"a": 1}], actual) == ["$ is dict, documented as an array"]


def test_routes_are_matched_as_the_router_does() -> None:
    routes = [
        ("GET", "/schema/openapi.json"),
        ("GET", "/schema/{path:str}"),
        ("GET", "/schema/assets/{file_path:path}"),
        ("POST", "/api/v1/workflows/{workflow_id:str}/approve"),
        ("DELETE", "/api/v1/instances/{instance_id:str}"),
    ]
    assert route_of("GET", "/schema/openapi.json", routes) == ("GET", "/schema/openapi.json")
    assert route_of("GET", "/schema/elements", routes) == ("GET", "/schema/{path:str}")
    assert route_of("GET", "/schema/assets/js/a.js", routes) == ("GET", "/schema/assets/{file_path:path}")
    assert route_of("POST", "/api/v1/workflows/w-1/approve/extra", routes) is None
    assert route_of("GET", "/api/v1/instances/x", routes) is None
    calls = [("GET", "/schema/openapi.json"), ("POST", "/api/v1/workflows/w-1/approve")]
    assert uncovered_routes(routes, calls) == [
        ("GET", "/schema/{path:str}"),
        ("GET", "/schema/assets/{file_path:path}"),
        ("DELETE", "/api/v1/instances/{instance_id:str}"),
    ]
