"""docs/rollout.md is generated from the machine: drift fails here, and the generator itself is checked."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from transitions import Machine

from performance_agent.workflows.diagram import (
    DEFAULT_DOC_PATH,
    Edge,
    allowed_actions_table,
    machine_edges,
    main,
    mermaid_state_diagram,
    regenerate_document,
    replace_generated_block,
)
from performance_agent.workflows.machine import WORKFLOW_MACHINE, UserAction, WorkflowStatus

if TYPE_CHECKING:
    from pathlib import Path

S = WorkflowStatus
DOC_SKELETON = """# Title

Hand-written prose stays.

<!-- BEGIN GENERATED: allowed-actions -->
stale table
<!-- END GENERATED: allowed-actions -->

Between the blocks.

<!-- BEGIN GENERATED: state-diagram -->
stale diagram
<!-- END GENERATED: state-diagram -->

Trailing prose.
"""


def test_committed_document_matches_the_machine() -> None:
    committed = DEFAULT_DOC_PATH.read_text(encoding="utf-8")
    assert regenerate_document(committed) == committed, (
        "docs/rollout.md drifted from the state machine; regenerate it with "
        '`python -c "from performance_agent.workflows.diagram import main; raise SystemExit(main())"`'
    )


def test_committed_document_names_every_trigger_in_its_prose() -> None:
    committed = DEFAULT_DOC_PATH.read_text(encoding="utf-8")
    prose = replace_generated_block(committed, "state-diagram", "")
    prose = replace_generated_block(prose, "allowed-actions", "")
    api_spelling = {action.trigger: action.value for action in UserAction}
    for trigger in WORKFLOW_MACHINE.events:
        assert f"`{api_spelling.get(trigger, trigger)}`" in prose, f"{trigger} is not explained in docs/rollout.md"


def test_diagram_draws_the_contract_edges() -> None:
    lines = mermaid_state_diagram().splitlines()
    assert lines[:2] == ["stateDiagram-v2", "  direction LR"]
    for expected in [
        "  [*] --> pending_approval: created with approval.required",
        "  [*] --> capturing_baseline: created without approval",
        "  pending_approval --> cancelled: abort | cancel | approval_timeout",
        "  monitoring --> completed: analysis_passed [is_last_stage]",
        "  monitoring --> awaiting_approval: analysis_passed [next_stage_gated]",
        "  monitoring --> applying: analysis_passed [next_stage_ungated]",
        "  awaiting_approval --> rolling_back: reject | abort | analysis_failed | approval_timeout",
        "  paused --> rolling_back: abort | analysis_failed",
        "  rolling_back --> rolling_back: rollback_step_done [has_changed_instances]",
        "  rolling_back --> rolled_back: rollback_complete [nothing_left_changed]",
        "  failed --> rolling_back: retry_rollback",
        "  completed --> [*]",
        "  class rejected,cancelled,rolled_back,completed terminal",
    ]:
        assert expected in lines
    for terminal in ["rejected", "cancelled", "rolled_back", "completed"]:
        assert not any(line.startswith(f"  {terminal} --> ") and "[*]" not in line for line in lines)
    assert "  failed --> [*]" not in lines


def test_every_machine_transition_becomes_an_edge() -> None:
    edges = machine_edges()
    transitions = [
        (WorkflowStatus[source], trigger, WorkflowStatus[str(transition.dest)])
        for trigger, event in WORKFLOW_MACHINE.events.items()
        for source, listed in event.transitions.items()
        for transition in listed
    ]
    assert sorted((edge.source, edge.trigger, edge.dest) for edge in edges) == sorted(transitions)
    # 32 + abort from failed + the A/A pause (baseline_suspect) and its resume to a new baseline
    assert len(edges) == 35


def test_allowed_actions_table_lists_api_spellings() -> None:
    table = allowed_actions_table().splitlines()
    assert table[0] == "| status | terminal | user actions accepted |"
    assert "| `failed` | no | `abort`, `retry-rollback` |" in table
    assert "| `completed` | yes | none |" in table
    assert "| `monitoring` | no | `abort`, `pause` |" in table
    assert len(table) == 2 + len(WorkflowStatus)


def ready(_: object) -> bool:
    return True


def blocked(_: object) -> bool:
    return False


def test_a_changed_machine_changes_the_diagram() -> None:
    toy = Machine(
        model=None,
        states=list(WorkflowStatus),
        transitions=[
            {"trigger": "promote", "source": S.PAUSED, "dest": S.COMPLETED, "conditions": [ready], "unless": [blocked]},
            {"trigger": "nudge", "source": S.PAUSED, "dest": S.COMPLETED, "conditions": "is_ready"},
        ],
        initial=None,
        auto_transitions=False,
        send_event=True,
    )
    assert machine_edges(toy) == [
        Edge(S.PAUSED, S.COMPLETED, "promote", ("ready", "!blocked")),
        Edge(S.PAUSED, S.COMPLETED, "nudge", ("is_ready",)),
    ]
    diagram = mermaid_state_diagram(toy)
    assert "  paused --> completed: promote [ready & !blocked] | nudge [is_ready]" in diagram.splitlines()
    assert diagram != mermaid_state_diagram()


def test_internal_transitions_cannot_be_drawn() -> None:
    toy = Machine(
        model=None,
        states=list(WorkflowStatus),
        transitions=[{"trigger": "tick", "source": S.MONITORING, "dest": None}],
        initial=None,
        auto_transitions=False,
    )
    with pytest.raises(ValueError, match="internal transition 'tick' from MONITORING cannot be drawn"):
        machine_edges(toy)


def test_regenerate_keeps_prose_and_is_idempotent() -> None:
    once = regenerate_document(DOC_SKELETON)
    assert "stale" not in once
    for prose in ["# Title\n\nHand-written prose stays.\n\n", "\n\nBetween the blocks.\n\n", "\n\nTrailing prose.\n"]:
        assert prose in once
    assert f"<!-- BEGIN GENERATED: state-diagram -->\n```mermaid\n{mermaid_state_diagram()}```\n" in once
    assert regenerate_document(once) == once


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("no markers at all", "expected exactly one"),
        ("<!-- BEGIN GENERATED: x -->\n<!-- BEGIN GENERATED: x -->\n<!-- END GENERATED: x -->", "expected exactly one"),
        ("<!-- BEGIN GENERATED: x -->\nonly a beginning", "expected exactly one"),
        ("<!-- END GENERATED: x -->\n<!-- BEGIN GENERATED: x -->", "must come after"),
    ],
)
def test_replace_generated_block_refuses_broken_markers(document: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace_generated_block(document, "x", "content")


def test_replace_generated_block_touches_only_its_block() -> None:
    document = "a\n<!-- BEGIN GENERATED: x -->\nold\n<!-- END GENERATED: x -->\nb\n"
    assert replace_generated_block(document, "x", "new\n\n") == (
        "a\n<!-- BEGIN GENERATED: x -->\nnew\n<!-- END GENERATED: x -->\nb\n"
    )


def test_main_checks_and_rewrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "rollout.md"
    doc.write_text(DOC_SKELETON, encoding="utf-8")
    assert main([str(doc), "--check"]) == 1
    assert doc.read_text(encoding="utf-8") == DOC_SKELETON
    assert "stale" in capsys.readouterr().err
    assert main([str(doc)]) == 0
    assert doc.read_text(encoding="utf-8") == regenerate_document(DOC_SKELETON)
    assert "rewritten" in capsys.readouterr().out
    assert main([str(doc), "--check"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_main_checks_the_committed_document_by_default() -> None:
    assert main(["--check"]) == 0


@pytest.mark.e2e
def test_module_entry_point_checks_the_document() -> None:
    repo = DEFAULT_DOC_PATH.parents[1]
    finished = subprocess.run(
        [sys.executable, "-m", "performance_agent.workflows.diagram", "--check"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == f"{DEFAULT_DOC_PATH}: up to date"
