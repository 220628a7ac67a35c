"""Stored record types stay lenient: nothing a stored document decodes into forbids unknown fields or bounds a value.

Why a test: a record embeds some domain structs as they are (the judge's plan, window figures);
if one of them, or a record itself, ever forbade unknown fields, a document written by a newer
agent (a rollback of the upgrade) would stop decoding; a bound tightened later would do the same
to documents stored before. Checked over every type reachable from
every record, so a struct added deep inside a stored document is covered too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import msgspec
import pytest
from msgspec import inspect

from performance_agent.storage import records
from performance_agent.storage.records import inner_types

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


#: The `Meta` constraints msgspec checks while decoding (`tz` included: a stored time is what it is).
BOUNDS = ("gt", "ge", "lt", "le", "multiple_of", "pattern", "min_length", "max_length", "tz")


def bounded_values(info: inspect.Type, seen: set[type]) -> Iterator[str]:
    """Where a value reachable from `info` is bounded, as `Struct.field: bounds`."""
    for struct in reachable_structs(info, seen):
        for field in struct.fields:
            pending = [field.type]
            while pending:
                inner = pending.pop()
                if isinstance(inner, inspect.StructType):
                    continue  # reached on its own by reachable_structs
                bounds = {name: getattr(inner, name) for name in BOUNDS if getattr(inner, name, None) is not None}
                if bounds:
                    yield f"{struct.cls.__qualname__}.{field.name}: {bounds}"
                pending.extend(inner_types(inner))


@pytest.mark.parametrize("record", RECORDS, ids=[record.__name__ for record in RECORDS])
def test_nothing_a_stored_document_decodes_into_bounds_a_value(record: type[msgspec.Struct]) -> None:
    assert list(bounded_values(inspect.type_info(record), set())) == []


@pytest.mark.parametrize(
    ("record", "domain"),
    [
        (record, domain)
        for record, domain in records.COUNTERPARTS.items()
        if record.__name__.endswith(("Record", "Doc")) and record.__module__ == records.__name__
    ],
    ids=lambda cls: cls.__name__,
)
def test_every_field_of_a_stored_domain_type_has_a_place_in_its_record(
    record: type[msgspec.Struct], domain: type[msgspec.Struct]
) -> None:
    """A domain field its record lacks would be dropped silently each time the document is written."""
    assert set(domain.__struct_fields__) <= set(record.__struct_fields__)


def test_every_stored_column_has_a_codec_over_its_record() -> None:
    assert {codec.record for codec in records.CODECS} == set(RECORDS)


class Strict(msgspec.Struct, forbid_unknown_fields=True):
    value: int


class Holder(msgspec.Struct):
    items: dict[str, list[Strict | None]]
    limited: Annotated[int, msgspec.Meta(ge=1)] | None = None


def test_a_forbidding_struct_deep_inside_is_found() -> None:
    found = [info.cls for info in reachable_structs(inspect.type_info(Holder), set()) if info.forbid_unknown_fields]
    assert found == [Strict]


def test_a_bounded_value_is_found() -> None:
    assert list(bounded_values(inspect.type_info(Holder), set())) == ["Holder.limited: {'ge': 1}"]
