"""PERF_AGENT_DATABASE_URL: which backend, precedence over PERF_AGENT_DATABASE, `migrate`, and no password shown."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from performance_agent.settings import SettingsError, load_settings
from performance_agent.storage.database import SqliteDatabase, StorageError
from performance_agent.storage.factory import open_database
from performance_agent.storage.postgres import POSTGRES_MIGRATIONS, PostgresDatabase, redact_url
from performance_agent.storage.sql import migrate
from tests.paths import REPO_ROOT
from tests.postgres_support import fresh_database_url


def test_the_url_wins_over_the_file_setting_and_a_bare_path_stays_sqlite(tmp_path: Path) -> None:
    both = load_settings({"PERF_AGENT_DATABASE": "a.db", "PERF_AGENT_DATABASE_URL": "postgresql://db/agent"})
    assert both.storage_url == "postgresql://db/agent"
    assert isinstance(open_database(both.storage_url), PostgresDatabase)
    only_file = load_settings({"PERF_AGENT_DATABASE": str(tmp_path / "a.db")})
    database = open_database(only_file.storage_url)
    assert isinstance(database, SqliteDatabase)
    assert database.path == str(tmp_path / "a.db")
    url = load_settings({"PERF_AGENT_DATABASE_URL": f"sqlite:///{tmp_path}/b.db"})
    assert url.database_path == tmp_path / "b.db"
    assert isinstance(open_database(url.storage_url), SqliteDatabase)


@pytest.mark.parametrize("url", ["mysql://db/agent", "redis://cache", "http://db"])
def test_an_unknown_scheme_is_refused_naming_the_variable(url: str) -> None:
    with pytest.raises(SettingsError, match="PERF_AGENT_DATABASE_URL"):
        load_settings({"PERF_AGENT_DATABASE_URL": url})
    with pytest.raises(StorageError, match="unsupported scheme"):
        open_database(url)


def test_a_password_is_never_shown() -> None:
    secret = "postgresql://agent:s3cret-pw@db.internal:5432/perf"
    assert redact_url(secret) == "postgresql://agent:***@db.internal:5432/perf"
    assert "s3cret" not in PostgresDatabase(secret).description
    assert redact_url("postgresql://agent@db/perf") == "postgresql://agent@db/perf"


def test_an_unreachable_server_is_a_clear_error_without_the_password() -> None:
    database = PostgresDatabase("postgresql://agent:s3cret-pw@127.0.0.1:1/perf", connect_timeout_s=1.0)
    with pytest.raises(StorageError) as refused:
        asyncio.run(database.open())
    assert "cannot connect" in str(refused.value)
    assert "s3cret" not in str(refused.value)
    assert "***" in str(refused.value)


def _migrate_cli(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "performance_agent", "migrate"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )


def test_migrate_runs_alone_then_finds_the_schema_current_on_postgresql() -> None:
    url = fresh_database_url()
    first = _migrate_cli({"PERF_AGENT_DATABASE_URL": url})
    assert first.returncode == 0, first.stderr
    assert f"schema version {len(POSTGRES_MIGRATIONS)} (migrated from version 0)" in first.stdout
    second = _migrate_cli({"PERF_AGENT_DATABASE_URL": url})
    assert second.returncode == 0
    assert "already current" in second.stdout
    with psycopg.connect(url) as connection:
        versions = [row[0] for row in connection.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == list(range(1, len(POSTGRES_MIGRATIONS) + 1))


def test_replicas_starting_together_migrate_once() -> None:
    url = fresh_database_url()

    async def start_three() -> list[tuple[int, int]]:
        databases = [PostgresDatabase(url) for _ in range(3)]
        await asyncio.gather(*(database.open() for database in databases))
        try:
            return [database.migrated for database in databases]
        finally:
            await asyncio.gather(*(database.close() for database in databases))

    outcomes = asyncio.run(start_three())
    assert sorted(before for before, _ in outcomes) == [0, len(POSTGRES_MIGRATIONS), len(POSTGRES_MIGRATIONS)]


def test_migrate_on_sqlite_and_a_bad_url_exits_2(tmp_path: Path) -> None:
    done = _migrate_cli({"PERF_AGENT_DATABASE_URL": f"sqlite:///{tmp_path}/agent.db"})
    assert done.returncode == 0, done.stderr
    assert "SQLite" in done.stdout
    assert asyncio.run(migrate(SqliteDatabase(str(tmp_path / "agent.db"))))[0] > 0  # already migrated
    refused = _migrate_cli({"PERF_AGENT_DATABASE_URL": "mysql://db/agent"})
    assert refused.returncode == 2
    assert "PERF_AGENT_DATABASE_URL" in refused.stderr
