"""Rows stored by every schema version decode with the current code, on every backend.

The golden rows (tests/fixtures/storage/, see its README) are written into a database of their
schema version, the current agent opens it (SQLite migrates forward) and every row is read back
through the repositories. Each document read back must carry every value it was stored with:
re-encoded by the current code, the stored JSON is contained in it.

A second test stores documents from a newer agent (a field this one does not know) and from an
older one (every field that has a default left out): both decode.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from performance_agent.metrics.snapshot import InstanceSnapshot
from performance_agent.storage import records
from performance_agent.storage.database import MIGRATIONS
from performance_agent.storage.factory import Storage, open_storage
from performance_agent.storage.records import (
    ALERT,
    INSTANCE_ERROR,
    INSTANCE_SPEC,
    JUDGEMENT,
    PLAN,
    WINDOW,
    WORKFLOW,
    WORKFLOW_EVENT,
)
from tests.paths import FIXTURES
from tests.unit.storage_support import BACKENDS, database_url

GOLDEN = sorted((FIXTURES / "storage").glob("v*.json"))
LATEST = FIXTURES / "storage" / "v6-b4a424f.json"
FAR_PAST = datetime(2000, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)

Row = dict[str, Any]
Tables = dict[str, list[Row]]


def load(path: Path) -> tuple[int, Tables]:
    golden = json.loads(path.read_text())
    return int(golden["schema_version"]), golden["tables"]


def column_value(cell: object) -> object:
    if isinstance(cell, dict):
        if "json" in cell:
            return str(cell["json"]).encode()
        return base64.b64decode(str(cell["msgpack_base64"]))
    return cell


def insert_statements(tables: Tables) -> list[tuple[str, list[object]]]:
    """One INSERT per row, naming only the columns the row has (identity columns left to the database)."""
    statements = []
    for table, rows in tables.items():
        for row in rows:
            columns = [column for column, cell in row.items() if not (column == "id" and cell is None)]
            names = ", ".join(f'"{column}"' for column in columns)
            marks = ", ".join("?" for _ in columns)
            statements.append(
                (f"INSERT INTO {table} ({names}) VALUES ({marks})", [column_value(row[c]) for c in columns])  # noqa: S608
            )
    return statements


def seed_sqlite_at(version: int, path: Path, tables: Tables) -> None:
    """A SQLite file as the agent of schema `version` left it: its migrations, then its rows."""
    connection = sqlite3.connect(path)
    try:
        for script in MIGRATIONS[:version]:
            connection.executescript(script)
        connection.execute(f"PRAGMA user_version = {version}")
        for sql, params in insert_statements(tables):
            connection.execute(sql, params)
        connection.commit()
    finally:
        connection.close()


async def open_seeded(kind: str, version: int, tables: Tables, path: Path) -> Storage:
    """The current agent's storage over a database holding `tables`, stored at schema `version`."""
    url = database_url(kind, path)
    if kind == "sqlite":
        seed_sqlite_at(version, path, tables)
        storage = open_storage(url)
        await storage.open()
        return storage
    storage = open_storage(url)  # PostgreSQL's first schema is today's: the rows go into it
    await storage.open()

    def insert(connection: Any) -> None:
        with connection.transaction():
            for sql, params in insert_statements(tables):
                connection.execute(sql, params)

    await storage.database.run(insert)
    return storage


def assert_carried(stored: object, current: object, where: str) -> None:
    """Every value of the stored document is in the current encoding (new fields may be added)."""
    if isinstance(stored, dict):
        assert isinstance(current, dict), where
        for key, value in stored.items():
            assert key in current, f"{where}.{key} was lost"
            assert_carried(value, current[key], f"{where}.{key}")
    elif isinstance(stored, list):
        assert isinstance(current, list), where
        assert len(current) == len(stored), where
        for index, (old, new) in enumerate(zip(stored, current, strict=True)):
            assert_carried(old, new, f"{where}[{index}]")
    else:
        assert stored == current, f"{where}: stored {stored!r}, read {current!r}"


def stored_json(cell: object) -> Any:
    assert isinstance(cell, dict)
    return json.loads(cell["json"])


async def read_everything(storage: Storage, tables: Tables) -> None:
    """Read every golden row back through the repositories and check nothing stored was lost."""
    for row in tables.get("instances", []):
        instance = await storage.instances.get(row["instance_id"])
        assert instance is not None
        assert_carried(stored_json(row["record"]), json.loads(INSTANCE_SPEC.encode(instance.spec)), "record")
        if row.get("last_error") is not None:
            assert instance.state.last_error is not None
            error = INSTANCE_ERROR.encode(instance.state.last_error)
            assert_carried(stored_json(row["last_error"]), json.loads(error), "last_error")
    for row in tables.get("snapshots", []):
        raws = await storage.snapshots.raw_between(row["instance_id"], FAR_PAST, FAR_FUTURE)
        assert [raw.collected_at.timestamp() for raw in raws] == [row["collected_at"]]
        (document,) = await storage.snapshots.history_json(row["instance_id"], FAR_PAST, 10)
        snapshot = msgspec.json.decode(document, type=InstanceSnapshot)  # as analysis reads history
        assert_carried(stored_json(row["snapshot"]), msgspec.to_builtins(snapshot), "snapshot")
    for row in tables.get("plans", []):
        plan = await storage.plans.get(row["plan_id"])
        assert plan is not None
        assert_carried(stored_json(row["doc"]), json.loads(PLAN.encode(plan)), "plan")
    alerts = await storage.alerts.list(limit=1000)
    assert len(alerts) == len(tables.get("alerts", []))
    for row, alert in zip(tables.get("alerts", []), alerts, strict=True):
        assert_carried(stored_json(row["doc"]), json.loads(ALERT.encode(alert)), "alert")
    for row in tables.get("workflows", []):
        workflow_id = row["workflow_id"]
        stored = await storage.workflows.get(workflow_id)
        assert stored is not None
        assert stored.version == row["version"]
        assert_carried(stored_json(row["doc"]), json.loads(WORKFLOW.encode(stored.doc)), "workflow")
        events = await storage.workflows.events(workflow_id)
        stored_events = [e for e in tables["workflow_events"] if e["workflow_id"] == workflow_id]
        for event_row, event in zip(stored_events, events, strict=True):
            assert_carried(stored_json(event_row["event"]), json.loads(WORKFLOW_EVENT.encode(event)), "event")
        windows = await storage.workflows.windows(workflow_id, 1000)
        stored_windows = [w for w in tables["workflow_windows"] if w["workflow_id"] == workflow_id]
        for window_row, window in zip(stored_windows, windows, strict=True):
            assert_carried(stored_json(window_row["window"]), json.loads(WINDOW.encode(window)), "window")
        outbox = await storage.workflows.outbox_of(workflow_id)
        stored_outbox = [o for o in tables["workflow_outbox"] if o["workflow_id"] == workflow_id]
        payloads = {o["event_id"]: column_value(o["payload"]) for o in stored_outbox}
        assert {o.event_id: o.payload for o in outbox} == payloads  # sent verbatim, never decoded
        claims = {o["event_id"]: o.get("claimed_by") for o in stored_outbox}
        assert {o.event_id: o.claimed_by for o in outbox} == claims
    for row in tables.get("leases", []):
        lease = await storage.leases.read(row["name"])
        assert lease is not None
        assert (lease.holder, lease.expires_at) == (row["holder"], row["expires_at"])
    for row in tables.get("judgements", []):
        judgement = await storage.judgements.get(row["judgement_id"])
        assert judgement is not None
        assert judgement.version == row["version"]
        assert_carried(stored_json(row["doc"]), json.loads(JUDGEMENT.encode(judgement.doc)), "judgement")


@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.parametrize("golden", GOLDEN, ids=[path.stem for path in GOLDEN])
def test_rows_of_every_schema_version_decode_with_the_current_code(kind: str, golden: Path, tmp_path: Path) -> None:
    version, tables = load(golden)

    async def main() -> None:
        storage = await open_seeded(kind, version, tables, tmp_path / "agent.db")
        try:
            await read_everything(storage, tables)
        finally:
            await storage.close()

    asyncio.run(main())


def test_the_golden_files_cover_every_schema_version_that_stored_documents() -> None:
    versions = {load(path)[0] for path in GOLDEN}
    assert versions == set(range(2, len(MIGRATIONS) + 1)), "a new migration needs its golden rows (see the README)"


#: The record type of every stored JSON column.
RECORD_OF: dict[tuple[str, str], type[msgspec.Struct]] = {
    ("instances", "record"): records.InstanceRecord,
    ("instances", "last_error"): records.InstanceErrorRecord,
    ("plans", "doc"): records.PlanRecord,
    ("alerts", "doc"): records.AlertRecord,
    ("workflows", "doc"): records.WorkflowDocRecord,
    ("workflow_events", "event"): records.WorkflowEventRecord,
    ("workflow_windows", "window"): records.WindowRecordDoc,
    ("judgements", "doc"): records.JudgementRecord,
}


#: Fields holding a nested struct (not a map of names, where a new key is data, not a field).
NESTED_STRUCTS = (
    "gpu",
    "model",
    "slo",
    "approval",
    "actuator",
    "monitor",
    "guardrails",
    "judge",
    "canary",
    "constraints",
)


def defaulted_fields(record: type[msgspec.Struct]) -> set[str]:
    info = msgspec.inspect.type_info(record)
    assert isinstance(info, msgspec.inspect.StructType)
    return {field.encode_name for field in info.fields if not field.required}


def from_another_version(tables: Tables) -> Tables:
    """Each document with a field from a newer agent, at the top and one level down, and without
    every field that has a default (as an older agent that never wrote them)."""
    changed: Tables = {}
    for table, rows in tables.items():
        changed[table] = []
        for row in rows:
            row = dict(row)
            for (record_table, column), record in RECORD_OF.items():
                if record_table != table or row.get(column) is None:
                    continue
                document = stored_json(row[column])
                for name in NESTED_STRUCTS:
                    if isinstance(document.get(name), dict):
                        document[name]["field_from_a_newer_agent"] = {"any": ["shape"]}
                document = {k: v for k, v in document.items() if k not in defaulted_fields(record)}
                document["field_from_a_newer_agent"] = 42
                row[column] = {"json": json.dumps(document)}
            changed[table].append(row)
    return changed


@pytest.mark.parametrize("kind", BACKENDS)
def test_documents_with_unknown_fields_and_without_defaulted_ones_decode(kind: str, tmp_path: Path) -> None:
    version, tables = load(LATEST)
    changed = from_another_version(tables)

    async def main() -> None:
        storage = await open_seeded(kind, version, changed, tmp_path / "agent.db")
        try:
            workflow = await storage.workflows.get(changed["workflows"][0]["workflow_id"])
            assert workflow is not None
            assert workflow.doc.effects == []
            assert workflow.doc.judge_plan is None
            assert workflow.doc.approval.required is False
            instance = await storage.instances.get(changed["instances"][0]["instance_id"])
            assert instance is not None
            assert instance.spec.labels == {}
            assert instance.spec.discovered is False
            judgement = await storage.judgements.get(changed["judgements"][0]["judgement_id"])
            assert judgement is not None
            assert judgement.doc.windows == 0
            plan = await storage.plans.get(changed["plans"][0]["plan_id"])
            assert plan is not None
            assert plan.constraints.allow_quantization is True
            assert len(await storage.alerts.list()) == 1
            events = await storage.workflows.events(changed["workflows"][0]["workflow_id"])
            assert events
            assert all(event.details == {} for event in events)
            windows = await storage.workflows.windows(changed["workflows"][0]["workflow_id"], 10)
            assert windows
            assert all(window.evidence is None for window in windows)
        finally:
            await storage.close()

    asyncio.run(main())
