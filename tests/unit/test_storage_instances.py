"""The instance repository contract, on SQLite (a real file) and in memory alike."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import msgspec
import pytest

from performance_agent.fleet.ports import InstanceExistsError, InstanceState
from performance_agent.fleet.schemas import InstanceError, InstanceSpec
from tests.unit.storage_support import BACKENDS, T0, Repos, full_spec, raw_at, run_with_repos


@pytest.fixture(params=[*BACKENDS, "memory"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_registered_instance_reads_back_field_for_field(kind: str, tmp_path: Path) -> None:
    async def body(repos: Repos) -> None:
        created = await repos.instances.create("vllm-0", full_spec(), T0)
        assert created.created_at == created.updated_at == T0
        stored = await repos.instances.get("vllm-0")
        assert stored is not None
        assert stored.spec == full_spec()
        assert stored.state == InstanceState()
        assert (stored.created_at, stored.updated_at) == (T0, T0)
        assert await repos.instances.get("vllm-1") is None

    run_with_repos(kind, tmp_path / "agent.db", body)


def test_an_id_can_be_created_only_once(kind: str, tmp_path: Path) -> None:
    async def body(repos: Repos) -> None:
        await repos.instances.create("a", full_spec(), T0)
        with pytest.raises(InstanceExistsError):
            await repos.instances.create("a", full_spec(engine="tgi"), T0)
        stored = await repos.instances.get("a")
        assert stored is not None
        assert stored.spec.engine == "vllm"

    run_with_repos(kind, tmp_path / "agent.db", body)


def test_list_is_ordered_by_id_and_filters_by_engine_and_status(kind: str, tmp_path: Path) -> None:
    async def body(repos: Repos) -> None:
        for instance_id, engine in (("c", "tgi"), ("a", "vllm"), ("b", "vllm"), ("d", "sglang")):
            await repos.instances.create(instance_id, full_spec(engine=engine), T0)
        collected_at, raw = raw_at(1)
        await repos.snapshots.add("b", collected_at, b"{}", raw)
        await repos.instances.record_failure("c", InstanceError(code="upstream_timeout", message="slow", at=T0))
        assert [i.instance_id for i in await repos.instances.list()] == ["a", "b", "c", "d"]
        assert [i.instance_id for i in await repos.instances.list(engine="vllm")] == ["a", "b"]
        assert [i.instance_id for i in await repos.instances.list(status="up")] == ["b"]
        assert [i.instance_id for i in await repos.instances.list(status="down")] == ["c"]
        assert [i.instance_id for i in await repos.instances.list(status="pending")] == ["a", "d"]
        assert [i.instance_id for i in await repos.instances.list(engine="vllm", status="pending")] == ["a"]
        assert await repos.instances.list(engine="tgi", status="up") == []

    run_with_repos(kind, tmp_path / "agent.db", body)


def test_replace_changes_the_spec_but_keeps_the_observed_state(kind: str, tmp_path: Path) -> None:
    async def body(repos: Repos) -> None:
        await repos.instances.create("a", full_spec(), T0)
        error = InstanceError(code="upstream_error", message="HTTP 500", at=T0, upstream_status=500)
        assert await repos.instances.record_failure("a", error)
        later = T0 + timedelta(minutes=5)
        new_spec = InstanceSpec(engine="sglang", endpoint="http://10.0.0.9:30000")
        replaced = await repos.instances.replace("a", new_spec, later)
        assert replaced is not None
        assert replaced.spec == new_spec
        assert (replaced.created_at, replaced.updated_at) == (T0, later)
        assert replaced.state.status == "down"
        assert replaced.state.last_error == error
        assert await repos.instances.list(engine="sglang") == [replaced]
        assert await repos.instances.replace("missing", new_spec, later) is None
        assert await repos.instances.get("missing") is None

    run_with_repos(kind, tmp_path / "agent.db", body)


def test_upsert_creates_then_replaces(kind: str, tmp_path: Path) -> None:
    async def body(repos: Repos) -> None:
        first, created = await repos.instances.upsert("a", full_spec(), T0)
        assert created
        assert first.spec == full_spec()
        later = T0 + timedelta(seconds=30)
        changed = msgspec.structs.replace(full_spec(), endpoint="http://10.0.0.6:8000")
        second, created_again = await repos.instances.upsert("a", changed, later)
        assert not created_again
        assert second.spec.endpoint == "http://10.0.0.6:8000"
        assert (second.created_at, second.updated_at) == (T0, later)

    run_with_repos(kind, tmp_path / "agent.db", body)


def test_failures_count_up_and_a_success_resets_them(kind: str, tmp_path: Path) -> None:
    async def body(repos: Repos) -> None:
        await repos.instances.create("a", full_spec(), T0)
        for minute in (1, 2):
            at = T0 + timedelta(minutes=minute)
            assert await repos.instances.record_failure(
                "a", InstanceError(code="upstream_unreachable", message="x", at=at)
            )
        failing = await repos.instances.get("a")
        assert failing is not None
        assert failing.state.status == "down"
        assert failing.state.consecutive_failures == 2
        assert failing.state.last_scrape_at == T0 + timedelta(minutes=2)
        assert failing.state.last_seen is None
        collected_at, raw = raw_at(3)
        assert await repos.snapshots.add("a", collected_at, b"{}", raw)
        healthy = await repos.instances.get("a")
        assert healthy is not None
        assert healthy.state == InstanceState(
            status="up", last_seen=collected_at, last_scrape_at=collected_at, last_error=None, consecutive_failures=0
        )
        assert not await repos.instances.record_failure("ghost", InstanceError(code="x", message="y", at=T0))

    run_with_repos(kind, tmp_path / "agent.db", body)


def test_delete_removes_the_instance_and_its_history_only(kind: str, tmp_path: Path) -> None:
    async def body(repos: Repos) -> None:
        await repos.instances.create("a", full_spec(), T0)
        await repos.instances.create("b", full_spec(), T0)
        for minute in range(3):
            for instance_id in ("a", "b"):
                collected_at, raw = raw_at(minute)
                await repos.snapshots.add(instance_id, collected_at, b'{"n":1}', raw)
        assert await repos.instances.delete("a")
        assert await repos.instances.get("a") is None
        assert await repos.snapshots.count("a") == 0
        assert await repos.snapshots.latest_raw("a") is None
        assert await repos.snapshots.count("b") == 3
        assert not await repos.instances.delete("a")
        # a scrape finishing after the delete stores nothing
        collected_at, raw = raw_at(9)
        assert not await repos.snapshots.add("a", collected_at, b"{}", raw)
        assert await repos.snapshots.count("a") == 0

    run_with_repos(kind, tmp_path / "agent.db", body)


def test_returned_records_are_copies(kind: str, tmp_path: Path) -> None:
    async def body(repos: Repos) -> None:
        await repos.instances.create("a", full_spec(), T0)
        first = await repos.instances.get("a")
        assert first is not None
        first.state.status = "up"
        first.state.consecutive_failures = 99
        again = await repos.instances.get("a")
        assert again is not None
        assert again.state == InstanceState()

    run_with_repos(kind, tmp_path / "agent.db", body)
