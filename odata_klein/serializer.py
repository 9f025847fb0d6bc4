"""
OData JSON: encoding rows and values as text.

`EntityEncoder` is compiled once per response (entity type, selected
properties, metadata level) into a list of per-property encoders, so that
writing a row is a loop over precomputed fragments.  Collections are written
by the service as a stream: `collection_start`, one `encode` per row, then
`collection_end`.

Expanded navigation properties (`InlineNavigation`) are written after the
structural properties from the values rows carry under their names (see
`odata_klein.expansion`); a row's other keys, navigation values fetched only
to evaluate a filter among them, are never written.
"""

from __future__ import annotations

import base64
import datetime
import json
import math
import uuid
from decimal import Decimal
from typing import Any, Callable, Mapping, Optional, Sequence

from .codegen import define
from .model import Edm, EntityType, Model, Property
from .negotiation import JsonFormat

encode_string: Callable[[str], str] = json.encoder.encode_basestring

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


class EncodedJsonObject(dict):
    """
    A JSON object that keeps its encoded text, so that writing it again
    (``CustomFields`` and ``CustomFieldsStr`` hold the same object) costs
    nothing.  Treat it as read-only: the text does not follow changes.
    """

    __slots__ = ("text",)

    def __init__(self, mapping: Mapping[str, Any]) -> None:
        super().__init__(mapping)
        self.text = _encode_object(self)

    @classmethod
    def with_text(cls, mapping: Mapping[str, Any], text: str) -> "EncodedJsonObject":
        """``mapping`` with ``text``, the JSON its caller has already encoded it as."""
        encoded = cls.__new__(cls)
        dict.update(encoded, mapping)
        encoded.text = text
        return encoded


def _encode_object(value: Mapping[Any, Any]) -> str:
    by_type = _JSON_BY_TYPE
    parts = []
    for key, item in value.items():
        encode = by_type.get(type(item), encode_json_value)
        parts.append(encode_string(key if type(key) is str else str(key)) + ":" + encode(item))
    return "{" + ",".join(parts) + "}"


def _encode_array(value: Sequence[Any]) -> str:
    return "[" + ",".join([encode_json_value(item) for item in value]) + "]"


class ObjectEncoder:
    """
    Encodes JSON objects whose keys come in a few orders, such as the custom
    fields of one entity type's records, with one generated function per
    order of keys (at most ``max_orders``; beyond them, generically).
    """

    def __init__(self, max_orders: int = 16) -> None:
        self._max_orders = max_orders
        self._by_order: dict[tuple[str, ...], Callable[[Mapping[str, Any]], str]] = {}

    def __call__(self, value: Mapping[str, Any]) -> str:
        keys = tuple(value)
        encode = self._by_order.get(keys)
        if encode is None:
            if len(self._by_order) >= self._max_orders or not all(type(key) is str for key in keys):
                return _encode_object(value)
            encode = self._by_order[keys] = _compile_object_encoder(keys)
        return encode(value)


def _compile_object_encoder(keys: tuple[str, ...]) -> Callable[[Mapping[str, Any]], str]:
    namespace: dict[str, Any] = {"encode_string": encode_string, "encode_json_value": encode_json_value}
    lines = ["def encode_object(value):"]
    template = "{{"
    for index, key in enumerate(keys):
        item = f"item_{index}"
        lines += [
            f"    {item} = value[{key!r}]",
            f"    {item} = encode_string({item}) if type({item}) is str else 'null' if {item} is None "
            f"else ('true' if {item} else 'false') if type({item}) is bool else encode_json_value({item})",
        ]
        literal = ("," if index else "") + encode_string(key) + ":"
        template += literal.replace("{", "{{").replace("}", "}}") + "{" + item + "}"
    lines.append(f"    return f{template + '}}'!r}")
    return define("\n".join(lines), "encode_object", namespace)


# Exact types first: rows hold these, and a dict lookup beats a chain of isinstance.
_JSON_BY_TYPE: dict[type, ValueEncoder] = {
    type(None): lambda value: "null",
    bool: lambda value: "true" if value else "false",
    str: encode_string,
    int: int.__repr__,
    Decimal: _format_decimal,
    float: _format_double,
    dict: _encode_object,
    EncodedJsonObject: lambda value: value.text,
    list: _encode_array,
    tuple: _encode_array,
}


def encode_json_value(value: Any) -> str:
    """Untyped or complex values (``CustomFields``): JSON as it is, decimals exact."""
    encode = _JSON_BY_TYPE.get(type(value))
    if encode is not None:
        return encode(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return encode_string(value)
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, Mapping):
        return _encode_object(value)
    if isinstance(value, (list, tuple)):
        return _encode_array(value)
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
    return encode_string(str(value))


def primitive_encoder(edm: Optional[Edm], fmt: JsonFormat) -> ValueEncoder:
    """How to write one value of a primitive type (None: untyped/complex)."""
    if edm is Edm.STRING:
        return encode_string
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


def _projected(members: Sequence[str]) -> ValueEncoder:
    """A complex value written with only ``members`` (those it has)."""

    def encode(value: Any) -> str:
        if not isinstance(value, Mapping):
            return encode_json_value(value)
        return _encode_object({member: value[member] for member in members if member in value})

    return encode


# Inline forms of the commonest encodings, for the generated row encoder:
# a Python call per value costs as much as the encoding itself.
_INLINE: dict[Edm, str] = {
    Edm.STRING: "encode_string({v})",
    Edm.BOOLEAN: "('true' if {v} else 'false')",
    Edm.DATE: "'\"' + {v}.isoformat() + '\"'",
    Edm.TIME_OF_DAY: "'\"' + {v}.isoformat() + '\"'",
}


def _inline(prop: Property, fmt: JsonFormat, encoder: ValueEncoder) -> Optional[str]:
    """Source text that encodes the non-null value ``{v}`` of ``prop`` as ``encoder`` would, if there is one."""
    if prop.collection:
        return None
    if prop.edm is Edm.DECIMAL and not fmt.ieee754_compatible:
        # Finite decimals are their own text; the rest go through the encoder.
        return "(str({v}) if type({v}) is Decimal and {v}.is_finite() else {encode}({v}))"
    if prop.edm is None and encoder is encode_json_value:
        # Untyped values that keep their encoded text (CustomFields) need no call.
        return "({v}.text if type({v}) is EncodedJsonObject else {encode}({v}))"
    return _INLINE.get(prop.edm) if prop.edm is not None else None


FieldWriting = tuple[str, str, ValueEncoder, Optional[str]]


def field_writing_namespace(fields: Sequence[FieldWriting]) -> dict[str, Any]:
    """The names that `encoded_value_source` expressions for ``fields`` need."""
    namespace: dict[str, Any] = {
        "encode_string": encode_string,
        "Decimal": Decimal,
        "EncodedJsonObject": EncodedJsonObject,
    }
    for index, (_, _, encoder, _) in enumerate(fields):
        namespace[f"encode_{index}"] = encoder
    return namespace


def encoded_value_source(field: FieldWriting, index: int, value: str) -> str:
    """
    The source of an expression writing the non-null value of variable
    ``value`` as field ``index`` is written: its inline form when it has one,
    else a call of its encoder.
    """
    inline = field[3]
    return inline.format(v=value, encode=f"encode_{index}") if inline is not None else f"encode_{index}({value})"


def joined_fields_source(fields: Sequence[FieldWriting], texts: Sequence[str], braces: bool) -> str:
    """
    The source of an f-string joining each field's prefix with its text, the
    value of the variable named in ``texts``; within ``{}`` when ``braces``.
    """
    template = "{{" if braces else ""
    for index, ((_, prefix, _, _), text) in enumerate(zip(fields, texts)):
        if not text.isidentifier():
            raise ValueError(f"{text!r} is not a variable name")
        literal = ("," if index else "") + prefix
        template += literal.replace("{", "{{").replace("}", "}}") + "{" + text + "}"
    if braces:
        template += "}}"
    return "f" + repr(template)


def _compile_fields_encoder(fields: Sequence[FieldWriting], braces: bool) -> Callable[[Mapping[str, Any]], str]:
    """
    One straight-line function for a row's properties (within ``{}`` when
    ``braces``): the hot path of every collection response, where a loop over
    fields costs more than the encoding.  Generated like ``dataclasses``
    generates ``__init__``: names enter the source only through ``repr``.
    """
    lines = ["def encode_fields(row):", "    get = row.get"]
    texts = []
    for index, field in enumerate(fields):
        lines.append(f"    value = get({field[0]!r})")
        lines.append(f"    text_{index} = 'null' if value is None else {encoded_value_source(field, index, 'value')}")
        texts.append(f"text_{index}")
    lines.append(f"    return {joined_fields_source(fields, texts, braces)}")
    return define("\n".join(lines), "encode_fields", field_writing_namespace(fields))


# The key under which a row carries the size of an expanded collection,
# after the navigation property's name; the JSON name of the count too.
COUNT_ANNOTATION = "@odata.count"


class InlineNavigation:
    """
    An expanded navigation property: its related entity (or None) or list of
    entities is written with ``encoder``, after ``Name@odata.count`` when
    ``count`` is set (the row carries it under that key).
    """

    def __init__(self, name: str, encoder: "EntityEncoder", *, collection: bool, count: bool = False) -> None:
        self.name = name
        self._encoder = encoder
        self._collection = collection
        self._count_key = name + COUNT_ANNOTATION if count else None
        self._prefix = encode_string(name) + ":"
        self._link_prefix = encode_string(name + "@odata.navigationLink") + ":"

    def encode(self, row: Mapping[str, Any], entity_url: Optional[str]) -> str:
        """``"Name":...`` after its annotations (a navigation link when ``entity_url`` is given)."""
        parts = []
        if entity_url is not None:
            parts.append(self._link_prefix + encode_string(entity_url + "/" + self.name))
        if self._count_key is not None:
            parts.append(f"{encode_string(self._count_key)}:{int(row.get(self._count_key) or 0)}")
        value = row.get(self.name)
        encode = self._encoder.encode
        if self._collection:
            parts.append(self._prefix + "[" + ",".join([encode(item) for item in value or ()]) + "]")
        else:
            parts.append(self._prefix + ("null" if value is None else encode(value)))
        return ",".join(parts)


class EntityEncoder:
    """
    Writes rows of one entity type as JSON objects at one metadata level,
    with the navigation properties of ``expansions`` written inline.
    """

    def __init__(
        self,
        model: Model,
        entity_type: EntityType,
        fmt: JsonFormat,
        properties: Sequence[Property],
        entity_url: Optional[Callable[[Mapping[str, Any]], str]] = None,
        expansions: Sequence[InlineNavigation] = (),
        projections: Mapping[str, Sequence[str]] = {},
    ) -> None:
        """``projections``: complex properties written with only these members ($select=P/member)."""
        self._full = fmt.metadata == "full"
        self._entity_url = entity_url
        self._type_name = f"#{model.qualified(entity_type.name)}"
        self._expansions = tuple(expansions)
        expanded = {expansion.name for expansion in self._expansions}
        # Full metadata links these; expanded ones get their link beside their value.
        self._navigation_names = [
            nav.name for nav in entity_type.navigation_properties if nav.name not in expanded
        ]
        fields: list[tuple[str, str, ValueEncoder, Optional[str]]] = []
        for prop in properties:
            prefix = encode_string(prop.name) + ":"
            annotation = _type_annotation(prop, model) if self._full else None
            if annotation is not None:
                prefix = f'{encode_string(prop.name + "@odata.type")}:"{annotation}",' + prefix
            encode = property_encoder(prop, fmt)
            inline = _inline(prop, fmt, encode)
            if prop.name in projections:
                encode, inline = _projected(projections[prop.name]), None
            fields.append((prop.name, prefix, encode, inline))
        # Entities written as their properties alone: (name, prefix, encoder, inline source) each.
        self.plain_fields: Optional[tuple[FieldWriting, ...]] = None
        # Writes one entity as a JSON object.
        self.encode: Callable[[Mapping[str, Any]], str]
        if not self._full and not self._expansions:
            self.plain_fields = tuple(fields)
            # The whole entity in one generated call.
            self.encode = _compile_fields_encoder(fields, braces=True)
        else:
            self._encode_fields = _compile_fields_encoder(fields, braces=False)
            self.encode = self._encode_annotated

    def _fields_and_expansions(self, row: Mapping[str, Any]) -> str:
        fields = self._encode_fields(row)
        parts = [fields] if fields else []
        parts.extend(expansion.encode(row, None) for expansion in self._expansions)
        return ",".join(parts)

    def _encode_annotated(self, row: Mapping[str, Any]) -> str:
        """An entity with expansions, or in full metadata."""
        if not self._full:
            return "{" + self._fields_and_expansions(row) + "}"
        parts = [f'"@odata.type":"{self._type_name}"']
        url = self._entity_url(row) if self._entity_url is not None else None
        if url is not None:
            parts.append(f'"@odata.id":{encode_string(url)}')
            parts.append(f'"@odata.readLink":{encode_string(url)}')
        fields = self._encode_fields(row)
        if fields:
            parts.append(fields)
        if url is not None:
            for nav in self._navigation_names:
                parts.append(f'{encode_string(nav + "@odata.navigationLink")}:{encode_string(url + "/" + nav)}')
        for expansion in self._expansions:
            parts.append(expansion.encode(row, url))
        return "{" + ",".join(parts) + "}"

    def encode_with_context(self, row: Mapping[str, Any], context: Optional[str]) -> str:
        """A single entity as a whole response body."""
        body = self.encode(row)
        if context is None:
            return body
        head = f'"@odata.context":{encode_string(context)}'
        return "{" + head + ("," + body[1:] if len(body) > 2 else "}")


def collection_start(context: Optional[str], count: Optional[int]) -> str:
    parts = []
    if context is not None:
        parts.append(f'"@odata.context":{encode_string(context)}')
    if count is not None:
        parts.append(f'"@odata.count":{count}')
    parts.append('"value":[')
    return "{" + ",".join(parts)


def collection_end(next_link: Optional[str], annotations: Mapping[str, Any] = {}) -> str:
    """Close a collection: its nextLink, then instance annotations the client asked for (plain JSON values)."""
    parts = [""]
    if next_link is not None:
        parts.append(f'"@odata.nextLink":{encode_string(next_link)}')
    parts += [f"{encode_string('@' + term)}:{json.dumps(value, ensure_ascii=False)}" for term, value in annotations.items()]
    return "]" + ",".join(parts) + "}"


def property_document(context: Optional[str], prop: Property, value: Any, fmt: JsonFormat) -> str:
    parts = []
    if context is not None:
        parts.append(f'"@odata.context":{encode_string(context)}')
    parts.append('"value":' + property_encoder(prop, fmt)(value))
    return "{" + ",".join(parts) + "}"


def raw_value(prop: Property, value: Any) -> str:
    """The text of a primitive value for ``/$value``."""
    encoded = primitive_encoder(prop.edm, JsonFormat())(value)
    if prop.edm is Edm.STRING:
        return str(value)
    return encoded.strip('"')
