"""docs/metrics.md keeps up with the engine adapters, so the mapping it documents cannot drift silently.

The approximations are read from the adapters' source (every `Approximation(field=..., formula=...)`
call), not from a list kept here: an adapter that starts approximating a new field, or names a new
wire series in a formula, fails until the doc's "Approximations" section describes it. Likewise
every family prefix an adapter `reads`, every gauge-combining rule and every snapshot field must
appear in the doc.
"""

from __future__ import annotations

import ast
import re

import msgspec
import pytest

from performance_agent.engines.base import GAUGE_COMBINE
from performance_agent.engines.registry import ADAPTERS
from performance_agent.metrics.snapshot import Errors, InstanceSnapshot, Latency, Load, Quantiles, Throughput
from tests.paths import REPO_ROOT

DOC = REPO_ROOT / "docs" / "metrics.md"
APPROXIMATION_SOURCES = (
    *sorted((REPO_ROOT / "performance_agent" / "engines").glob("*.py")),
    REPO_ROOT / "performance_agent" / "metrics" / "builder.py",
)
_WIRE_NAME = re.compile(r"(?:vllm:|sglang:|tgi_)[a-z_]+")
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def approximations_in(source: str) -> list[tuple[str, str]]:
    """(field, formula) of every `Approximation(...)` call whose arguments are literal strings."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Approximation"):
            continue
        arguments = {keyword.arg: keyword.value for keyword in node.keywords}
        field, formula = arguments.get("field"), arguments.get("formula")
        if not (isinstance(field, ast.Constant) and isinstance(formula, ast.Constant)):
            raise ValueError(f"Approximation without literal field and formula at line {node.lineno}")
        found.append((str(field.value), str(formula.value)))
    return found


def section(text: str, heading: str) -> str:
    """The body of a `### heading` up to the next heading of level 3 or higher."""
    start = text.index(f"\n### {heading}\n")
    end = len(text)
    for marker in ("\n## ", "\n### "):
        position = text.find(marker, start + 1)
        if position != -1:
            end = min(end, position)
    return text[start:end]


def undocumented_approximations(doc_text: str, approximations: list[tuple[str, str]]) -> list[str]:
    """Fields and wire names of `approximations` missing from the doc's Approximations section."""
    body = section(doc_text, "Approximations")
    missing = []
    for field, formula in approximations:
        if f"`{field}`" not in body:
            missing.append(field)
        missing.extend(f"{field}: {name}" for name in _WIRE_NAME.findall(formula) if name not in body)
    return missing


def all_approximations() -> list[tuple[str, str]]:
    found = []
    for path in APPROXIMATION_SOURCES:
        found.extend(approximations_in(path.read_text()))
    return found


def test_approximations_are_read_from_every_adapter() -> None:
    fields = {field for field, _ in all_approximations()}
    # One approximation per adapter at least, and the builder's composite TTFT: proof the scan sees them.
    assert {
        "latency.ttft_s",
        "latency.itl_s",
        "load.kv_cache_usage",
        "load.prefix_cache_hit_rate",
        "throughput.requests_per_s",
        "throughput.prompt_tokens_per_s",
        "throughput.generation_tokens_per_s",
    } <= fields


def test_every_approximation_is_documented() -> None:
    assert undocumented_approximations(DOC.read_text(), all_approximations()) == []


def test_a_new_approximation_fails_the_check() -> None:
    invented = [("load.requests_waiting", 'vllm:num_requests_waiting_by_reason{reason="capacity"} summed')]
    assert undocumented_approximations(DOC.read_text(), invented) == [
        "load.requests_waiting",
        "load.requests_waiting: vllm:num_requests_waiting_by_reason",
    ]


def test_a_formula_name_removed_from_the_doc_fails_the_check() -> None:
    text = DOC.read_text()
    body = section(text, "Approximations")
    pruned = text.replace(body, body.replace("tgi_batch_forward_duration", "tgi_forward"))
    assert undocumented_approximations(pruned, all_approximations()) == ["latency.itl_s: tgi_batch_forward_duration"]


def test_approximation_scan_rejects_computed_arguments() -> None:
    with pytest.raises(ValueError, match="line 1"):
        approximations_in('Approximation(field="latency.ttft_s", formula=make_formula())\n')


def test_every_family_an_adapter_reads_is_named() -> None:
    spans = _CODE_SPAN.findall(_FENCE.sub("", DOC.read_text()))
    missing = [
        f"{engine}: {prefix}"
        for engine, adapter in ADAPTERS.items()
        for prefix in adapter.reads
        if not any(prefix in span for span in spans)
    ]
    assert missing == []


def test_every_gauge_rule_is_in_the_rank_table() -> None:
    rows = [line for line in section(DOC.read_text(), "Reading a page").splitlines() if line.lstrip().startswith("|")]
    for key, rule in GAUGE_COMBINE.items():
        matching = [row for row in rows if f"`{key}`" in row]
        assert matching, key
        assert any(f"| {rule}" in row for row in matching), (key, rule)


def test_every_snapshot_field_is_in_the_field_table() -> None:
    text = DOC.read_text()
    start = text.index("\n## Snapshots\n")
    body = text[start : text.index("\n### ", start)]
    groups: dict[str, type[msgspec.Struct]] = {
        "latency": Latency,
        "throughput": Throughput,
        "load": Load,
        "errors": Errors,
    }
    missing = [
        field.name
        for field in msgspec.structs.fields(InstanceSnapshot)
        if field.name not in groups and f"`{field.name}`" not in body
    ]
    for group, struct in groups.items():
        if group != "latency":
            missing.extend(
                f"{group}.{field.name}"
                for field in msgspec.structs.fields(struct)
                if f"`{group}.{field.name}`" not in body
            )
    latency_keys = ",".join(field.name for field in msgspec.structs.fields(Latency))
    if f"`latency.{{{latency_keys}}}`" not in body:
        missing.append(f"latency.{{{latency_keys}}}")
    quantile_keys = ", ".join(field.name for field in msgspec.structs.fields(Quantiles))
    if f"`{{{quantile_keys}}}`" not in body:
        missing.append(f"{{{quantile_keys}}}")
    assert missing == []
