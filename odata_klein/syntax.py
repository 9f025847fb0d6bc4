"""
The syntax tree of OData URLs: what the parser produces from text, before any
model is consulted.

All nodes are frozen dataclasses so that parsed trees can be cached and shared
between requests.  ``pos`` is the zero-based character offset of the node in
the text of the query option (or path) it came from; it is excluded from
equality so that trees compare by meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union


def _pos() -> int:
    return field(default=0, compare=False, repr=False)


# --- Expressions ($filter, $orderby, $compute, key values, aliases) -----------


@dataclass(frozen=True)
class Literal:
    """
    A primitive literal.

    ``value`` holds the parsed Python value (see `odata_klein.model.Property`
    for the mapping); ``type`` is the Edm type name the literal form implies
    (``"Edm.Int32"`` for ``42``, ``"Edm.Int64"`` for integers beyond Int32,
    ``"Edm.Decimal"`` for ``1.5``, ``"Edm.Double"`` for ``1e3``, ``INF`` and
    ``NaN``, ...).  ``null`` is ``Literal(None, None)``.
    """

    value: object
    type: Optional[str]
    pos: int = _pos()


@dataclass(frozen=True)
class EnumLiteral:
    """``Namespace.Color'Red,Blue'``: a qualified enum type and member names or values."""

    type_name: str
    members: tuple[str, ...]
    pos: int = _pos()


@dataclass(frozen=True)
class TypeName:
    """A qualified type name used as an argument of ``cast`` and ``isof``."""

    name: str
    pos: int = _pos()


@dataclass(frozen=True)
class Path:
    """
    A member path: ``Job/Client/Name``, ``$it/Hours``, ``$root/Users('x')/Name``
    or, inside a lambda, ``t/Hours`` (``root`` is then the variable name).

    ``root`` is ``None`` for a path relative to the current instance
    (``$it`` implied), ``"$it"``, ``"$root"``, ``"$this"``, or a lambda
    variable name.  ``segments`` are the identifiers after the root; a segment
    may carry a key predicate (only after ``$root``) as ``PathSegment``.
    """

    segments: tuple["PathSegment", ...]
    root: Optional[str] = None
    pos: int = _pos()


@dataclass(frozen=True)
class PathSegment:
    """
    One step of a path.  ``name`` is an identifier, a qualified type cast
    (``Namespace.Type``), or ``$count``.  ``key`` holds a key predicate when one
    follows the identifier.
    """

    name: str
    key: Optional["KeyPredicate"] = None
    pos: int = _pos()


@dataclass(frozen=True)
class Alias:
    """A parameter alias ``@name``; its value comes from the query string."""

    name: str
    pos: int = _pos()


@dataclass(frozen=True)
class BinaryOp:
    """
    ``op`` is lower case: ``eq ne gt ge lt le and or has add sub mul div divby mod``.
    """

    op: str
    left: "Expr"
    right: "Expr"
    pos: int = _pos()


@dataclass(frozen=True)
class UnaryOp:
    """``op`` is ``"not"`` or ``"-"``."""

    op: str
    operand: "Expr"
    pos: int = _pos()


@dataclass(frozen=True)
class In:
    """``operand in (a, b, c)``, or ``operand in alias`` / ``in path``."""

    operand: "Expr"
    values: Union[tuple["Expr", ...], "Expr"]
    pos: int = _pos()


@dataclass(frozen=True)
class Call:
    """A canonical function call; ``name`` is lower case (``contains``, ``year``, ``cast``)."""

    name: str
    args: tuple["Expr", ...]
    pos: int = _pos()


@dataclass(frozen=True)
class Lambda:
    """
    ``collection/any(v: predicate)`` or ``collection/all(v: predicate)``.
    ``any()`` without arguments has ``variable`` and ``predicate`` set to None.
    """

    collection: Path
    kind: str  # "any" | "all"
    variable: Optional[str]
    predicate: Optional["Expr"]
    pos: int = _pos()


@dataclass(frozen=True)
class ListExpr:
    """A parenthesised list ``(a, b)`` or a JSON array, as the right side of ``in``."""

    items: tuple["Expr", ...]
    pos: int = _pos()


@dataclass(frozen=True)
class JsonValue:
    """An array or object literal written in JSON inside an expression."""

    value: object
    pos: int = _pos()


Expr = Union[
    Literal, EnumLiteral, TypeName, Path, Alias, BinaryOp, UnaryOp, In, Call, Lambda,
    ListExpr, JsonValue,
]


# --- Keys --------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPredicate:
    """
    ``('abc')`` gives ``values=(Literal('abc'),)`` and ``names=None``;
    ``(OrderID=1,ItemID=2)`` gives names ``("OrderID", "ItemID")``.
    Values may be aliases.
    """

    values: tuple[Expr, ...]
    names: Optional[tuple[str, ...]] = None
    pos: int = _pos()


# --- Resource path -------------------------------------------------------------


@dataclass(frozen=True)
class ResourcePath:
    """
    The path after the service root, split into segments.  The parser does not
    know whether ``Job`` is a property or a navigation property: binding does.
    Special segments keep their ``$`` name: ``$metadata``, ``$count``,
    ``$value``, ``$ref``, ``$batch``, ``$entity``, ``$all``, ``$crossjoin``.
    Key-as-segment (``TimeEntries/abc``) parses as a plain segment named
    ``abc``; binding turns it into a key.
    """

    segments: tuple[PathSegment, ...]


# --- Query options -------------------------------------------------------------


@dataclass(frozen=True)
class OrderByItem:
    expr: Expr
    descending: bool = False
    pos: int = _pos()


@dataclass(frozen=True)
class SelectItem:
    """
    ``*``, ``Namespace.*``, a property path (``Address/City``), or a path with
    nested options in 4.01 form (``Addresses($filter=...;$top=2)``).
    """

    path: tuple[str, ...]
    star: bool = False
    options: Optional["QueryOptions"] = None
    pos: int = _pos()


@dataclass(frozen=True)
class ExpandItem:
    """
    ``Nav``, ``Nav/$ref``, ``Nav/$count``, ``*`` (with ``$levels``), each with
    nested options ``Nav($select=...;$filter=...;$levels=2)``.
    ``levels`` is an int, ``"max"``, or None.
    """

    path: tuple[str, ...]
    star: bool = False
    ref: bool = False
    count: bool = False
    options: Optional["QueryOptions"] = None
    levels: Union[int, str, None] = None
    pos: int = _pos()


@dataclass(frozen=True)
class SearchTerm:
    """A word or a quoted phrase of ``$search``."""

    text: str
    phrase: bool = False
    pos: int = _pos()


@dataclass(frozen=True)
class SearchNot:
    operand: "SearchExpr"
    pos: int = _pos()


@dataclass(frozen=True)
class SearchBinary:
    """``op`` is ``"and"`` or ``"or"``; juxtaposition means ``and``."""

    op: str
    left: "SearchExpr"
    right: "SearchExpr"
    pos: int = _pos()


SearchExpr = Union[SearchTerm, SearchNot, SearchBinary]


@dataclass(frozen=True)
class ComputeItem:
    expr: Expr
    alias: str
    pos: int = _pos()


@dataclass(frozen=True)
class QueryOptions:
    """
    The system query options of one request (or of one nested ``$expand`` /
    ``$select`` item).  Every option is None when absent.  Custom options and
    alias values are kept separately so that binding can resolve aliases.
    """

    filter: Optional[Expr] = None
    select: Optional[tuple[SelectItem, ...]] = None
    expand: Optional[tuple[ExpandItem, ...]] = None
    orderby: Optional[tuple[OrderByItem, ...]] = None
    top: Optional[int] = None
    skip: Optional[int] = None
    count: Optional[bool] = None
    search: Optional[SearchExpr] = None
    compute: Optional[tuple[ComputeItem, ...]] = None
    levels: Union[int, str, None] = None
    skiptoken: Optional[str] = None
    deltatoken: Optional[str] = None
    format: Optional[str] = None
    index: Optional[int] = None
    schemaversion: Optional[str] = None
    apply: Optional[str] = None
    # Parameter alias name (without "@") -> parsed value.
    aliases: tuple[tuple[str, Expr], ...] = ()
    # Custom query options (name does not start with "$" or "@"), raw values.
    custom: tuple[tuple[str, str], ...] = ()
