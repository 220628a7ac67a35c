"""Issue 13 attacks 6-11 against the agent served by uvicorn: careless operators and hostile API callers.

6: a webhook URL that never resolves (or a refused connection) must not hold the instances;
7: a second agent on the same database file through another path must refuse to start;
8: the default actuator URL (a secret setting) must never be shown; 9: deeply nested JSON is a
400; 10: a non-ASCII scrape header is refused at registration and never a 500 at collect;
11: `.` and `..` are no instance ids. Each asserts status, envelope and that nothing was stored.
"""

from __future__ import annotations

import gzip
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from performance_agent.simulator.fleet import start_simulator
from tests.agent_process import ServedAgent, free_port
from tests.rollout_support import APPROVER, AgentProcess, OffsetClock
from tests.scrape_support import ScriptedServer
from tests.security.attack_support import MIB, HealthProbe, assert_envelope, gzip_of_zeros, process_tree_rss

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from performance_agent.simulator.fleet import SimulatedFleet

pytestmark = pytest.mark.e2e

SECRET_URL = "http://127.0.0.1:9/actuator?token=s3cret-actuator-token"
VIEWER_KEY = "hostile-viewer-key-0123456789"
OPERATOR_KEY = "hostile-operator-key-0123456789"
KEYS = f"watcher:viewer:{VIEWER_KEY},ops:operator:{OPERATOR_KEY}"
VIEWER = {"X-API-Key": VIEWER_KEY}
ENDED = {"completed", "rolled_back", "failed", "rejected", "cancelled"}


# ----------------------------------------------------------------------------- attack 6


@pytest.fixture(scope="module")
def fleet() -> Iterator[SimulatedFleet]:
    clock = OffsetClock()
    with start_simulator("vllm", 4, time_scale=40.0, clock=clock) as running:
        clock.advance(5.0)
        yield running


@pytest.mark.parametrize("target", ["unresolvable", "refused"])
def test_attack_6_an_apply_that_never_reached_the_actuator_releases_the_instances(
    tmp_path: Path, fleet: SimulatedFleet, target: str
) -> None:
    url = "http://no-such-receiver.invalid/hook" if target == "unresolvable" else f"http://127.0.0.1:{free_port()}/hook"
    agent = AgentProcess(tmp_path / "agent.db", tmp_path / "agent.log", "hostile-secret-0123")
    try:
        ids = [handle.instance_id for handle in fleet.instances][:2]
        agent.register(fleet, ids)
        body = {
            "instance_ids": ids,
            "changes": {"max_num_seqs": 128},
            "actuator": {"type": "webhook", "url": url},
            "monitor": {"duration_s": 1.5, "interval_s": 0.5, "warmup_s": 1.0, "min_passing_windows": 2},
        }
        created = agent.post("/api/v1/workflows", body)
        assert created.status_code == 201, created.text
        workflow_id = created.json()["workflow_id"]
        ended = agent.wait_status(workflow_id, ENDED, deadline_s=60)
        assert ended["status"] == "rolled_back", ended
        assert ended["changed_count"] == 0
        events = agent.get(f"/api/v1/workflows/{workflow_id}/events").json()
        skipped = [event for event in events if event["action"] == "rollback_step_done"]
        assert skipped[0]["details"]["skipped"] == "its apply call never reached the actuator"
        for instance_id in ids:  # released: deletable without force
            deleted = httpx.delete(f"{agent.base}/api/v1/instances/{instance_id}", headers=APPROVER, timeout=10)
            assert deleted.status_code == 204, deleted.text
    finally:
        agent.stop()


# ----------------------------------------------------------------------------- attack 7


@pytest.mark.parametrize("spelling", ["symlink", "hard link", "dot-dot path"])
def test_attack_7_a_second_agent_on_the_same_file_refuses_to_start(tmp_path: Path, spelling: str) -> None:
    database = tmp_path / "var" / "agent.db"
    first = ServedAgent(database, tmp_path / "first.log", headers={}, settings={})
    try:
        if spelling == "symlink":
            other = tmp_path / "link.db"
            other.symlink_to(database)
        elif spelling == "hard link":
            other = tmp_path / "hard.db"
            other.hardlink_to(database)
        else:
            (tmp_path / "elsewhere").mkdir()
            other = tmp_path / "elsewhere" / ".." / "var" / "agent.db"
        log = tmp_path / "second.log"
        started = time.monotonic()
        second = ServedAgent(other, log, headers={}, settings={}, wait=False)
        code = second.process.wait(timeout=20)
        second.stop()
        assert time.monotonic() - started < 10
        assert code != 0
        last = log.read_text().strip().splitlines()[-1]
        assert "is already used by another performance-agent process" in last
        assert f"pid {first.process.pid}" in last
        assert f"inode {database.stat().st_ino}" in last
        assert first.ready()
    finally:
        first.stop()


# ------------------------------------------------------------------------ attacks 8-11


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedAgent]:
    directory = tmp_path_factory.mktemp("hostile-callers")
    served = ServedAgent(
        directory / "agent.db",
        directory / "agent.log",
        headers={"X-API-Key": OPERATOR_KEY},
        settings={
            "PERF_AGENT_API_KEYS": KEYS,
            "PERF_AGENT_WORKFLOW_ACTUATOR_URL": SECRET_URL,
            "PERF_AGENT_SCRAPE_BACKGROUND": "false",
            "PERF_AGENT_SCRAPE_HEADER_ENV": "HOSTILE_TOKEN",
            "HOSTILE_TOKEN": "caf\u00e9-token",
        },
    )
    yield served
    served.stop()


def instances(agent: ServedAgent) -> list[str]:
    return [item["instance_id"] for item in agent.get("/api/v1/instances").json()]


def test_attack_8_the_default_actuator_url_is_never_shown(agent: ServedAgent) -> None:
    for index in range(2):
        body = {"instance_id": f"secret-{index}", "engine": "vllm", "endpoint": "http://127.0.0.1:9"}
        assert agent.post("/api/v1/instances", body).status_code == 201
    created = agent.post(
        "/api/v1/workflows",
        {"instance_ids": ["secret-0", "secret-1"], "changes": {"max_num_seqs": 64}, "approval": {"required": True}},
    )
    assert created.status_code == 201, created.text
    workflow_id = created.json()["workflow_id"]
    shown = [
        created,
        httpx.get(f"{agent.base}/api/v1/workflows/{workflow_id}", headers=VIEWER, timeout=10),
        httpx.get(f"{agent.base}/api/v1/workflows", headers=VIEWER, timeout=10),
        httpx.get(f"{agent.base}/api/v1/workflows/{workflow_id}/events", headers=VIEWER, timeout=10),
        httpx.get(f"{agent.base}/api/v1/config", headers=VIEWER, timeout=10),
    ]
    for response in shown:
        assert response.status_code in (200, 201), response.text
        assert "s3cret-actuator-token" not in response.text
        assert "127.0.0.1:9/actuator" not in response.text
    assert shown[1].json()["actuator"] == {"type": "webhook", "url": "REDACTED"}


@pytest.mark.parametrize("opening", ["[", '{"a":'])
def test_attack_9_deeply_nested_json_is_a_400(agent: ServedAgent, opening: str) -> None:
    closing = "]" if opening == "[" else "}"
    body = opening * 1200 + "1" + closing * 1200
    for path in ("/api/v1/instances", "/api/v1/workflows", "/api/v1/collect/vllm"):
        response = httpx.post(
            agent.base + path,
            content=body,
            headers={"X-API-Key": OPERATOR_KEY, "Content-Type": "application/json"},
            timeout=10,
        )
        assert "nested too deeply" in assert_envelope(response, 400, "invalid_json")["message"]
    assert agent.get("/api/v1/health").status_code == 200


def test_attack_10_a_non_ascii_scrape_header_is_refused_and_never_a_500(agent: ServedAgent) -> None:
    for value in ("caf\u00e9", "\U0001f600", "a\x7fb"):
        body = {
            "instance_id": "accented",
            "engine": "vllm",
            "endpoint": "http://127.0.0.1:9",
            "headers": {"X-Team": value},
        }
        envelope = assert_envelope(agent.post("/api/v1/instances", body), 422, "validation_error")
        assert envelope["invalid_fields"][0].startswith("body.headers")
        collect = {name: item for name, item in body.items() if name != "engine"}
        assert_envelope(agent.post("/api/v1/collect/vllm", collect), 422, "validation_error")
    from_env = {
        "instance_id": "accented-env",
        "endpoint": "http://127.0.0.1:9",
        "headers": {"Authorization": {"env": "HOSTILE_TOKEN", "prefix": "Bearer "}},
    }
    envelope = assert_envelope(agent.post("/api/v1/collect/vllm", from_env), 422, "scrape_config_invalid")
    assert "HOSTILE_TOKEN holds characters other than visible ASCII" in envelope["message"]
    assert "accented" not in instances(agent)
    assert agent.get("/api/v1/history/accented-env").json() == []
    assert agent.get("/api/v1/health/ready").status_code == 200


@pytest.mark.parametrize("instance_id", [".", ".."])
def test_attack_11_dot_and_dot_dot_are_no_instance_ids(agent: ServedAgent, instance_id: str) -> None:
    register = {"instance_id": instance_id, "engine": "vllm", "endpoint": "http://127.0.0.1:9"}
    envelope = assert_envelope(agent.post("/api/v1/instances", register), 422, "validation_error")
    assert envelope["invalid_fields"] == ["body.instance_id"]
    collect = {"instance_id": instance_id, "endpoint": "http://127.0.0.1:9"}
    assert assert_envelope(agent.post("/api/v1/collect/vllm", collect), 422, "validation_error")
    workflow = {"instance_ids": [instance_id], "changes": {"max_num_seqs": 64}}
    assert_envelope(agent.post("/api/v1/workflows", workflow), 422, "validation_error")
    assert instance_id not in instances(agent)


def test_attack_2_a_webhook_answering_a_bomb_is_read_capped_and_the_failed_rollout_released(
    tmp_path: Path, fleet: SimulatedFleet
) -> None:
    """The actuator answers 500 with `gzip, gzip` and then with one gzip layer of 256 MiB: never read whole.

    Every call reached it, so the rollout ends `failed`; an approver who reverted by hand aborts it
    with a reason, which releases the instances.
    """
    receiver = ScriptedServer().start()
    bomb = gzip_of_zeros(256 * MIB)
    receiver.serve("/hook", bomb, status=500, headers={"Content-Encoding": "gzip"})
    receiver.serve("/stacked", gzip.compress(bomb), status=500, headers={"Content-Encoding": "gzip, gzip"})
    agent = AgentProcess(tmp_path / "agent.db", tmp_path / "agent.log", "hostile-secret-0123")
    try:
        ids = [handle.instance_id for handle in fleet.instances][2:]
        agent.register(fleet, ids)
        baseline = process_tree_rss(agent.process.pid)
        ended: list[dict[str, Any]] = []
        with HealthProbe(agent) as probe:
            for path in ("/hook", "/stacked"):
                body = {
                    "instance_ids": ids,
                    "changes": {"max_num_seqs": 128},
                    "actuator": {"type": "webhook", "url": f"{receiver.endpoint}{path}"},
                    "monitor": {"duration_s": 1.5, "interval_s": 0.5, "warmup_s": 1.0, "min_passing_windows": 2},
                }
                created = agent.post("/api/v1/workflows", body)
                assert created.status_code == 201, created.text
                ended.append(agent.wait_status(created.json()["workflow_id"], ENDED, deadline_s=60))
                if path == "/hook":
                    workflow_id = ended[-1]["workflow_id"]
                    refused = httpx.post(f"{agent.base}/api/v1/workflows/{workflow_id}/abort", headers=APPROVER)
                    assert assert_envelope(refused, 422, "validation_error")["invalid_fields"] == ["body.reason"]
                    released = httpx.post(
                        f"{agent.base}/api/v1/workflows/{workflow_id}/abort",
                        json={"reason": "reverted max_num_seqs by hand"},
                        headers=APPROVER,
                    )
                    assert released.status_code == 200, released.text
                    assert (released.json()["status"], released.json()["changed_count"]) == ("rolled_back", 0)
        print(f"\n[attack 2, webhook answers] {probe.summary(baseline)}")
        assert [workflow["status"] for workflow in ended] == ["failed", "failed"]
        assert "HTTP 500" in ended[0]["status_reason"]
        assert "stacked content encodings" in ended[1]["status_reason"]
        assert probe.peak_rss - baseline < 100 * MIB
        assert set(probe.statuses) == {200}
        stacked_id = ended[1]["workflow_id"]
        forced = httpx.delete(f"{agent.base}/api/v1/instances/{ids[0]}?force=true", headers=APPROVER)
        assert assert_envelope(forced, 403, "forbidden")["context"]["required_role"] == "admin"
        assert agent.workflow(stacked_id)["status"] == "failed"
    finally:
        agent.stop()
        receiver.stop()
