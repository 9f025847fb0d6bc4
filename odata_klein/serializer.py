"""
OData JSON: encoding rows and values as text.

`EntityEncoder` is compiled once per response (entity type, selected
properties, metadata level) into a list of per-property encoders, so that
writing a row is a loop over precomputed fragments.  Collections are written
by the service as a stream: `collection_start`, one `encode` per row, then
`collection_end`.
"""

from __future__ import annotations

import base64
import datetime
import json
import math
import uuid
from decimal import Decimal
from typing import Any, Callable, Mapping, Optional, Sequence

from .model import Edm, EntityType, Model, Property
from .negotiation import JsonFormat

_encode_string: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]

ValueEncoder = Callable[[Any], str]


def _format_duration(value: datetime.timedelta) -> str:
    total_us = (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds
    sign = "-" if total_us < 0 else ""
    total_us = abs(total_us)
    days, rest = divmod(total_us, 86400 * 1_000_000)
    hours, rest = divmod(rest, 3600 * 1_000_000)
    minutes, rest = divmod(rest, 60 * 1_000_000)
    seconds, micros = divmod(rest, 1_000_000)
    text = f"{sign}P{days}DT{hours}H{minutes}M{seconds}"
    if micros:
        text += f".{micros:06d}".rstrip("0")
    return text + "S"


def _format_datetime(value: datetime.datetime) -> str:
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _format_double(value: float) -> str:
    if math.isnan(value):
        return '"NaN"'
    if math.isinf(value):
        return '"INF"' if value > 0 else '"-INF"'
    return repr(float(value))


def _format_decimal(value: Decimal) -> str:
    if not value.is_finite():
        return '"NaN"' if value.is_nan() else ('"INF"' if value > 0 else '"-INF"')
    return str(value)


def encode_json_value(value: Any) -> str:
    """Untyped or complex values (``CustomFields``): JSON as it is, decimals exact."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _encode_string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return _format_decimal(value)
    if isinstance(value, float):
        return _format_double(value)
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{_encode_string(str(k))}:{encode_json_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(encode_json_value(item) for item in value) + "]"
    if isinstance(value, datetime.datetime):
        return '"' + _format_datetime(value) + '"'
    if isinstance(value, (datetime.date, datetime.time)):
        return '"' + value.isoformat() + '"'
    if isinstance(value, datetime.timedelta):
        return '"' + _format_duration(value) + '"'
    if isinstance(value, uuid.UUID):
        return f'"{value}"'
    if isinstance(value, bytes):
        return '"' + base64.urlsafe_b64encode(value).decode("ascii") + '"'
    return _encode_string(str(value))


def primitive_encoder(edm: Optional[Edm], fmt: JsonFormat) -> ValueEncoder:
    """How to write one value of a primitive type (None: untyped/complex)."""
    if edm is Edm.STRING:
        return _encode_string
    if edm is Edm.BOOLEAN:
        return lambda value: "true" if value else "false"
    if edm in (Edm.BYTE, Edm.SBYTE, Edm.INT16, Edm.INT32):
        return str
    if edm is Edm.INT64:
        return (lambda value: f'"{value}"') if fmt.ieee754_compatible else str
    if edm is Edm.DECIMAL:
        if fmt.ieee754_compatible:
            return lambda value: f'"{_format_decimal(value)}"'
        return _format_decimal
    if edm in (Edm.DOUBLE, Edm.SINGLE):
        return _format_double
    if edm is Edm.DATE or edm is Edm.TIME_OF_DAY:
        return lambda value: '"' + value.isoformat() + '"'
    if edm is Edm.DATE_TIME_OFFSET:
        return lambda value: '"' + _format_datetime(value) + '"'
    if edm is Edm.DURATION:
        return lambda value: '"' + _format_duration(value) + '"'
    if edm is Edm.GUID:
        return lambda value: f'"{value}"'
    if edm is Edm.BINARY:
        return lambda value: '"' + base64.urlsafe_b64encode(value).decode("ascii") + '"'
    return encode_json_value


def property_encoder(prop: Property, fmt: JsonFormat) -> ValueEncoder:
    """The encoder of a property's non-null value, collections included."""
    encode_one = primitive_encoder(prop.edm, fmt)
    if prop.collection:
        return lambda values: "[" + ",".join("null" if v is None else encode_one(v) for v in values) + "]"
    return encode_one


# Types a JSON reader infers without help; others get @odata.type in full metadata.
_IMPLIED_TYPES = frozenset({Edm.STRING.value, Edm.BOOLEAN.value, Edm.DOUBLE.value})


def _type_annotation(prop: Property, model: Model) -> Optional[str]:
    if prop.type in _IMPLIED_TYPES and not prop.collection:
        return None
    short = prop.type[4:] if prop.type.startswith("Edm.") else prop.type
    if prop.collection:
        short = f"Collection({short})"
    return f"#{short}"


class EntityEncoder:
    """Writes rows of one entity type as JSON objects at one metadata level."""

    def __init__(
        self,
        model: Model,
        entity_type: EntityType,
        fmt: JsonFormat,
        properties: Sequence[Property],
        entity_url: Optional[Callable[[Mapping[str, Any]], str]] = None,
    ) -> None:
        self._full = fmt.metadata == "full"
        self._entity_url = entity_url
        self._type_name = f"#{model.qualified(entity_type.name)}"
        self._navigation_names = [nav.name for nav in entity_type.navigation_properties]
        self._fields: list[tuple[str, str, ValueEncoder]] = []
        for prop in properties:
            prefix = _encode_string(prop.name) + ":"
            annotation = _type_annotation(prop, model) if self._full else None
            if annotation is not None:
                prefix = f'{_encode_string(prop.name + "@odata.type")}:"{annotation}",' + prefix
            self._fields.append((prop.name, prefix, property_encoder(prop, fmt)))

    def encode(self, row: Mapping[str, Any]) -> str:
        parts = []
        if self._full:
            parts.append(f'"@odata.type":"{self._type_name}"')
            if self._entity_url is not None:
                url = self._entity_url(row)
                parts.append(f'"@odata.id":{_encode_string(url)}')
                parts.append(f'"@odata.readLink":{_encode_string(url)}')
        get = row.get
        for name, prefix, encode in self._fields:
            value = get(name)
            parts.append(prefix + ("null" if value is None else encode(value)))
        if self._full and self._entity_url is not None:
            base = self._entity_url(row)
            for nav in self._navigation_names:
                parts.append(f'{_encode_string(nav + "@odata.navigationLink")}:{_encode_string(base + "/" + nav)}')
        return "{" + ",".join(parts) + "}"

    def encode_with_context(self, row: Mapping[str, Any], context: Optional[str]) -> str:
        """A single entity as a whole response body."""
        body = self.encode(row)
        if context is None:
            return body
        head = f'"@odata.context":{_encode_string(context)}'
        return "{" + head + ("," + body[1:] if len(body) > 2 else "}")


def collection_start(context: Optional[str], count: Optional[int]) -> str:
    parts = []
    if context is not None:
        parts.append(f'"@odata.context":{_encode_string(context)}')
    if count is not None:
        parts.append(f'"@odata.count":{count}')
    parts.append('"value":[')
    return "{" + ",".join(parts)


def collection_end(next_link: Optional[str]) -> str:
    if next_link is None:
        return "]}"
    return f'],"@odata.nextLink":{_encode_string(next_link)}}}'


def property_document(context: Optional[str], prop: Property, value: Any, fmt: JsonFormat) -> str:
    parts = []
    if context is not None:
        parts.append(f'"@odata.context":{_encode_string(context)}')
    parts.append('"value":' + property_encoder(prop, fmt)(value))
    return "{" + ",".join(parts) + "}"


def raw_value(prop: Property, value: Any) -> str:
    """The text of a primitive value for ``/$value``."""
    encoded = primitive_encoder(prop.edm, JsonFormat())(value)
    if prop.edm is Edm.STRING:
        return str(value)
    return encoded.strip('"')
