"""Run the labelled scenario suite and score the detectors: `python -m tests.eval.suite` (or `make eval`).

Prints precision and recall per bottleneck type (a finding counts when its severity is above
`low`), the excluded engine x type pairs, every misclassified variant, and whether the planner's
first recommendation addresses the bottleneck of each single-bottleneck variant. Exits non-zero
when any precision or recall is below 0.9 or a first recommendation misses its bottleneck.
Variants run in worker processes (one per core); time is simulated, so nothing sleeps.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from performance_agent.analysis.schemas import BOTTLENECK_TYPES
from tests.eval.scenarios import EXCLUDED, SCENARIOS, Outcome, run_variant

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("MIN_SCORE", "VARIANTS", "Score", "SuiteResult", "main", "run_suite", "score")

VARIANTS = 10
MIN_SCORE = 0.9


@dataclass(slots=True)
class Score:
    true_positive: int = 0
    false_positive: int = 0
    false_negative: int = 0

    @property
    def precision(self) -> float | None:
        predicted = self.true_positive + self.false_positive
        return self.true_positive / predicted if predicted else None

    @property
    def recall(self) -> float | None:
        actual = self.true_positive + self.false_negative
        return self.true_positive / actual if actual else None


@dataclass(slots=True)
class SuiteResult:
    outcomes: list[Outcome]
    scores: dict[str, Score]
    misclassified: list[Outcome] = field(default_factory=list)
    planner_misses: list[Outcome] = field(default_factory=list)
    planner_checked: int = 0

    @property
    def failures(self) -> list[str]:
        problems = []
        for bottleneck, tally in self.scores.items():
            for name, value in (("precision", tally.precision), ("recall", tally.recall)):
                if value is None:
                    problems.append(f"{bottleneck}: no {name} (no labelled or detected case)")
                elif value < MIN_SCORE:
                    problems.append(f"{bottleneck}: {name} {value:.3f} < {MIN_SCORE}")
        problems += [
            f"{o.scenario}/{o.engine}/v{o.variant}: first recommendation {o.first_recommendation} "
            f"addresses {o.first_addresses}"
            for o in self.planner_misses
        ]
        return problems


def score(outcomes: Sequence[Outcome]) -> SuiteResult:
    scores: dict[str, Score] = {bottleneck: Score() for bottleneck in BOTTLENECK_TYPES}
    result = SuiteResult(outcomes=list(outcomes), scores=scores)
    for outcome in outcomes:
        labels, detected = set(outcome.labels), set(outcome.detected)
        for bottleneck in BOTTLENECK_TYPES:
            if (outcome.engine, bottleneck) in EXCLUDED:
                continue
            if bottleneck in labels and bottleneck in detected:
                scores[bottleneck].true_positive += 1
            elif bottleneck in detected:
                scores[bottleneck].false_positive += 1
            elif bottleneck in labels:
                scores[bottleneck].false_negative += 1
        if labels != detected:
            result.misclassified.append(outcome)
        if len(outcome.labels) == 1 and outcome.labels[0] in detected:
            result.planner_checked += 1
            if outcome.labels[0] not in outcome.first_addresses:
                result.planner_misses.append(outcome)
    return result


def run_suite(variants: int = VARIANTS, workers: int | None = None) -> SuiteResult:
    jobs = [(s.name, engine, v) for s in SCENARIOS for engine in s.engines for v in range(variants)]
    workers = workers if workers is not None else max(os.cpu_count() or 1, 1)
    if workers == 1:
        outcomes = [run_variant(*job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            outcomes = list(pool.map(run_variant, *zip(*jobs, strict=True), chunksize=4))
    return score(outcomes)


def _severities(outcomes: list[Outcome], bottleneck: str) -> str:
    counts = Counter(o.severities.get(bottleneck, "missed") for o in outcomes)
    order = ("missed", "medium", "high", "critical")
    return " ".join(f"{name}:{counts[name]}" for name in order if counts[name])


def _format(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:5.3f}"


def report(result: SuiteResult, elapsed_s: float) -> str:
    lines = [f"scenario suite: {len(result.outcomes)} variants in {elapsed_s:.1f} s", ""]
    lines.append(f"{'bottleneck':<20} {'precision':>9} {'recall':>7} {'TP':>4} {'FP':>4} {'FN':>4}")
    for bottleneck, tally in result.scores.items():
        lines.append(
            f"{bottleneck:<20} {_format(tally.precision):>9} {_format(tally.recall):>7} "
            f"{tally.true_positive:>4} {tally.false_positive:>4} {tally.false_negative:>4}"
        )
    lines += ["", "severity of the labelled findings (near-threshold variants | far variants):"]
    for scenario in SCENARIOS:
        for engine in scenario.engines:
            runs = [o for o in result.outcomes if o.scenario == scenario.name and o.engine == engine]
            for bottleneck in sorted(scenario.labels):
                near = _severities([o for o in runs if o.variant % 2 == 0], bottleneck)
                far = _severities([o for o in runs if o.variant % 2 == 1], bottleneck)
                lines.append(f"  {scenario.name:<22} {engine:<6} {bottleneck:<18} {near:<28} | {far}")
    lines += ["", "excluded engine x type pairs (no signal; neither labelled nor scored):"]
    lines += [f"  {engine} x {bottleneck}: {why}" for (engine, bottleneck), why in EXCLUDED.items()]
    skipped = [s for s in SCENARIOS if s.why_not]
    lines += [f"  scenario {s.name} not run for {s.why_not}" for s in skipped]
    lines += ["", f"planner: first recommendation checked on {result.planner_checked} single-bottleneck variants, "
              f"{len(result.planner_misses)} missed"]  # fmt: skip
    if result.misclassified:
        lines += ["", "misclassified variants (labels -> detected):"]
        lines += [
            f"  {o.scenario}/{o.engine}/v{o.variant} (m={o.magnitude}): {o.labels} -> {o.detected}"
            for o in result.misclassified
        ]
    failures = result.failures
    lines += ["", "FAIL:\n  " + "\n  ".join(failures) if failures else "PASS: every precision and recall >= 0.9"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--variants", type=int, default=VARIANTS, help="variants per scenario and engine")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = run_suite(args.variants, args.workers)
    print(report(result, time.perf_counter() - started))
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
