"""`make bench`: run every benchmark, print each figure, and write docs/benchmarks.md.

Every figure is recorded with the command that produced it and the machine it ran on, because
figures from a shared 2-core machine mean little without that context.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from tests.bench.figures import Figure, render_section
from tests.paths import REPO_ROOT

REPORT = REPO_ROOT / "docs" / "benchmarks.md"

#: Benchmark modules, each exposing `run() -> list[Figure]`, in the order they are reported.
BENCHMARKS = (
    "tests.bench.http_bench",
    "tests.bench.scrape_bench",
    "tests.bench.collection_bench",
    "tests.bench.prometheus_bench",
    "tests.bench.demo_bench",
    "tests.bench.analysis_bench",
    "tests.bench.rollout_bench",
    "tests.bench.replica_bench",
)


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    sha = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT, check=False
    ).stdout.strip()
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, git {sha or 'unknown'}"


def _render(figures: list[Figure], machine: str) -> str:
    lines = [
        "# Benchmarks",
        "",
        "<!-- Written by `make bench` (tests/bench/run_all.py); rerun it to refresh. -->",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine}. The machine is shared and",
        "noisy, so each comparison is measured side by side in one run (alternating the two sides) and",
        "only ratios are held to targets; absolute numbers are for orientation.",
        "",
    ]
    return "\n".join(lines) + "\n" + render_section(figures)


def _kept_sections() -> str:
    """Sections other tools write into the report (between their markers) survive a rerun."""
    text = REPORT.read_text() if REPORT.exists() else ""
    kept = []
    for start, end in (
        ("<!-- http-overhead:start -->", "<!-- http-overhead:end -->"),
        ("<!-- judge-eval:start -->", "<!-- judge-eval:end -->"),
    ):
        if start in text and end in text:
            kept.append(start + text.split(start, 1)[1].split(end, 1)[0] + end)
    return "".join(f"\n{section}\n" for section in kept)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", action="append", help="run only benchmark modules containing this text")
    parser.add_argument("--no-write", action="store_true", help="print figures without writing docs/benchmarks.md")
    args = parser.parse_args(argv)
    figures: list[Figure] = []
    for module_name in BENCHMARKS:
        if args.only and not any(part in module_name for part in args.only):
            continue
        print(f"== {module_name}", flush=True)
        for figure in importlib.import_module(module_name).run():
            met = "" if figure.met is None else ("  [met]" if figure.met else "  [NOT MET]")
            print(f"  {figure.name}: {figure.value}  (target {figure.target}){met}", flush=True)
            figures.append(figure)
    if not args.no_write:
        REPORT.write_text(_render(figures, _machine()) + _kept_sections())
        print(f"wrote {REPORT.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
