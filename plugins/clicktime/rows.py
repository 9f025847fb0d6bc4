"""
From ClickTime's JSON records to typed OData rows.

A `RowConverter` is built once per entity type and caller model, and turns
each upstream record into a row of Python values of the property types
(see `odata_klein.model.Property`).  A value ClickTime sends in a form the
type does not admit is an upstream fault (502), never a silently wrong cell.
"""

from __future__ import annotations

import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Mapping, Optional

from odata_klein.errors import BadGateway, ErrorDetail
from odata_klein.interfaces import Row
from odata_klein.model import Edm, EntityType
from odata_klein.serializer import encode_json_value

from .schema import CUSTOM_FIELD_PREFIX, CUSTOM_FIELDS, CUSTOM_FIELDS_STR, CustomFieldDefinition

Converter = Callable[[Any], Any]


class _Unreadable(ValueError):
    pass


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise _Unreadable(value)
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # Only reached for floats produced outside the client's Decimal parsing.
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            parsed = Decimal(value.strip())
        except InvalidOperation:
            raise _Unreadable(value)
        if not parsed.is_finite():
            raise _Unreadable(value)
        return parsed
    raise _Unreadable(value)


def _to_date(value: Any) -> datetime.date:
    if isinstance(value, str):
        try:
            # ClickTime dates are YYYY-MM-DD; a date-time's date part is tolerated.
            return datetime.date.fromisoformat(value[:10])
        except ValueError:
            pass
    raise _Unreadable(value)


def _to_time(value: Any) -> datetime.time:
    if isinstance(value, str):
        try:
            return datetime.time.fromisoformat(value.strip())
        except ValueError:
            pass
    raise _Unreadable(value)


def _to_datetime(value: Any) -> datetime.datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise _Unreadable(value)
        # BI clients need an offset; ClickTime's date-times are UTC when they omit it.
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=datetime.timezone.utc)
    raise _Unreadable(value)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _Unreadable(value)


def _to_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        # IDs and codes sometimes arrive as numbers; their text is the value.
        return str(value)
    raise _Unreadable(value)


_CONVERTERS: Mapping[Edm, Converter] = {
    Edm.STRING: _to_string,
    Edm.BOOLEAN: _to_bool,
    Edm.DECIMAL: _to_decimal,
    Edm.DATE: _to_date,
    Edm.TIME_OF_DAY: _to_time,
    Edm.DATE_TIME_OFFSET: _to_datetime,
}


def _unreadable(type_name: str, field: str, value: Any) -> BadGateway:
    return BadGateway(
        f"ClickTime sent a {type_name} record whose {field} is not readable",
        details=[ErrorDetail("UnexpectedValue", f"{field}: {str(value)[:80]!r}", field)],
    )


class RowConverter:
    def __init__(self, entity_type: EntityType, definitions: list[CustomFieldDefinition]) -> None:
        self._type_name = entity_type.name
        self._plain: list[tuple[str, Optional[Converter]]] = []
        custom_names = {d.property_name: d for d in definitions}
        self._custom: list[tuple[str, str, Converter]] = []
        self._has_custom_fields = entity_type.property(CUSTOM_FIELDS) is not None
        for prop in entity_type.properties:
            if prop.name in (CUSTOM_FIELDS, CUSTOM_FIELDS_STR):
                continue
            edm = prop.edm
            converter = _CONVERTERS.get(edm) if edm is not None else None
            if prop.name.startswith(CUSTOM_FIELD_PREFIX) and prop.name in custom_names:
                assert converter is not None
                self._custom.append((prop.name, custom_names[prop.name].name, converter))
            else:
                # Strings need no conversion unless ClickTime sends something else.
                self._plain.append((prop.name, None if edm is Edm.STRING else converter))

    def convert(self, record: Mapping[str, Any]) -> Row:
        if not isinstance(record, Mapping):
            raise BadGateway(f"ClickTime sent a {self._type_name} record that is not an object")
        row: Row = {}
        get = record.get
        for name, converter in self._plain:
            value = get(name)
            if value is None:
                row[name] = None
            elif converter is None:
                row[name] = value if type(value) is str else self._convert(_to_string, name, value)
            else:
                row[name] = self._convert(converter, name, value)
        if self._has_custom_fields:
            custom = get(CUSTOM_FIELDS)
            if custom is not None and not isinstance(custom, Mapping):
                raise _unreadable(self._type_name, CUSTOM_FIELDS, custom)
            row[CUSTOM_FIELDS] = custom
            row[CUSTOM_FIELDS_STR] = None if custom is None else encode_json_value(custom)
            for prop_name, field_name, converter in self._custom:
                value = custom.get(field_name) if custom is not None else None
                # An empty text is how ClickTime shows an unset non-text custom field.
                if value is None or (value == "" and converter is not _to_string):
                    row[prop_name] = None
                else:
                    row[prop_name] = self._convert(converter, f"{CUSTOM_FIELDS}/{field_name}", value)
        return row

    def _convert(self, converter: Converter, field: str, value: Any) -> Any:
        try:
            return converter(value)
        except _Unreadable:
            raise _unreadable(self._type_name, field, value)
