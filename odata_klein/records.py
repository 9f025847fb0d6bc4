"""
Rows from JSON records.

A provider whose backend answers in JSON declares where each property's
value lies in a record (`RecordField`, `RecordObject`) and how it becomes a
value of the property's type; a `RecordReader` generated from that turns
records into rows.  Providers hand the engine records and their reader
(`odata_klein.interfaces.RowBatch`), so that when nothing needs a typed row
(no filter left to evaluate, nothing computed or expanded) the engine writes
each record straight as OData JSON (`RecordReader.writer`): one generated
function per response instead of building a row and reading it back.

Both functions are generated like ``dataclasses`` generates ``__init__``
(names enter the source only through ``repr``), because they run for every
row of every response.  A value that cannot be read raises what the
provider's ``unreadable`` callback returns, naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from .codegen import define
from .interfaces import Row
from .serializer import (
    EncodedJsonObject,
    EntityEncoder,
    FieldWriting,
    ObjectEncoder,
    encode_json_value,
    encoded_value_source,
    field_writing_namespace,
    joined_fields_source,
)


class UnreadableValue(ValueError):
    """Raised by a field's ``convert`` for a value it cannot read."""


@dataclass(frozen=True)
class RecordField:
    """
    Property ``name`` is ``convert(record[key])``, or null when the key is
    missing or null (or empty text, with ``empty_is_null``).  With
    ``parent``, ``key`` is looked up in the `RecordObject` of that name.
    Values whose type is exactly ``native`` are taken as they are.
    ``convert`` must depend on its argument alone: a writer may remember
    what it made of a text.
    """

    name: str
    key: str
    convert: Callable[[Any], Any]
    native: Optional[type] = None
    parent: Optional[str] = None
    empty_is_null: bool = False


@dataclass(frozen=True)
class RecordObject:
    """
    Property ``name`` is the JSON object ``record[key]`` (an
    `EncodedJsonObject`), and property ``text_name``, if given, its JSON text.
    """

    name: str
    key: str
    text_name: Optional[str] = None


Unreadable = Callable[[Optional[str], Any], Exception]
# Distinct texts a writer remembers per field (dates of a page: a few hundred).
_MEMO_LIMIT = 4096
_Source = Union[RecordField, RecordObject]


class RecordReader:
    """
    Reads records of one entity type.  ``unreadable(field, value)`` makes
    the error for a value that cannot be read (``field`` None: the record
    itself is not an object).
    """

    def __init__(
        self, fields: Sequence[RecordField], objects: Sequence[RecordObject], unreadable: Unreadable
    ) -> None:
        self._fields = tuple(fields)
        self._objects = {obj.name: obj for obj in objects}
        for field in self._fields:
            if field.parent is not None and field.parent not in self._objects:
                raise ValueError(f"{field.name} is read from {field.parent!r}, which is no RecordObject")
        self._unreadable = unreadable
        self._sources: dict[str, tuple[str, _Source]] = {}
        for field in self._fields:
            self._sources[field.name] = ("field", field)
        for obj in objects:
            self._sources[obj.name] = ("object", obj)
            if obj.text_name is not None:
                self._sources[obj.text_name] = ("text", obj)
        self.convert: Callable[[Any], Row] = self._compile_convert()

    def writer(self, encoder: EntityEncoder) -> Optional[Callable[[Any], str]]:
        """
        A function writing a record as ``encoder`` would write its row, or
        None when ``encoder`` writes more than plain properties.  It is
        generated anew: call it once per response.
        """
        fields = encoder.plain_fields
        if fields is None:
            return None
        return self._compile_writer(fields)

    # --- code generation ------------------------------------------------------------

    def _namespace(self) -> dict[str, Any]:
        namespace: dict[str, Any] = {
            "Mapping": Mapping,
            "EncodedJsonObject": EncodedJsonObject,
            "UnreadableValue": UnreadableValue,
            "diagnose": self._diagnose,
            "no_values": {},
        }
        for index, field in enumerate(self._fields):
            namespace[f"convert_{index}"] = field.convert
            if field.native is not None:
                namespace[f"native_{index}"] = field.native
        for index, obj in enumerate(self._objects.values()):
            # Records of one type bring their objects' keys in one order.
            namespace[f"encode_object_{index}"] = ObjectEncoder()
        return namespace

    def _prologue(self, name: str, needed_objects: Sequence[str], as_rows: bool) -> list[str]:
        """
        The function's head, reading each object needed: ``values_i`` (to
        look fields up in), ``text_i`` (its JSON) and, for rows
        (``as_rows``), ``object_i`` as an `EncodedJsonObject`.
        """
        lines = [
            f"def {name}(record):",
            # An exact-type test first: isinstance against typing's Mapping is slow.
            "    if type(record) is not dict and not isinstance(record, Mapping):",
            "        raise diagnose(record)",
            "    get = record.get",
            "    try:",
        ]
        for index, obj in enumerate(self._objects.values()):
            if obj.name not in needed_objects:
                continue
            lines += [
                f"        object_{index} = get({obj.key!r})",
                f"        if object_{index} is None:",
                f"            values_{index}, text_{index} = no_values, None",
                f"        elif type(object_{index}) is dict or isinstance(object_{index}, Mapping):",
                f"            values_{index}, text_{index} = object_{index}, encode_object_{index}(object_{index})",
            ]
            if as_rows:
                lines.append(
                    f"            object_{index} = EncodedJsonObject.with_text(object_{index}, text_{index})"
                )
            lines += [
                "        else:",
                "            raise UnreadableValue()",
            ]
        return lines

    def _value_expression(self, source: tuple[str, _Source]) -> tuple[list[str], str]:
        """Lines computing a property's value, and the expression that then holds it."""
        kind, what = source
        object_index = {name: index for index, name in enumerate(self._objects)}
        if kind == "object":
            return [], f"object_{object_index[what.name]}"
        if kind == "text":
            return [], f"text_{object_index[what.name]}"
        assert isinstance(what, RecordField)
        index = self._fields.index(what)
        converted = (
            f"value if type(value) is native_{index} else convert_{index}(value)"
            if what.native is not None
            else f"convert_{index}(value)"
        )
        return [
            self._reading(what),
            f"        value_{index} = None if value is None{self._empty(what)} else {converted}",
        ], f"value_{index}"

    def _reading(self, field: RecordField) -> str:
        """The line setting ``value`` to ``field``'s value in the record (None when missing)."""
        if field.parent is None:
            return f"        value = get({field.key!r})"
        parent = list(self._objects).index(field.parent)
        return f"        value = values_{parent}.get({field.key!r})"

    @staticmethod
    def _empty(field: RecordField) -> str:
        """What, besides None, makes ``value`` null: the source of an ``or`` clause."""
        return " or value == ''" if field.empty_is_null else ""

    def _objects_needed(self, names: Sequence[str]) -> list[str]:
        needed = []
        for name in names:
            source = self._sources.get(name)
            if source is None:
                continue
            kind, what = source
            parent = what.name if kind != "field" else what.parent  # type: ignore[union-attr]
            if parent is not None:
                needed.append(parent)
        return needed

    def _compile_convert(self) -> Callable[[Any], Row]:
        names = list(self._sources)
        lines = self._prologue("convert", self._objects_needed(names), as_rows=True)
        items = []
        for name in names:
            computing, expression = self._value_expression(self._sources[name])
            lines += computing
            items.append(f"{name!r}: {expression}")
        lines += [
            "    except UnreadableValue:",
            "        raise diagnose(record)",
            "    return {" + ", ".join(items) + "}",
        ]
        return self._compile("convert", lines)

    def _compile_writer(self, fields: Sequence[FieldWriting]) -> Callable[[Any], str]:
        lines = self._prologue("write", self._objects_needed([name for name, _, _, _ in fields]), as_rows=False)
        object_index = {name: index for index, name in enumerate(self._objects)}
        names = field_writing_namespace(fields)
        texts = []
        for position, field in enumerate(fields):
            name, _, encoder, _ = field
            source = self._sources.get(name)
            written = f"written_{position}"
            if source is None:
                lines.append(f"        {written} = 'null'")  # not in records: always null
            elif source[0] == "field":
                assert isinstance(source[1], RecordField)
                lines += self._field_writing(source[1], field, position, names)
            else:
                kind, obj = source
                index = object_index[obj.name]
                if kind == "object" and encoder is encode_json_value:
                    value = encoded = f"text_{index}"  # written as it is: its text
                elif kind == "object":
                    value = f"object_{index}"  # a projection: the encoder gets the mapping
                    encoded = encoded_value_source(field, position, value)
                else:
                    value = f"text_{index}"
                    encoded = encoded_value_source(field, position, value)
                lines.append(f"        {written} = 'null' if {value} is None else {encoded}")
            texts.append(written)
        lines += [
            "    except UnreadableValue:",
            "        raise diagnose(record)",
            f"    return {joined_fields_source(fields, texts, braces=True)}",
        ]
        return self._compile("write", lines, names)

    def _field_writing(
        self, field: RecordField, writing: FieldWriting, position: int, names: dict[str, Any]
    ) -> list[str]:
        """
        Lines setting ``written_{position}`` to the text of ``field``'s value:
        one type test for a value of its native type, the usual case.  The
        text of a value that always needs converting (a date, a time) is
        remembered per writer, that is per response, by the record's text.
        """
        index = self._fields.index(field)
        written = f"written_{position}"
        empty = self._empty(field)
        lines = [self._reading(field)]
        if field.native is not None:
            return lines + [
                f"        if type(value) is native_{index}:",
                f"            {written} = {encoded_value_source(writing, position, 'value')}",
                f"        elif value is None{empty}:",
                f"            {written} = 'null'",
                "        else:",
                f"            converted = convert_{index}(value)",
                f"            {written} = {encoded_value_source(writing, position, 'converted')}",
            ]
        names[f"memo_{position}"] = {}
        return lines + [
            f"        {written} = memo_{position}.get(value) if type(value) is str else None",
            f"        if {written} is None:",
            f"            if value is None{empty}:",
            f"                {written} = 'null'",
            "            else:",
            f"                converted = convert_{index}(value)",
            f"                {written} = {encoded_value_source(writing, position, 'converted')}",
            f"                if type(value) is str and len(memo_{position}) < {_MEMO_LIMIT}:",
            f"                    memo_{position}[value] = {written}",
        ]

    def _compile(self, name: str, lines: list[str], extra: Mapping[str, Any] = {}) -> Callable[[Any], Any]:
        namespace = self._namespace()
        namespace.update(extra)
        return define("\n".join(lines), name, namespace)

    # --- errors ------------------------------------------------------------------------

    def _diagnose(self, record: Any) -> Exception:
        """The error for a record that could not be read, found field by field (the rare, slow way)."""
        if not isinstance(record, Mapping):
            return self._unreadable(None, record)
        objects: dict[str, Mapping[str, Any]] = {}
        for obj in self._objects.values():
            value = record.get(obj.key)
            if value is not None and not isinstance(value, Mapping):
                return self._unreadable(obj.key, value)
            objects[obj.name] = value or {}
        for field in self._fields:
            value = (record if field.parent is None else objects[field.parent]).get(field.key)
            if value is None or (field.empty_is_null and value == "") or type(value) is field.native:
                continue
            try:
                field.convert(value)
            except UnreadableValue:
                path = field.key if field.parent is None else f"{self._objects[field.parent].key}/{field.key}"
                return self._unreadable(path, value)
        return self._unreadable(None, record)


__all__ = ["RecordField", "RecordObject", "RecordReader", "UnreadableValue"]
