"""History on a real SQLite file survives closing, a second owner is refused, and `kill -9` mid-write
leaves a consistent file with every committed snapshot in it."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from performance_agent.fleet.schemas import InstanceError
from performance_agent.storage.database import SqliteDatabase, StorageLockedError
from tests.paths import REPO_ROOT
from tests.unit.storage_support import T0, Repos, full_spec, open_repos, raw_at, run_with_repos


def test_instances_state_and_history_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"

    async def write(repos: Repos) -> None:
        await repos.instances.create("a", full_spec(), T0)
        await repos.instances.create("b", full_spec(engine="tgi"), T0)
        for minute in range(3):
            collected_at, raw = raw_at(minute, requests=float(minute))
            await repos.snapshots.add("a", collected_at, f'{{"m":{minute}}}'.encode(), raw)
        await repos.instances.record_failure("b", InstanceError(code="upstream_timeout", message="slow", at=T0))

    async def read(repos: Repos) -> None:
        a, b = await repos.instances.get("a"), await repos.instances.get("b")
        assert a is not None
        assert b is not None
        assert a.spec == full_spec()
        assert a.state.status == "up"
        assert a.state.last_seen == raw_at(2)[0]
        assert b.state.status == "down"
        assert b.state.last_error == InstanceError(code="upstream_timeout", message="slow", at=T0)
        assert await repos.snapshots.history_json("a", T0, 10) == [b'{"m":2}', b'{"m":1}', b'{"m":0}']
        latest = await repos.snapshots.latest_raw("a")
        assert latest is not None
        assert latest.total.counters == {"requests_finished": 2.0}

    run_with_repos("sqlite", path, write)
    run_with_repos("sqlite", path, read)


def test_a_second_owner_of_the_file_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"

    async def body() -> None:
        async with open_repos("sqlite", path) as repos:
            await repos.instances.create("a", full_spec(), T0)
            second = SqliteDatabase(str(path))
            with pytest.raises(StorageLockedError, match=f"pid {os.getpid()}"):
                await second.open()
        async with open_repos("sqlite", path) as reopened:
            assert await reopened.instances.get("a") is not None

    asyncio.run(body())


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from performance_agent.storage.database import SqliteDatabase
    from performance_agent.storage.instances import SqlInstanceRepository
    from performance_agent.storage.snapshots import SqlSnapshotRepository
    from tests.unit.storage_support import T0, full_spec, raw_at

    async def main() -> None:
        database = SqliteDatabase(sys.argv[1])
        await database.open()
        instances, snapshots = SqlInstanceRepository(database), SqlSnapshotRepository(database)
        await instances.create("a", full_spec(), T0)
        written = 0
        while True:
            collected_at, raw = raw_at(written, requests=float(written))
            await snapshots.add("a", collected_at, b'{"n":%d}' % written, raw + b"\\0" * 20000)
            written += 1
            print(written, flush=True)

    asyncio.run(main())
    """
)


@pytest.mark.e2e
def test_kill_9_while_writing_leaves_a_consistent_file_with_every_committed_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert writer.stdout is not None
    committed = 0
    try:
        while committed < 300:
            line = writer.stdout.readline()
            assert line, "the writer died before writing"
            committed = int(line)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert writer.returncode == -signal.SIGKILL

    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        connection.close()

    async def read(repos: Repos) -> None:
        stored = await repos.snapshots.count("a")
        assert stored >= committed
        newest = await repos.snapshots.history_json("a", T0, 1)
        assert newest == [b'{"n":%d}' % (stored - 1)]
        instance = await repos.instances.get("a")
        assert instance is not None
        assert instance.state.last_seen == raw_at(stored - 1)[0]

    run_with_repos("sqlite", path, read)  # also proves the dead writer's lock was released


@pytest.mark.parametrize("spelling", ["symlink", "hard link", "another path"])
def test_the_lock_belongs_to_the_file_not_to_the_path_that_names_it(tmp_path: Path, spelling: str) -> None:
    path = tmp_path / "agent.db"
    (tmp_path / "sub").mkdir()
    other = tmp_path / "other.db"

    async def body() -> None:
        first = SqliteDatabase(str(path))
        await first.open()
        try:
            if spelling == "symlink":
                other.symlink_to(path)
                name = str(other)
            elif spelling == "hard link":
                other.hardlink_to(path)
                name = str(other)
            else:
                name = os.path.join(tmp_path, "sub", os.pardir, "agent.db")
            with pytest.raises(StorageLockedError, match=f"pid {os.getpid()}.*inode {path.stat().st_ino}"):
                await SqliteDatabase(name).open()
        finally:
            await first.close()
        again = SqliteDatabase(str(other) if spelling != "another path" else str(path))
        await again.open()
        await again.close()

    asyncio.run(body())
