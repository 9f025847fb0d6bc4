"""
Reading JSON records: a record written straight as OData JSON is exactly
its row written by the entity encoder, whatever the record holds, whichever
properties are selected, and an unreadable value fails the same way both ways.
"""

from __future__ import annotations

import datetime
import json
from decimal import Decimal
from typing import Any

import pytest

from odata_klein.errors import BadGateway
from odata_klein.model import EntitySet, EntityType, Model, Property
from odata_klein.negotiation import JsonFormat
from odata_klein.records import RecordField, RecordObject, RecordReader, UnreadableValue
from odata_klein.serializer import EntityEncoder


def to_date(value: Any) -> datetime.date:
    try:
        return datetime.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise UnreadableValue(value) from None


def to_decimal(value: Any) -> Decimal:
    if isinstance(value, str):
        try:
            return Decimal(value)
        except ArithmeticError:
            pass
    raise UnreadableValue(value)


def to_text(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise UnreadableValue(value)


def to_flag(value: Any) -> bool:
    raise UnreadableValue(value)


PROPERTIES = (
    Property("ID", "Edm.String", nullable=False),
    Property("Day", "Edm.Date"),
    Property("Hours", "Edm.Decimal", scale=-1),
    Property("Done", "Edm.Boolean"),
    Property("Extra", "NS.Extra"),
    Property("ExtraText", "Edm.String"),
    Property("Phase", "Edm.String"),
    Property("Budget", "Edm.Decimal", scale=-1),
    Property("Unsourced", "Edm.String"),
)
ENTITY_TYPE = EntityType("Thing", ("ID",), PROPERTIES)
MODEL = Model("NS", "Container", (ENTITY_TYPE,), (EntitySet("Things", "NS.Thing"),))


def unreadable(field: Any, value: Any) -> BadGateway:
    return BadGateway(f"unreadable {field}: {value!r}")


READER = RecordReader(
    [
        RecordField("ID", "ID", to_text, str),
        RecordField("Day", "Date", to_date),
        RecordField("Hours", "Hours", to_decimal, Decimal),
        RecordField("Done", "Done", to_flag, bool),
        RecordField("Phase", "Phase", to_text, str, parent="Extra"),
        RecordField("Budget", "Budget", to_decimal, Decimal, parent="Extra", empty_is_null=True),
    ],
    [RecordObject("Extra", "Custom", "ExtraText")],
    unreadable,
)

ENCODER = EntityEncoder(MODEL, ENTITY_TYPE, JsonFormat(), PROPERTIES)

RECORDS: list[dict[str, Any]] = [
    {"ID": "a", "Date": "2026-01-02", "Hours": Decimal("7.50"), "Done": True,
     "Custom": {"Phase": "Design", "Budget": Decimal("12"), "Other": [1, None]}},
    {"ID": 17, "Date": None, "Hours": "0.25", "Custom": {"Budget": "", "Phase": 'say "hi" 日本'}},
    {"ID": "c", "Hours": Decimal("NaN"), "Custom": None},
    {"ID": "d", "Done": False, "Custom": {}},
    {"ID": "e", "Unsourced": "ignored: no field reads it", "Custom": {"Phase": None}},
]


@pytest.mark.parametrize("fmt", [JsonFormat(), JsonFormat("none"), JsonFormat(ieee754_compatible=True)])
@pytest.mark.parametrize("selected", [PROPERTIES, PROPERTIES[:4], (PROPERTIES[6], PROPERTIES[0]), (PROPERTIES[5],)])
def test_a_record_written_directly_is_its_row_written(fmt: JsonFormat, selected: tuple[Property, ...]) -> None:
    encoder = EntityEncoder(MODEL, ENTITY_TYPE, fmt, selected)
    write = READER.writer(encoder)
    assert write is not None
    for record in RECORDS:
        assert write(record) == encoder.encode(READER.convert(record)), record


def test_a_writer_remembers_converted_texts_only_for_what_it_read() -> None:
    """Dates are converted once per text and writer; other values of equal hash are not taken for them."""
    write = READER.writer(EntityEncoder(MODEL, ENTITY_TYPE, JsonFormat(), PROPERTIES))
    assert write is not None
    same_day = [{"ID": str(n), "Date": "2026-01-02"} for n in range(3)]
    for record in [*same_day, *RECORDS, *RECORDS]:
        assert write(record) == ENCODER.encode(READER.convert(record)), record
    with pytest.raises(BadGateway):
        write({"ID": "x", "Date": 20260102})
    with pytest.raises(BadGateway):
        write({"ID": "x", "Date": "2026-01-02T"})


def test_a_projected_object_is_written_alike_both_ways() -> None:
    encoder = EntityEncoder(MODEL, ENTITY_TYPE, JsonFormat(), PROPERTIES, projections={"Extra": ("Phase", "Other")})
    write = READER.writer(encoder)
    assert write is not None
    for record in RECORDS:
        assert write(record) == encoder.encode(READER.convert(record)), record
    assert json.loads(write(RECORDS[0]))["Extra"] == {"Phase": "Design", "Other": [1, None]}


def test_rows_hold_the_typed_values() -> None:
    row = READER.convert(RECORDS[1])
    assert row["ID"] == "17" and row["Day"] is None and row["Hours"] == Decimal("0.25")
    assert row["Budget"] is None and row["Phase"] == 'say "hi" 日本'
    assert json.loads(row["ExtraText"]) == RECORDS[1]["Custom"]
    assert READER.convert(RECORDS[2])["Extra"] is None and READER.convert(RECORDS[2])["ExtraText"] is None
    assert "Unsourced" not in row


@pytest.mark.parametrize(
    "record, message",
    [
        ({"ID": "x", "Date": "yesterday"}, "unreadable Date: 'yesterday'"),
        ({"ID": "x", "Done": "yes"}, "unreadable Done: 'yes'"),
        ({"ID": "x", "Custom": ["not", "an", "object"]}, "unreadable Custom: ['not', 'an', 'object']"),
        ({"ID": "x", "Custom": {"Budget": "lots"}}, "unreadable Custom/Budget: 'lots'"),
        (["not a record"], "unreadable None: ['not a record']"),
    ],
)
def test_an_unreadable_value_fails_alike_both_ways(record: Any, message: str) -> None:
    write = READER.writer(EntityEncoder(MODEL, ENTITY_TYPE, JsonFormat(), PROPERTIES))
    assert write is not None
    for read in (READER.convert, write):
        with pytest.raises(BadGateway) as raised:
            read(record)
        assert raised.value.message == message


def test_no_writer_for_entities_written_with_more_than_their_properties() -> None:
    assert READER.writer(EntityEncoder(MODEL, ENTITY_TYPE, JsonFormat("full"), PROPERTIES)) is None


def test_a_field_inside_an_undeclared_object_is_refused() -> None:
    with pytest.raises(ValueError):
        RecordReader([RecordField("Phase", "Phase", to_text, parent="Nowhere")], [], unreadable)
