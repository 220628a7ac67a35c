"""The rollout documentation generated from the live state machine, so docs/rollout.md cannot drift from it.

The diagram reads the transitions the `Machine` object actually holds (not a second hand-kept
list), and a unit test fails when the committed document differs from what this module renders.
Regenerate with:

    python -c "from performance_agent.workflows.diagram import main; raise SystemExit(main())"

or check without writing by passing `--check` (`python -m performance_agent.workflows.diagram --check`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from performance_agent.workflows.machine import (
    TERMINAL_STATUSES,
    WORKFLOW_MACHINE,
    WorkflowStatus,
    allowed_actions,
    initial_status,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from transitions import Machine

__all__ = (
    "DEFAULT_DOC_PATH",
    "Edge",
    "allowed_actions_table",
    "machine_edges",
    "main",
    "mermaid_state_diagram",
    "regenerate_document",
    "replace_generated_block",
)

DEFAULT_DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "rollout.md"
STATE_DIAGRAM_BLOCK = "state-diagram"
ALLOWED_ACTIONS_BLOCK = "allowed-actions"


@dataclass(frozen=True, slots=True)
class Edge:
    source: WorkflowStatus
    dest: WorkflowStatus
    trigger: str
    conditions: tuple[str, ...]

    @property
    def label(self) -> str:
        guard = f" [{' & '.join(self.conditions)}]" if self.conditions else ""
        return f"{self.trigger}{guard}"


def _condition_name(func: object) -> str:
    name = func if isinstance(func, str) else getattr(func, "__name__", repr(func))
    return str(name).lstrip("_")


def machine_edges(machine: Machine = WORKFLOW_MACHINE) -> list[Edge]:
    """Every (source, trigger, destination) the machine accepts, in status order, then definition order."""
    order = {status: position for position, status in enumerate(WorkflowStatus)}
    edges: list[Edge] = []
    for trigger, event in machine.events.items():
        for source_name, transitions in event.transitions.items():
            for transition in transitions:
                if transition.dest is None:
                    raise ValueError(f"internal transition {trigger!r} from {source_name} cannot be drawn")
                conditions = tuple(
                    _condition_name(c.func) if c.target else f"!{_condition_name(c.func)}"
                    for c in transition.conditions
                )
                edges.append(Edge(WorkflowStatus[source_name], WorkflowStatus[transition.dest], trigger, conditions))
    return sorted(edges, key=lambda edge: (order[edge.source], order[edge.dest]))


def mermaid_state_diagram(machine: Machine = WORKFLOW_MACHINE) -> str:
    """A mermaid `stateDiagram-v2` in the notation of transitions' own mermaid engine.

    Parallel edges between two statuses share one arrow with labels joined by ' | '; guards appear
    as `[a & !b]`.
    """
    lines = ["stateDiagram-v2", "  direction LR"]
    lines.append(f"  [*] --> {initial_status(approval_required=True)}: created with approval.required")
    lines.append(f"  [*] --> {initial_status(approval_required=False)}: created without approval")
    grouped: dict[tuple[WorkflowStatus, WorkflowStatus], list[str]] = {}
    for edge in machine_edges(machine):
        grouped.setdefault((edge.source, edge.dest), []).append(edge.label)
    for (source, dest), labels in grouped.items():
        lines.append(f"  {source} --> {dest}: {' | '.join(labels)}")
    terminal = [status for status in WorkflowStatus if status in TERMINAL_STATUSES]
    lines.extend(f"  {status} --> [*]" for status in terminal)
    lines.append("  classDef terminal font-weight:bold,stroke-width:3px")
    lines.append(f"  class {','.join(terminal)} terminal")
    return "\n".join(lines) + "\n"


def allowed_actions_table() -> str:
    """Markdown table of the user actions each status accepts (the list a 409 response carries)."""
    rows = ["| status | terminal | user actions accepted |", "|---|---|---|"]
    for status in WorkflowStatus:
        actions = ", ".join(f"`{action}`" for action in allowed_actions(status)) or "none"
        rows.append(f"| `{status}` | {'yes' if status in TERMINAL_STATUSES else 'no'} | {actions} |")
    return "\n".join(rows) + "\n"


def replace_generated_block(document: str, block: str, content: str) -> str:
    """Swap what lies between the block's BEGIN/END markers, leaving hand-written prose alone."""
    begin = f"<!-- BEGIN GENERATED: {block} -->"
    end = f"<!-- END GENERATED: {block} -->"
    if document.count(begin) != 1 or document.count(end) != 1:
        raise ValueError(f"expected exactly one {begin!r} and one {end!r} marker")
    head, rest = document.split(begin)
    if end not in rest:
        raise ValueError(f"{end!r} must come after {begin!r}")
    _, tail = rest.split(end)
    return f"{head}{begin}\n{content.rstrip(chr(10))}\n{end}{tail}"


def regenerate_document(document: str) -> str:
    with_diagram = replace_generated_block(document, STATE_DIAGRAM_BLOCK, f"```mermaid\n{mermaid_state_diagram()}```")
    return replace_generated_block(with_diagram, ALLOWED_ACTIONS_BLOCK, allowed_actions_table())


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite the generated blocks of docs/rollout.md; with --check, only report drift (exit status 1)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_DOC_PATH)
    parser.add_argument("--check", action="store_true", help="fail instead of writing when the document drifted")
    args = parser.parse_args(argv)
    path: Path = args.path
    current = path.read_text(encoding="utf-8")
    expected = regenerate_document(current)
    if current == expected:
        print(f"{path}: up to date")
        return 0
    if args.check:
        print(f"{path}: generated blocks are stale; run without --check to rewrite them", file=sys.stderr)
        return 1
    path.write_text(expected, encoding="utf-8")
    print(f"{path}: rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
