"""`make eval-judge`: false rollbacks and detection of the canary judge on simulated rollouts.

Every workflow runs the product code a default workflow on vLLM runs: `plan_margins` with the
default `Tolerances` and `JudgeSettings` (K = 7, threshold 200), `aa_check` on the baseline
capture, then `judge_window` + `decide_stage` every window, the evidence carried across stages.
Seeded and deterministic; cells run in parallel processes. `--write` puts the table into
docs/benchmarks.md between the judge-eval markers.
"""

from __future__ import annotations

import argparse
import random
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from performance_agent.judge import (
    JudgeSettings,
    JudgeState,
    Tolerances,
    aa_check,
    decide_stage,
    judge_window,
    merge_cohorts,
    plan_margins,
)
from tests.eval.judge_sim import SHAPES, TTFT_EDGES, Shape, cohort_window
from tests.paths import REPO_ROOT

__all__ = ("CELLS", "Cell", "CellResult", "main", "render", "run_cell", "run_cells")

INSTANCES = 10
STAGES = (10, 50, 100)
DURATION_S, WARMUP_S, INTERVAL_S = 300.0, 60.0, 15.0
SCENARIOS = (
    ("identical", 1.0, False),
    ("jitter", 1.0, True),
    ("1.5x", 1.5, False),
    ("2x", 2.0, False),
    ("4x", 4.0, False),
)
RATES = (120.0, 15.0)
WORKFLOWS = 1000
REPORT = REPO_ROOT / "docs" / "benchmarks.md"
START, END = "<!-- judge-eval:start -->", "<!-- judge-eval:end -->"


@dataclass(frozen=True, slots=True)
class Cell:
    shape: Shape
    rate: float
    scenario: str
    slowdown: float
    jitter: bool
    workflows: int
    seed: int


@dataclass(frozen=True, slots=True)
class CellResult:
    cell: Cell
    rolled_back: int
    within_two: int
    in_stage_zero: int
    before_last: int
    paused: int
    completed: int
    aa_paused: int
    delays: tuple[int, ...]

    def share(self, count: int) -> float:
        return count / self.cell.workflows


def _stage_cohorts(percent: int) -> tuple[int, int]:
    canary = INSTANCES * percent // 100
    return canary, INSTANCES - canary


def _run_workflow(
    cell: Cell, rng: random.Random, settings: JudgeSettings, tolerances: Tolerances
) -> tuple[str, int, int]:
    """(outcome, stage index, windows since the apply) with outcome rollback|pause|complete|aa_pause."""

    def load() -> float:
        return 1.0 + rng.uniform(-0.1, 0.1) if cell.jitter else 1.0

    factor = load()
    first = cohort_window(rng, cell.shape, list(TTFT_EDGES), instances=1, rate=cell.rate * factor, slowdown=factor)
    rest = cohort_window(
        rng, cell.shape, list(TTFT_EDGES), instances=INSTANCES - 1, rate=cell.rate * factor, slowdown=factor
    )
    baseline = merge_cohorts([first, rest])
    plan = plan_margins(baseline, tolerances, settings)
    if not aa_check(first, rest, plan).passed:
        return "aa_pause", 0, 0
    edges = sorted({edge.edge for metric in plan.metrics for edge in metric.edges})
    state, windows = JudgeState(), 0
    for stage_index, percent in enumerate(STAGES):
        canary_instances, control_instances = _stage_cohorts(percent)
        now, served = WARMUP_S, 0.0
        while True:
            now += INTERVAL_S
            factor = load()
            canary = cohort_window(
                rng,
                cell.shape,
                edges,
                instances=canary_instances,
                rate=cell.rate * factor,
                slowdown=factor * cell.slowdown,
            )
            control = None
            if control_instances:
                control = cohort_window(
                    rng, cell.shape, edges, instances=control_instances, rate=cell.rate * factor, slowdown=factor
                )
            state, judgement = judge_window(state, plan, canary, control)
            windows += 1
            served += canary.requests
            step = decide_stage(
                judgement,
                now=now,
                stage_deadline=DURATION_S,
                stage_duration_s=DURATION_S,
                stage_canary_requests=served,
                settings=settings,
            )
            if step.step == "rollback":
                return "rollback", stage_index, windows
            if step.step == "pause":
                return "pause", stage_index, windows
            if step.step == "advance":
                break
    return "complete", len(STAGES) - 1, windows


def run_cell(cell: Cell) -> CellResult:
    rng = random.Random(cell.seed)
    settings, tolerances = JudgeSettings(), Tolerances()
    tally = dict.fromkeys(
        ("rolled_back", "within_two", "in_stage_zero", "before_last", "paused", "completed", "aa_paused"), 0
    )
    delays = []
    for _ in range(cell.workflows):
        outcome, stage, windows = _run_workflow(cell, rng, settings, tolerances)
        if outcome == "rollback":
            tally["rolled_back"] += 1
            tally["within_two"] += windows <= 2
            tally["in_stage_zero"] += stage == 0
            tally["before_last"] += stage < len(STAGES) - 1
            delays.append(windows)
        else:
            tally[{"pause": "paused", "complete": "completed", "aa_pause": "aa_paused"}[outcome]] += 1
    return CellResult(cell=cell, delays=tuple(sorted(delays)), **tally)


def cells(workflows: int = WORKFLOWS) -> list[Cell]:
    found = []
    for shape_index, shape in enumerate(SHAPES):
        for rate_index, rate in enumerate(RATES):
            for scenario_index, (scenario, slowdown, jitter) in enumerate(SCENARIOS):
                seed = 1000 * shape_index + 100 * rate_index + scenario_index
                found.append(Cell(shape, rate, scenario, slowdown, jitter, workflows, seed))
    return found


CELLS = cells()


def run_cells(selected: list[Cell], processes: int = 2, *, progress: bool = False) -> list[CellResult]:
    """Cells in parallel (each one seeded on its own, so the result does not depend on the order)."""
    ordered = sorted(selected, key=lambda cell: cell.slowdown)  # slow cells first: better packing
    if processes <= 1:
        results = [run_cell(cell) for cell in ordered]
    else:
        with ProcessPoolExecutor(max_workers=processes) as pool:
            results = []
            for result in pool.map(run_cell, ordered, chunksize=1):
                results.append(result)
                if progress:
                    print(render([result]).splitlines()[-1], file=sys.stderr, flush=True)
    index = {cell.seed: position for position, cell in enumerate(selected)}
    return sorted(results, key=lambda result: index[result.cell.seed])


def target(result: CellResult) -> tuple[str, bool | None]:
    """The issue's target for this cell, and whether it is met (None: reported only)."""
    rate, scenario = result.cell.rate, result.cell.scenario
    share = result.share
    if scenario == "identical":
        if rate >= 100:
            return "rolled back <= 1%, completed >= 99%", share(result.rolled_back) <= 0.01 and share(
                result.completed
            ) >= 0.99
        return "rolled back <= 1%", share(result.rolled_back) <= 0.01
    if scenario == "jitter":
        return "rolled back <= 2%", share(result.rolled_back) <= 0.02
    if scenario in ("2x", "4x") and rate >= 100:
        return "within 2 windows >= 99%", share(result.within_two) >= 0.99
    if scenario in ("2x", "4x"):
        return "rolled back in stage 0 >= 99%", share(result.in_stage_zero) >= 0.99
    if rate >= 100:
        return "before the last stage >= 95%", share(result.before_last) >= 0.95
    return "reported", None


def _median(values: tuple[int, ...]) -> str:
    return "-" if not values else str(values[len(values) // 2])


def render(results: list[CellResult]) -> str:
    lines = [
        "| shape | canary req/window (stage 0) | scenario | workflows | rolled back | within 2 windows | in stage 0 "
        "| before last stage | paused | completed | A/A paused | median windows to rollback | target | met |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        cell = result.cell
        goal, met = target(result)
        figures = [
            result.rolled_back,
            result.within_two,
            result.in_stage_zero,
            result.before_last,
            result.paused,
            result.completed,
            result.aa_paused,
        ]
        shares = " | ".join(f"{result.share(count):.1%}" for count in figures)
        verdict = "-" if met is None else ("yes" if met else "**no**")
        head = f"| {cell.shape.name} | {cell.rate:g} | {cell.scenario} | {cell.workflows}"
        lines.append(f"{head} | {shares} | {_median(result.delays)} | {goal} | {verdict} |")
    return "\n".join(lines)


def write_report(table: str, path: Path = REPORT) -> None:
    """Replace (or append) the marked judge-eval section of docs/benchmarks.md."""
    section = "\n".join(
        [START, "## Canary judge (`make eval-judge`, tests/eval/judge_eval.py)", "", _DESIGN, "", table, END]
    )
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


_DESIGN = (
    "Simulated vLLM TTFT bucket counts (Poisson arrivals), 10 instances, stages 10/50/100% "
    "(1/9, 5/5, 10/0 canary/control instances; the canary's traffic grows with its share, the 100% stage is "
    "judged against the pre-rollout baseline, one 15 s window of all instances), 16 judged windows per stage "
    "counted from the first full window after the apply (300 s stages, 60 s warm-up, 15 s windows), up to 20 "
    "more while the canary has served fewer than 1000 requests in the stage. Production defaults: "
    "`Tolerances()` and `JudgeSettings()` (alpha 0.05, K = 7 metrics, threshold 200). Jitter: each window "
    "scales both cohorts' traffic and latency by 1 + U(-0.1, 0.1). Errors 0.2% and 0.01 preemptions per request "
    "in both cohorts. Shapes: lognormal median 60 ms sigma 0.5; median 250 ms sigma 0.8; 93% lognormal median "
    "200 ms sigma 0.5 + 7% six times slower. With 1000 workflows per cell, 0 rollbacks bound the true rate "
    "below 0.3% (95%, one-sided)."
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workflows", type=int, default=WORKFLOWS, help="simulated workflows per cell")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="write the table into docs/benchmarks.md")
    args = parser.parse_args(argv)
    results = run_cells(cells(args.workflows), args.processes, progress=True)
    table = render(results)
    print(table)
    if args.write:
        write_report(table)
        print(f"wrote {REPORT}")
    missed = [result for result in results if target(result)[1] is False]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
