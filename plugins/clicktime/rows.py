"""
From ClickTime's JSON records to typed OData rows.

A reader (`odata_klein.records.RecordReader`) is built once per entity type
and caller model: it turns each upstream record into a row of Python values
of the property types (see `odata_klein.model.Property`), or straight into
OData JSON.  A value ClickTime sends in a form the type does not admit is an
upstream fault (502), never a silently wrong cell.
"""

from __future__ import annotations

import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Mapping, Optional

from odata_klein.errors import BadGateway, ErrorDetail
from odata_klein.model import Edm, EntityType
from odata_klein.records import RecordField, RecordObject, RecordReader, UnreadableValue

from .schema import CUSTOM_FIELDS, CUSTOM_FIELDS_STR, CustomFieldDefinition

Converter = Callable[[Any], Any]


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise UnreadableValue(value)
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # Only reached for floats produced outside the client's Decimal parsing.
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            parsed = Decimal(value.strip())
        except InvalidOperation:
            raise UnreadableValue(value)
        if not parsed.is_finite():
            raise UnreadableValue(value)
        return parsed
    raise UnreadableValue(value)


def _to_date(value: Any) -> datetime.date:
    if isinstance(value, str):
        try:
            # ClickTime dates are YYYY-MM-DD; a date-time's date part is tolerated.
            return datetime.date.fromisoformat(value[:10])
        except ValueError:
            pass
    raise UnreadableValue(value)


def _to_time(value: Any) -> datetime.time:
    if isinstance(value, str):
        try:
            return datetime.time.fromisoformat(value.strip())
        except ValueError:
            pass
    raise UnreadableValue(value)


def _to_datetime(value: Any) -> datetime.datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise UnreadableValue(value)
        # BI clients need an offset; ClickTime's date-times are UTC when they omit it.
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=datetime.timezone.utc)
    raise UnreadableValue(value)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise UnreadableValue(value)


def _to_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        # IDs and codes sometimes arrive as numbers; their text is the value.
        return str(value)
    raise UnreadableValue(value)


_CONVERTERS: Mapping[Edm, Converter] = {
    Edm.STRING: _to_string,
    Edm.BOOLEAN: _to_bool,
    Edm.DECIMAL: _to_decimal,
    Edm.DATE: _to_date,
    Edm.TIME_OF_DAY: _to_time,
    Edm.DATE_TIME_OFFSET: _to_datetime,
}


# The Python type a converter returns its input as: values of it pass unconverted.
_NATIVE: Mapping[Optional[Edm], type] = {Edm.STRING: str, Edm.BOOLEAN: bool, Edm.DECIMAL: Decimal}


def record_reader(entity_type: EntityType, definitions: list[CustomFieldDefinition]) -> RecordReader:
    """
    The reader of ClickTime records of one entity type: every property is
    the record's field of that name, and each custom field column the field
    of its definition's name inside ``CustomFields`` (whose JSON text is
    ``CustomFieldsStr``).
    """
    custom_names = {d.property_name: d.name for d in definitions}
    fields = []
    for prop in entity_type.properties:
        if prop.name in (CUSTOM_FIELDS, CUSTOM_FIELDS_STR):
            continue
        edm = prop.edm
        convert = _CONVERTERS.get(edm) if edm is not None else None
        assert convert is not None, prop
        if prop.name in custom_names:
            # An empty text is how ClickTime shows an unset non-text custom field.
            fields.append(
                RecordField(
                    prop.name, custom_names[prop.name], convert, _NATIVE.get(edm),
                    parent=CUSTOM_FIELDS, empty_is_null=edm is not Edm.STRING,
                )
            )
        else:
            fields.append(RecordField(prop.name, prop.name, convert, _NATIVE.get(edm)))
    objects = (
        [RecordObject(CUSTOM_FIELDS, CUSTOM_FIELDS, CUSTOM_FIELDS_STR)]
        if entity_type.property(CUSTOM_FIELDS) is not None
        else []
    )
    type_name = entity_type.name

    def unreadable(field: Optional[str], value: Any) -> BadGateway:
        if field is None:
            return BadGateway(f"ClickTime sent a {type_name} record that is not an object")
        return BadGateway(
            f"ClickTime sent a {type_name} record whose {field} is not readable",
            details=[ErrorDetail("UnexpectedValue", f"{field}: {str(value)[:80]!r}", field)],
        )

    return RecordReader(fields, objects, unreadable)
