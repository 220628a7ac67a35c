"""Prometheus recording and alerting rules that compute the agent's SLO burn rates from the engines' series (pure).

Same judgement as `analysis.slo`, written in PromQL, per registered instance and objective:
1. `perf_agent:slo_sli`: the objective's figure over a short rate window (a quantile of the
   summed bucket increases, an error ratio, a token rate), from the engine's own series as the
   adapters name them (`engines.*.OBJECTIVE_SERIES`, generations joined with `or`, newest
   first). A window without traffic gives NaN, dropped by `>= 0`: no data is neither good nor bad.
2. `perf_agent:slo_window_bad`: 1 when that figure misses the target, else 0.
3. `perf_agent:slo_burn_rate{window}`: the bad share over each lookback divided by the allowed
   bad share (1 - target_ratio); `avg_over_time` of a 0/1 series evaluated at a steady interval
   is the bad share of time, as the agent weighs windows by their duration.
4. `PerformanceAgentSLOBurnRate` alerts for each multi-window pair, with the agent's labels
   (`alertname`, `instance_id`, `objective`, `long_window`, `short_window`, `severity`).
Series are selected by the `instance_id` label the agent's `http_sd` targets carry.

Why YAML is written by hand: every scalar is a JSON string (a JSON string is a valid YAML
double-quoted scalar, escapes included), and the structure is a fixed three levels deep, so a
YAML library would add a dependency without removing a risk. `promtool check rules` checks it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from performance_agent.analysis.alerts import ALERT_NAME
from performance_agent.analysis.slo import BURN_RATE_PAIRS, OBJECTIVES, BurnRatePair, format_lookback

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from performance_agent.engines.base import ObjectiveSeries, WireSeries
    from performance_agent.fleet.slo import SloTargets

__all__ = (
    "RATE_WINDOW",
    "GeneratedRules",
    "Rule",
    "RuleFile",
    "RuleGroup",
    "RuleSubject",
    "generate_rules",
    "objective_expression",
    "render_yaml",
    "rules_yaml",
)

#: The window each figure is computed over: two samples at scrape intervals up to 30 s.
RATE_WINDOW = "1m"
_QUANTILES: dict[str, tuple[str, float]] = {
    "ttft_p99_s": ("ttft_s", 0.99),
    "ttft_p95_s": ("ttft_s", 0.95),
    "itl_p99_s": ("itl_s", 0.99),
    "e2e_p99_s": ("e2e_s", 0.99),
}
_COMPARISONS = {objective.name: objective.comparison for objective in OBJECTIVES}


@dataclass(frozen=True, slots=True)
class RuleSubject:
    """A registered instance as the rules see it: which series and which targets."""

    instance_id: str
    engine: str
    targets: SloTargets


def _selector(instance_id: str, series: WireSeries, rank_zero: Sequence[str], suffix: str = "") -> str:
    matchers = [f'instance_id="{instance_id}"']
    if series.only is not None:
        label, values = series.only
        matchers.append(f'{label}=~"{"|".join(re.escape(v) for v in sorted(values))}"')
    # `=~"0|"` also matches series without the label (the page reader's rank-0 rule).
    matchers.extend(f'{label}=~"0|"' for label in rank_zero)
    return f"{series.name}{suffix}{{{','.join(matchers)}}}"


def _first_present(parts: Iterable[str]) -> str:
    """Generations newest first: `a or b` keeps `b` only where `a` has no series (the adapters' rule)."""
    joined = " or ".join(parts)
    return f"({joined})"


def _counter_rate(instance_id: str, generations: Sequence[WireSeries], rank_zero: Sequence[str]) -> str | None:
    if not generations:
        return None
    return _first_present(f"sum(rate({_selector(instance_id, g, rank_zero)}[{RATE_WINDOW}]))" for g in generations)


def objective_expression(objective: str, instance_id: str, series: ObjectiveSeries) -> str | None:
    """PromQL for the objective's figure on one instance, NaN-free; None when the engine has no such series."""
    rank_zero = series.rank_zero_labels
    if objective in _QUANTILES:
        concept, quantile = _QUANTILES[objective]
        generations: Sequence[WireSeries] = getattr(series, concept)
        if not generations:
            return None
        buckets = _first_present(
            f"sum by (le) (rate({_selector(instance_id, g, rank_zero, '_bucket')}[{RATE_WINDOW}]))" for g in generations
        )
        return f"histogram_quantile({quantile:g}, {buckets}) >= 0"
    if objective == "error_rate":
        failed = _counter_rate(instance_id, series.requests_failed, rank_zero)
        finished = _counter_rate(instance_id, series.requests_finished, rank_zero)
        if failed is None or finished is None:
            return None
        return f"{failed} / {finished} >= 0"
    if objective == "min_generation_tokens_per_s":
        rate = _counter_rate(instance_id, series.generation_tokens, rank_zero)
        return None if rate is None else f"{rate} >= 0"
    raise ValueError(f"unknown objective {objective!r}")


class Rule(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One recording (`record`) or alerting (`alert`) rule, as Prometheus's rule file spells it."""

    record: str | None = None
    alert: str | None = None
    expr: str
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    annotations: dict[str, str] = msgspec.field(default_factory=dict)


class RuleGroup(msgspec.Struct, kw_only=True):
    name: str
    rules: list[Rule]


class RuleFile(msgspec.Struct, kw_only=True):
    """A Prometheus rule file (`promtool check rules` format)."""

    groups: list[RuleGroup]


@dataclass(frozen=True, slots=True)
class GeneratedRules:
    """The rule file, and per group the objectives left out and why (written as YAML comments)."""

    file: RuleFile
    notes: dict[str, list[str]]


def _instance_rules(
    subject: RuleSubject, series: ObjectiveSeries, pairs: Sequence[BurnRatePair]
) -> tuple[list[Rule], list[str]]:
    rules: list[Rule] = []
    notes: list[str] = []
    targets = subject.targets
    allowed_bad = round(1.0 - targets.target_ratio, 12)  # 1 - 0.99 is 0.010000000000000009 in binary
    lookbacks = sorted({s for pair in pairs for s in (pair.long_s, pair.short_s)})
    for objective in OBJECTIVES:
        target: float | None = getattr(targets, objective.name)
        if target is None:
            continue
        own = {"instance_id": subject.instance_id, "objective": objective.name}
        matcher = f'{{instance_id="{subject.instance_id}",objective="{objective.name}"}}'
        expression = objective_expression(objective.name, subject.instance_id, series)
        if expression is None:
            notes.append(
                f"{objective.name}: no {subject.engine} series to compute it from (the agent approximates it)."
            )
            continue
        if allowed_bad <= 0:
            notes.append(f"{objective.name}: target_ratio 1 leaves no error budget to burn.")
            continue
        missed = ">" if _COMPARISONS[objective.name] == "<=" else "<"
        rules.append(Rule(record="perf_agent:slo_sli", expr=expression, labels=own))
        bad = f"perf_agent:slo_sli{matcher} {missed} bool {target!r}"
        rules.append(Rule(record="perf_agent:slo_window_bad", expr=bad, labels=own))
        for lookback in lookbacks:
            window = format_lookback(lookback)
            rules.append(
                Rule(
                    record="perf_agent:slo_burn_rate",
                    expr=f"avg_over_time(perf_agent:slo_window_bad{matcher}[{window}]) / {allowed_bad!r}",
                    labels={**own, "window": window},
                )
            )
        for pair in pairs:
            long_window, short_window = format_lookback(pair.long_s), format_lookback(pair.short_s)
            burning = " and ".join(
                f'max without (window) (perf_agent:slo_burn_rate{{instance_id="{subject.instance_id}",'
                f'objective="{objective.name}",window="{window}"}}) >= {pair.factor:g}'
                for window in (long_window, short_window)
            )
            rules.append(
                Rule(
                    alert=ALERT_NAME,
                    expr=burning,
                    # The series' own labels repeated: alerts differing only in their expression are
                    # duplicates to `promtool check rules`.
                    labels={**own, "long_window": long_window, "short_window": short_window, "severity": "page"},
                    annotations={
                        "summary": f"{objective.name} burns its error budget on {subject.instance_id}",
                        "description": (
                            f'Burn rate {{{{ $value | printf "%.2f" }}}}x over {long_window}, and over {short_window} '
                            f"at least {pair.factor:g}x (target {objective.comparison} {target:g})."
                        ),
                    },
                )
            )
    return rules, notes


def generate_rules(
    subjects: Iterable[RuleSubject],
    series: Mapping[str, ObjectiveSeries],
    pairs: Sequence[BurnRatePair] = BURN_RATE_PAIRS,
) -> GeneratedRules:
    """One group per instance (named after it), in the order given."""
    groups: list[RuleGroup] = []
    notes: dict[str, list[str]] = {}
    for subject in subjects:
        name = "performance-agent-slo-" + subject.instance_id
        rules, notes[name] = _instance_rules(subject, series[subject.engine], pairs)
        groups.append(RuleGroup(name=name, rules=rules))
    return GeneratedRules(RuleFile(groups=groups), notes)


def _scalar(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _mapping(lines: list[str], name: str, values: Mapping[str, str]) -> None:
    if values:
        lines.append(f"        {name}:")
        lines.extend(f"          {key}: {_scalar(value)}" for key, value in values.items())


def render_yaml(generated: GeneratedRules) -> str:
    """The rule file as YAML: block structure, every scalar a JSON (= YAML double-quoted) string."""
    lines = [
        "# Prometheus rules generated by performance-agent from its registered SLO objectives.",
        "# Series are selected by the instance_id label of the agent's http_sd targets.",
    ]
    if not generated.file.groups:
        return "\n".join([*lines, "groups: []"]) + "\n"
    lines.append("groups:")
    for group in generated.file.groups:
        lines.append(f"  - name: {_scalar(group.name)}")
        lines.extend(f"    # {note}" for note in generated.notes.get(group.name, []))
        if not group.rules:
            lines.append("    rules: []")
            continue
        lines.append("    rules:")
        for rule in group.rules:
            kind, name = ("record", rule.record) if rule.record is not None else ("alert", rule.alert)
            lines.append(f"      - {kind}: {_scalar(name or '')}")
            lines.append(f"        expr: {_scalar(rule.expr)}")
            _mapping(lines, "labels", rule.labels)
            _mapping(lines, "annotations", rule.annotations)
    return "\n".join(lines) + "\n"


def rules_yaml(
    subjects: Iterable[RuleSubject],
    series: Mapping[str, ObjectiveSeries],
    pairs: Sequence[BurnRatePair] = BURN_RATE_PAIRS,
) -> str:
    """The rule file for `subjects` as YAML."""
    return render_yaml(generate_rules(subjects, series, pairs))
