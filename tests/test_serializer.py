"""
The generated row encoders write exactly what the per-value encoders write,
whatever values rows hold: the inline forms are only a faster way to it.
"""

from __future__ import annotations

import datetime
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest

from odata_klein.model import EntitySet, EntityType, Model, Property
from odata_klein.negotiation import JsonFormat
from odata_klein.serializer import (
    EncodedJsonObject,
    EntityEncoder,
    ObjectEncoder,
    encode_json_value,
    property_encoder,
)

PROPERTIES = (
    Property("ID", "Edm.String", nullable=False),
    Property("Flag", "Edm.Boolean"),
    Property("Amount", "Edm.Decimal", scale=-1),
    Property("Day", "Edm.Date"),
    Property("At", "Edm.TimeOfDay"),
    Property("When", "Edm.DateTimeOffset"),
    Property("Count", "Edm.Int64"),
    Property("Ratio", "Edm.Double"),
    Property("Key", "Edm.Guid"),
    Property("Tags", "Edm.String", collection=True),
    Property("Extra", "Edm.Untyped"),
    Property("Open", "NS.OpenThing"),
)
ENTITY_TYPE = EntityType("Thing", ("ID",), PROPERTIES)
MODEL = Model("NS", "Container", (ENTITY_TYPE,), (EntitySet("Things", "NS.Thing"),))

ROWS: list[dict[str, Any]] = [
    {
        "ID": 'a "quoted" \\ name', "Flag": True, "Amount": Decimal("7.250"), "Day": datetime.date(2026, 2, 3),
        "At": datetime.time(8, 30, 15, 500), "When": datetime.datetime(2026, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        "Count": 2**60, "Ratio": 0.1, "Key": uuid.UUID(int=5), "Tags": ["x", None, "ü"],
        "Extra": {"a": [1, Decimal("2.50"), None]}, "Open": EncodedJsonObject({"Phase": "Design", "n": Decimal("1")}),
    },
    {"ID": "b", "Flag": False, "Amount": Decimal("NaN"), "Count": 0, "Ratio": float("inf"), "Extra": "text", "Open": {"x": True}},
    {"ID": "c", "Amount": Decimal("-Infinity"), "Extra": EncodedJsonObject({}), "Open": None},
    {"ID": "d", "Amount": Decimal("3E+2"), "Extra": [], "Flag": None},
]


def reference(row: dict[str, Any], fmt: JsonFormat) -> str:
    """A row written one value at a time with the per-property encoders."""
    parts = []
    for prop in PROPERTIES:
        value = row.get(prop.name)
        encoded = "null" if value is None else property_encoder(prop, fmt)(value)
        parts.append(json.dumps(prop.name) + ":" + encoded)
    return "{" + ",".join(parts) + "}"


@pytest.mark.parametrize("fmt", [JsonFormat(), JsonFormat("none"), JsonFormat(ieee754_compatible=True)])
def test_generated_rows_are_the_per_value_encodings(fmt: JsonFormat) -> None:
    encoder = EntityEncoder(MODEL, ENTITY_TYPE, fmt, PROPERTIES)
    for row in ROWS:
        assert encoder.encode(row) == reference(row, fmt)
    written = json.loads(encoder.encode(ROWS[0]))
    assert written["Amount"] == (7.25 if not fmt.ieee754_compatible else "7.250")
    assert written["Open"] == {"Phase": "Design", "n": 1}


def test_object_encoder_writes_every_key_order_as_the_generic_encoder() -> None:
    # Any keys: the last object's is deliberately not text.
    objects: list[dict[Any, Any]] = [
        {"TicketReference": "T-1", "WorkLocation": None, "Overtime": False},
        {"Overtime": True, "TicketReference": 'say "x"', "WorkLocation": "Büro"},
        {"TicketReference": None, "WorkLocation": None, "Overtime": None},
        {"Nested": {"b": [1, Decimal("0.10")], "c": None}, "Number": 12},
        {"{braces}": "}{", 'quote " and \\ backslash': True, "tab\t": 0.5},
        {},
        {1: "a number as key"},
    ]
    encode = ObjectEncoder(max_orders=4)
    for value in objects * 2:
        assert encode(value) == encode_json_value(value)
    # Beyond max_orders, and for non-text keys, the generic encoder writes them.
    assert len(encode._by_order) == 4
