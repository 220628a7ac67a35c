from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from performance_agent.settings import Settings, SettingsError, describe_allowed, load_settings


def test_defaults_match_the_documented_contract() -> None:
    settings = load_settings({})
    assert (settings.host, settings.port, settings.environment) == ("127.0.0.1", 8000, "development")
    assert settings.max_body_bytes == 1024 * 1024
    assert (settings.rate_limit_per_minute, settings.rate_limit_per_hour) == (100, 1000)
    assert settings.database.startswith("./var/")
    assert settings.scrape_max_bytes == 10 * 1024 * 1024
    assert settings.history_retention_hours == 168
    assert settings.api_keys == []


def test_values_are_read_from_prefixed_variables_and_lists_are_split() -> None:
    settings = load_settings(
        {
            "PERF_AGENT_PORT": "9001",
            "PERF_AGENT_ENVIRONMENT": "staging",
            "PERF_AGENT_API_KEYS": "a:admin:0123456789abcdef0, b:viewer:0123456789abcdef1",
            "PERF_AGENT_CORS_ORIGINS": "https://dash.example, https://ops.example",
            "PERF_AGENT_SCRAPE_TIMEOUT_S": "2.5",
            "PERF_AGENT_API_KEYS_FILE": "",
            "PERF_AGENT_UNRELATED_THING": "ignored",
            "OTHER": "x",
        }
    )
    assert settings.port == 9001
    assert settings.environment == "staging"
    assert settings.api_keys == ["a:admin:0123456789abcdef0", "b:viewer:0123456789abcdef1"]
    assert settings.cors_origins == ["https://dash.example", "https://ops.example"]
    assert settings.scrape_timeout_s == 2.5
    assert settings.api_keys_file is None


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("PERF_AGENT_PORT", "abc", "PERF_AGENT_PORT: expected an integer >= 1 and <= 65535, got 'abc'"),
        ("PERF_AGENT_PORT", "70000", "PERF_AGENT_PORT: expected an integer >= 1 and <= 65535, got '70000'"),
        (
            "PERF_AGENT_ENVIRONMENT",
            "prod",
            "PERF_AGENT_ENVIRONMENT: expected one of development, staging, production, got 'prod'",
        ),
        (
            "PERF_AGENT_LOG_LEVEL",
            "loud",
            "PERF_AGENT_LOG_LEVEL: expected one of DEBUG, INFO, WARNING, ERROR, got 'loud'",
        ),
        ("PERF_AGENT_SCRAPE_TIMEOUT_S", "0", "PERF_AGENT_SCRAPE_TIMEOUT_S: expected a number > 0 and <= 60, got '0'"),
        (
            "PERF_AGENT_RATE_LIMIT_PER_MINUTE",
            "-1",
            "PERF_AGENT_RATE_LIMIT_PER_MINUTE: expected an integer >= 0, got '-1'",
        ),
        (
            "PERF_AGENT_SLO_PERIOD_HOURS",
            "500",
            "PERF_AGENT_SLO_PERIOD_HOURS: must be at most PERF_AGENT_HISTORY_RETENTION_HOURS (168), got 500",
        ),
        (
            "PERF_AGENT_REPLICA_ID",
            " agent-a",
            "PERF_AGENT_REPLICA_ID: expected 1 to 200 characters without surrounding spaces, got ' agent-a'",
        ),
        (
            "PERF_AGENT_REPLICA_ID",
            "r" * 201,
            f"PERF_AGENT_REPLICA_ID: expected 1 to 200 characters without surrounding spaces, got '{'r' * 201}'",
        ),
        ("PERF_AGENT_LEASE_TTL_S", "0.5", "PERF_AGENT_LEASE_TTL_S: expected a number >= 1 and <= 300, got '0.5'"),
    ],
)
def test_invalid_values_are_one_clear_line(variable: str, value: str, expected: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({variable: value})
    assert str(caught.value) == expected
    assert "\n" not in str(caught.value)


def test_describe_allowed_reads_the_annotation() -> None:
    assert describe_allowed("max_body_bytes") == "an integer >= 1024 and <= 104857600"
    assert describe_allowed("api_keys_file") == "text"
    assert describe_allowed("host") == "text non-empty"


def test_settings_are_immutable() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


def _serve(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "performance_agent", "serve"],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.e2e
def test_serve_refuses_an_invalid_setting_with_one_line() -> None:
    result = _serve({"PERF_AGENT_PORT": "not-a-port"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "performance-agent: PERF_AGENT_PORT: expected an integer >= 1 and <= 65535, got 'not-a-port'"
    )


@pytest.mark.e2e
def test_production_without_keys_refuses_to_start() -> None:
    result = _serve({"PERF_AGENT_ENVIRONMENT": "production", "PERF_AGENT_DATABASE": ":memory:"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "performance-agent: PERF_AGENT_API_KEYS must be set when PERF_AGENT_ENVIRONMENT=production"
    )


@pytest.mark.e2e
def test_serve_refuses_a_database_another_agent_owns(tmp_path: Path) -> None:
    import asyncio

    from performance_agent.storage.database import SqliteDatabase

    database = SqliteDatabase(str(tmp_path / "agent.db"))

    async def hold_and_serve() -> subprocess.CompletedProcess[str]:
        await database.open()
        try:
            return await asyncio.to_thread(_serve, {"PERF_AGENT_DATABASE": database.path, "PERF_AGENT_PORT": "1"})
        finally:
            await database.close()

    result = asyncio.run(hold_and_serve())
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"performance-agent: PERF_AGENT_DATABASE: {database.path} is already used")
    assert f"(pid {os.getpid()})" in last
