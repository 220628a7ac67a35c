"""The stored record types stay lenient: no struct a stored document decodes into forbids unknown fields.

Why a test: a record embeds some domain structs as they are (the judge's plan, window figures);
if one of them, or a record itself, ever forbade unknown fields, a document written by a newer
agent (a rollback of the upgrade) would stop decoding. Checked over every type reachable from
every record, so a struct added deep inside a stored document is covered too.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest
from msgspec import inspect

from performance_agent.storage import records

RECORDS: tuple[type[msgspec.Struct], ...] = (
    records.InstanceRecord,
    records.InstanceErrorRecord,
    records.PlanRecord,
    records.AlertRecord,
    records.WorkflowDocRecord,
    records.WorkflowEventRecord,
    records.WindowRecordDoc,
    records.JudgementRecord,
)


def inner_types(info: inspect.Type) -> list[inspect.Type]:
    """The types one level inside `info` (a struct's fields, a container's items, a union's members)."""
    if isinstance(info, inspect.StructType):
        return [field.type for field in info.fields]
    if isinstance(info, inspect.Metadata):
        return [info.type]
    if isinstance(info, (inspect.UnionType, inspect.TupleType)):
        return list(info.types if isinstance(info, inspect.UnionType) else info.item_types)
    if isinstance(info, (inspect.ListType, inspect.SetType, inspect.FrozenSetType, inspect.VarTupleType)):
        return [info.item_type]
    if isinstance(info, inspect.DictType):
        return [info.value_type]
    return []


def reachable_structs(info: inspect.Type, seen: set[type]) -> Iterator[inspect.StructType]:
    if isinstance(info, inspect.StructType):
        if info.cls in seen:
            return
        seen.add(info.cls)
        yield info
    for inner in inner_types(info):
        yield from reachable_structs(inner, seen)


@pytest.mark.parametrize("record", RECORDS, ids=[record.__name__ for record in RECORDS])
def test_nothing_a_stored_document_decodes_into_forbids_unknown_fields(record: type[msgspec.Struct]) -> None:
    structs = list(reachable_structs(inspect.type_info(record), set()))
    assert structs[0].cls is record
    strict = [info.cls.__qualname__ for info in structs if info.forbid_unknown_fields]
    assert strict == [], f"{record.__name__} reaches structs that forbid unknown fields: {strict}"


class Strict(msgspec.Struct, forbid_unknown_fields=True):
    value: int


class Holder(msgspec.Struct):
    items: dict[str, list[Strict | None]]


def test_a_forbidding_struct_deep_inside_is_found() -> None:
    found = [info.cls for info in reachable_structs(inspect.type_info(Holder), set()) if info.forbid_unknown_fields]
    assert found == [Strict]
