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
from odata_klein.serializer import EncodedJsonObject, ObjectEncoder

from .schema import CUSTOM_FIELDS, CUSTOM_FIELDS_STR, CustomFieldDefinition

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


# The Python type a converter returns its input as: the generated code tests for it first.
_NATIVE: Mapping[Optional[Edm], str] = {Edm.STRING: "str", Edm.BOOLEAN: "bool", Edm.DECIMAL: "Decimal"}


class RowConverter:
    """
    Converts ClickTime records of one entity type.  ``convert`` is generated
    as one straight-line function (names enter its source only through
    ``repr``), because it runs for every row of every response.
    """

    def __init__(self, entity_type: EntityType, definitions: list[CustomFieldDefinition]) -> None:
        self._type_name = entity_type.name
        custom_names = {d.property_name: d.name for d in definitions}
        namespace: dict[str, Any] = {
            "Mapping": Mapping,
            "Decimal": Decimal,
            "EncodedJsonObject": EncodedJsonObject,
            # ClickTime sends each type's custom fields in one order of keys.
            "encode_custom": ObjectEncoder(),
            "to_string": _to_string,
            "Unreadable": _Unreadable,
            "unreadable": self._unreadable,
        }
        lines = [
            "def convert(record):",
            # An exact-type test first: isinstance against typing's Mapping is slow.
            "    if type(record) is not dict and not isinstance(record, Mapping):",
            "        raise unreadable(None, record)",
            "    get = record.get",
            "    field = None",
            "    try:",
        ]
        values: list[str] = []
        custom_lines: list[str] = []
        for index, prop in enumerate(entity_type.properties):
            if prop.name in (CUSTOM_FIELDS, CUSTOM_FIELDS_STR):
                continue
            edm = prop.edm
            converter = _CONVERTERS.get(edm) if edm is not None else None
            assert converter is not None, prop
            namespace[f"convert_{index}"] = converter
            # Values already of the property's type (as ClickTime mostly sends them) skip the call.
            native = _NATIVE.get(edm)
            converted = f"value if type(value) is {native} else convert_{index}(value)" if native else f"convert_{index}(value)"
            if prop.name in custom_names:
                field_name = custom_names[prop.name]
                # An empty text is how ClickTime shows an unset non-text custom field.
                empty = "" if edm is Edm.STRING else " or value == ''"
                custom_lines += [
                    f"        field = {CUSTOM_FIELDS + '/' + field_name!r}",
                    f"        value = custom_values.get({field_name!r})",
                    f"        value_{index} = None if value is None{empty} else {converted}",
                ]
            else:
                lines += [
                    f"        field = {prop.name!r}",
                    f"        value = get({prop.name!r})",
                    f"        value_{index} = None if value is None else {converted}",
                ]
            values.append(f"{prop.name!r}: value_{index}")
        if entity_type.property(CUSTOM_FIELDS) is not None:
            lines += [
                f"        field = {CUSTOM_FIELDS!r}",
                f"        value = custom = get({CUSTOM_FIELDS!r})",
                "        if custom is None:",
                "            custom_values = {}",
                "        else:",
                "            if type(custom) is not dict and not isinstance(custom, Mapping):",
                "                raise Unreadable(custom)",
                "            custom = custom_values = EncodedJsonObject.with_text(custom, encode_custom(custom))",
                *custom_lines,
            ]
            values += [
                f"{CUSTOM_FIELDS!r}: custom",
                f"{CUSTOM_FIELDS_STR!r}: None if custom is None else custom.text",
            ]
        lines += [
            "    except Unreadable:",
            "        raise unreadable(field, value)",
            "    return {" + ", ".join(values) + "}",
        ]
        exec("\n".join(lines), namespace)
        self.convert: Callable[[Mapping[str, Any]], Row] = namespace["convert"]

    def _unreadable(self, field: Optional[str], value: Any) -> BadGateway:
        if field is None:
            return BadGateway(f"ClickTime sent a {self._type_name} record that is not an object")
        return BadGateway(
            f"ClickTime sent a {self._type_name} record whose {field} is not readable",
            details=[ErrorDetail("UnexpectedValue", f"{field}: {str(value)[:80]!r}", field)],
        )
