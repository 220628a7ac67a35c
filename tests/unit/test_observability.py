from __future__ import annotations

import json
import logging

from performance_agent.observability import JsonFormatter, request_id_of


def _record(message: str, **extra: object) -> logging.LogRecord:
    return logging.makeLogRecord({"name": "performance_agent.x", "levelname": "INFO", "msg": message, **extra})


def test_lines_are_json_with_extras_and_request_id() -> None:
    line = JsonFormatter().format(_record("scraped %s", args=("vllm-0",), request_id="req-1", instance="vllm-0"))
    entry = json.loads(line)
    assert entry["message"] == "scraped vllm-0"
    assert entry["request_id"] == "req-1"
    assert entry["instance"] == "vllm-0"
    assert entry["level"] == "INFO"
    assert entry["time"].endswith("+00:00")


def test_request_id_of_a_scope_binds_the_log_context() -> None:
    scope = {"type": "http", "headers": [(b"x-request-id", b"abc-123")]}
    assert request_id_of(scope) == "abc-123"  # type: ignore[arg-type]
    entry = json.loads(JsonFormatter().format(_record("inside the request")))
    assert entry["request_id"] == "abc-123"


def test_non_json_values_are_represented_and_tracebacks_kept() -> None:
    try:
        raise ValueError("boom")
    except ValueError as exc:
        record = _record("failed", exc_info=(type(exc), exc, exc.__traceback__), payload={"a": 1})
    entry = json.loads(JsonFormatter().format(record))
    assert entry["payload"] == "{'a': 1}"
    assert "ValueError: boom" in entry["traceback"]
