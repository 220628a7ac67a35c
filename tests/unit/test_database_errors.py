"""Every way the database refuses to open says why, and leaves the file as it found it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from performance_agent.storage.database import MIGRATIONS, SqliteDatabase, StorageError


def _open(path: str) -> SqliteDatabase:
    database = SqliteDatabase(path)
    asyncio.run(database.open())
    return database


def test_a_file_that_is_not_sqlite_is_refused_with_its_path(tmp_path: Path) -> None:
    garbage = tmp_path / "agent.db"
    garbage.write_bytes(b"this is not a database file at all, just text" * 100)
    with pytest.raises(StorageError, match=f"{garbage} is not a usable SQLite database"):
        _open(str(garbage))
    assert garbage.read_bytes().startswith(b"this is not a database")


def test_a_newer_schema_is_refused_rather_than_downgraded(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    connection.close()
    with pytest.raises(StorageError, match="newer than this agent knows"):
        _open(str(path))
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) + 1


def test_an_uncreatable_directory_names_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError, match=r"^PERF_AGENT_DATABASE: cannot create"):
        _open(str(blocker / "sub" / "agent.db"))


def test_using_a_closed_database_is_an_error_not_a_crash(tmp_path: Path) -> None:
    database = _open(str(tmp_path / "agent.db"))
    asyncio.run(database.close())

    async def use() -> None:
        await database.run(lambda connection: connection.execute("SELECT 1"))

    with pytest.raises(StorageError, match="not open"):
        asyncio.run(use())


def test_reopening_keeps_the_schema_and_releases_the_lock(tmp_path: Path) -> None:
    path = str(tmp_path / "agent.db")
    first = _open(path)
    asyncio.run(first.close())
    second = _open(path)  # the lock was released by close()

    async def version() -> int:
        return int(await second.run(lambda connection: connection.execute("PRAGMA user_version").fetchone()[0]))

    assert asyncio.run(version()) == len(MIGRATIONS)
    asyncio.run(second.close())
