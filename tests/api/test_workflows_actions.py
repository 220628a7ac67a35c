"""Every human action in every status, through the API; and two concurrent actions on one workflow.

The expected table is written out from issue 5 §6 (and the user actions of docs/rollout.md where the
issue is silent), not derived from the machine, so a drift in either shows up here. Workflows are put into
each status by writing their stored document, as the reconciler would have left it.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING, Any

import pytest
from litestar.testing import TestClient

from performance_agent.app import create_app
from performance_agent.errors import ConflictError
from performance_agent.storage.workflows import SqlWorkflowRepository
from performance_agent.workflows.cohorts import stage_target_count
from performance_agent.workflows.machine import UserAction, WorkflowStatus
from performance_agent.workflows.ports import VersionConflict
from performance_agent.workflows.state import WorkflowDoc
from tests.api.test_workflows import HOOK, WORKFLOWS, register
from tests.conftest import assert_envelope, make_settings

if TYPE_CHECKING:
    from collections.abc import Iterator

    from litestar import Litestar

S = WorkflowStatus
INSTANCES = 4
GATES = [2]

#: status -> {action: resulting status}; any action not listed must be a 409 invalid_transition.
EXPECTED: dict[WorkflowStatus, dict[str, str]] = {
    S.PENDING_APPROVAL: {
        "approve": "capturing_baseline",
        "reject": "rejected",
        "abort": "cancelled",
        "cancel": "cancelled",
    },
    S.REJECTED: {},
    S.CANCELLED: {},
    S.CAPTURING_BASELINE: {"abort": "cancelled", "cancel": "cancelled"},
    S.APPLYING: {"abort": "rolling_back"},
    S.MONITORING: {"abort": "rolling_back", "pause": "paused"},
    S.AWAITING_APPROVAL: {
        "approve": "applying",
        "reject": "rolling_back",
        "abort": "rolling_back",
        "pause": "paused",
    },
    S.PAUSED: {"abort": "rolling_back", "resume": "monitoring"},
    S.ROLLING_BACK: {},
    S.ROLLED_BACK: {},
    S.COMPLETED: {},
    S.FAILED: {"retry-rollback": "rolling_back", "abort": "rolled_back"},
}
_STAGE_OF = {S.COMPLETED: 2}
_UNCHANGED = {S.PENDING_APPROVAL, S.REJECTED, S.CANCELLED, S.CAPTURING_BASELINE, S.ROLLED_BACK}


def force(client: TestClient[Litestar], workflow_id: str, status: WorkflowStatus) -> None:
    """Rewrite the stored workflow as if the reconciler had brought it to `status` (mid-rollout: stage 1)."""
    repository = SqlWorkflowRepository(client.app.state.context.database)

    async def rewrite() -> None:
        stored = await repository.get(workflow_id)
        assert stored is not None
        doc: WorkflowDoc = stored.doc
        doc.status = status.value
        doc.stage_index = _STAGE_OF.get(status, 1)
        doc.changed_count = 0 if status in _UNCHANGED else stage_target_count(doc.stages[doc.stage_index], INSTANCES)
        await repository.save(doc, stored.version)

    client.blocking_portal.call(rewrite)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient[Litestar]]:
    """One agent for the whole matrix: each test starts its workflow on fresh instances."""
    with TestClient(create_app(make_settings(workflow_tick_s=60.0)), raise_server_exceptions=False) as shared:
        yield shared


_prefixes = itertools.count()


def start(client: TestClient[Litestar]) -> dict[str, Any]:
    ids = register(client, INSTANCES, prefix=f"m{next(_prefixes)}-")
    body = {
        "instance_ids": ids,
        "changes": {"--max-num-seqs": 128},
        "actuator": {"url": HOOK},
        "approval": {"stage_gates": GATES},
    }
    response = client.post(WORKFLOWS, json=body)
    assert response.status_code == 201, response.text
    workflow: dict[str, Any] = response.json()
    return workflow


@pytest.mark.parametrize("status", list(WorkflowStatus))
@pytest.mark.parametrize("action", [action.value for action in UserAction])
def test_every_action_in_every_status(client: TestClient[Litestar], status: WorkflowStatus, action: str) -> None:
    workflow_id = start(client)["workflow_id"]
    force(client, workflow_id, status)
    before = client.get(f"{WORKFLOWS}/{workflow_id}").json()
    payload = {"approver": "alice"} if action in ("approve", "reject") else {"reason": "matrix"}
    response = client.post(f"{WORKFLOWS}/{workflow_id}/{action}", json=payload)
    expected = EXPECTED[status].get(action)
    if expected is None:
        envelope = assert_envelope(response, 409, "invalid_transition")
        assert envelope["context"] == {
            "workflow_id": workflow_id,
            "status": status.value,
            "action": action,
            "allowed_actions": sorted(EXPECTED[status]),
        }
        after = client.get(f"{WORKFLOWS}/{workflow_id}").json()
        assert after == before  # a refused action changes nothing, not even the version
        return
    assert response.status_code == 200, response.text
    after = response.json()
    assert after["status"] == expected
    assert after["version"] == before["version"] + 1
    if status is S.AWAITING_APPROVAL and action == "approve":
        assert (after["stage_index"], after["changed_count"]) == (2, INSTANCES)
        assert after["approvals"][-1]["gate"] == 2
    events = client.get(f"{WORKFLOWS}/{workflow_id}/events").json()
    assert events[-1]["action"] == action
    assert (events[-1]["from_status"], events[-1]["to_status"]) == (status.value, expected)


def test_terminal_statuses_absorb_every_action(client: TestClient[Litestar]) -> None:
    workflow_id = start(client)["workflow_id"]
    for status in (S.REJECTED, S.CANCELLED, S.ROLLED_BACK, S.COMPLETED):
        force(client, workflow_id, status)
        for action in UserAction:
            response = client.post(f"{WORKFLOWS}/{workflow_id}/{action.value}")
            assert assert_envelope(response, 409, "invalid_transition")["context"]["allowed_actions"] == []


def test_a_failed_workflow_is_released_by_an_abort_with_a_reason(client: TestClient[Litestar]) -> None:
    workflow = start(client)
    workflow_id, first = workflow["workflow_id"], workflow["instance_ids"][0]
    force(client, workflow_id, S.FAILED)
    assert assert_envelope(client.delete(f"/api/v1/instances/{first}"), 409, "workflow_conflict")
    refused = assert_envelope(client.post(f"{WORKFLOWS}/{workflow_id}/abort"), 422, "validation_error")
    assert [detail["field"] for detail in refused["details"]] == ["body.reason"]
    released = client.post(f"{WORKFLOWS}/{workflow_id}/abort", json={"reason": "reverted m-0 by hand"})
    assert released.status_code == 200, released.text
    assert (released.json()["status"], released.json()["changed_count"]) == ("rolled_back", 0)
    event = client.get(f"{WORKFLOWS}/{workflow_id}/events").json()[-1]
    assert (event["action"], event["reason"], event["from_status"]) == ("abort", "reverted m-0 by hand", "failed")
    assert client.delete(f"/api/v1/instances/{first}").status_code == 204


def test_an_admin_force_delete_releases_the_instance_and_is_audited(client: TestClient[Litestar]) -> None:
    workflow = start(client)
    workflow_id, first = workflow["workflow_id"], workflow["instance_ids"][0]
    force(client, workflow_id, S.FAILED)
    assert client.delete(f"/api/v1/instances/{first}?force=true").status_code == 204
    assert client.get(f"/api/v1/instances/{first}").status_code == 404
    event = client.get(f"{WORKFLOWS}/{workflow_id}/events").json()[-1]
    assert (event["action"], event["actor"], event["details"]) == (
        "force-delete-instance",
        "anonymous",
        {"instance_id": first},
    )
    assert event["from_status"] == event["to_status"] == "failed"
    assert client.get(f"{WORKFLOWS}/{workflow_id}").json()["status"] == "failed"


def test_re_approving_a_cancelled_workflow_is_refused(client: TestClient[Litestar]) -> None:
    workflow_id = start(client)["workflow_id"]
    force(client, workflow_id, S.PENDING_APPROVAL)
    assert client.post(f"{WORKFLOWS}/{workflow_id}/approve", json={"approver": "alice"}).status_code == 200
    assert client.post(f"{WORKFLOWS}/{workflow_id}/cancel", json={"reason": "not now"}).status_code == 200
    again = client.post(f"{WORKFLOWS}/{workflow_id}/approve", json={"approver": "alice"})
    assert assert_envelope(again, 409, "invalid_transition")["context"]["status"] == "cancelled"


def test_resume_re_soaks_the_stage(client: TestClient[Litestar]) -> None:
    workflow_id = start(client)["workflow_id"]
    force(client, workflow_id, S.PAUSED)
    resumed = client.post(f"{WORKFLOWS}/{workflow_id}/resume").json()
    assert resumed["status"] == "monitoring"
    assert resumed["warmup_until"] == resumed["status_since"]  # nothing restarted: no new warm-up
    assert resumed["stage_deadline"] > resumed["status_since"]


def test_two_concurrent_actions_exactly_one_wins(client: TestClient[Litestar]) -> None:
    """Both read the same version; one save wins and the other is refused with 409 (which one: the database's race)."""
    workflow_id = start(client)["workflow_id"]
    force(client, workflow_id, S.MONITORING)
    context = client.app.state.context
    actions = (UserAction.PAUSE, UserAction.ABORT)

    async def race() -> list[object]:
        service = context.workflows
        outcomes: list[object] = await asyncio.gather(
            service.act(workflow_id, actions[0], actor="alice"),
            service.act(workflow_id, actions[1], actor="bob"),
            return_exceptions=True,
        )
        return outcomes

    outcomes = client.blocking_portal.call(race)
    won = [action for action, outcome in zip(actions, outcomes, strict=True) if not isinstance(outcome, BaseException)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, ConflictError)]
    assert len(won) == 1, outcomes
    assert len(refused) == 1, outcomes
    final = client.get(f"{WORKFLOWS}/{workflow_id}").json()
    assert final["status"] == ("paused" if won[0] is UserAction.PAUSE else "rolling_back")
    assert refused[0].error == "version_conflict"
    assert refused[0].context["status"] == final["status"]
    events = [event["action"] for event in client.get(f"{WORKFLOWS}/{workflow_id}/events").json()]
    assert events == ["create", won[0].value]


def test_an_action_survives_a_concurrent_write_that_did_not_move_the_workflow(client: TestClient[Litestar]) -> None:
    """A health window recorded meanwhile bumps the version but must not make an operator's abort fail."""
    workflow_id = start(client)["workflow_id"]
    force(client, workflow_id, S.MONITORING)
    context = client.app.state.context
    repository = context.storage.workflows

    async def race() -> tuple[object, object]:
        async def reconciler_write() -> None:
            stored = await repository.get(workflow_id)
            assert stored is not None
            stored.doc.next_due_at = 1.0
            await repository.save(stored.doc, stored.version)

        service = context.workflows
        # The write starts first, so it reads and saves before the abort saves: the abort loses the race.
        outcomes = await asyncio.gather(
            reconciler_write(), service.act(workflow_id, UserAction.ABORT, actor="alice"), return_exceptions=True
        )
        return outcomes[0], outcomes[1]

    written, aborted = client.blocking_portal.call(race)
    assert not isinstance(aborted, BaseException)
    final = client.get(f"{WORKFLOWS}/{workflow_id}").json()
    assert final["status"] == "rolling_back"
    # On SQLite's single database thread the write always saves first (start, force, the write, the
    # abort: version 4); with PostgreSQL's pool the abort may save first and the write then loses.
    if written is None:
        assert final["version"] == 4
    else:
        assert isinstance(written, VersionConflict)
        assert final["version"] == 3
    with pytest.raises(ConflictError):
        client.blocking_portal.call(lambda: context.workflows.act(workflow_id, UserAction.PAUSE, actor="x"))
