"""
Bound expressions: a syntax tree checked against the model.

Binding (`odata_klein.binder`) resolves every name to a property of the model,
every alias to its value, and gives every node its Edm type; evaluation
(`odata_klein.evaluate`) and providers' push-down read only these nodes.
Types are qualified names (``"Edm.Decimal"``, ``"ClickTime.CustomFields"``);
``None`` is the type of ``null``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union


@dataclass(frozen=True)
class BoundLiteral:
    value: object
    type: Optional[str]


@dataclass(frozen=True)
class BoundProperty:
    """
    A property reached from the current instance (or from a lambda variable):
    ``path=("Job", "Client", "Name")`` walks navigation properties ``Job`` and
    ``Client`` and reads ``Name``.  ``navigation`` says, for each step but the
    last, that it is a navigation property (True) or a complex property (False).
    ``collection`` is True when the value is a collection (a collection
    property, or a path through a collection-valued navigation property).
    ``variable`` names the lambda variable the path starts from, None for ``$it``.
    """

    path: tuple[str, ...]
    type: str
    navigation: tuple[bool, ...] = ()
    collection: bool = False
    variable: Optional[str] = None


@dataclass(frozen=True)
class BoundBinary:
    """``op``: eq ne gt ge lt le and or has add sub mul div divby mod."""

    op: str
    left: "BoundExpr"
    right: "BoundExpr"
    type: Optional[str]


@dataclass(frozen=True)
class BoundUnary:
    """``op``: ``not`` or ``-``."""

    op: str
    operand: "BoundExpr"
    type: Optional[str]


@dataclass(frozen=True)
class BoundIn:
    operand: "BoundExpr"
    values: tuple["BoundExpr", ...]
    type: str = "Edm.Boolean"


@dataclass(frozen=True)
class BoundCall:
    """A canonical function; ``name`` lower case; ``cast``/``isof`` take a type name literal."""

    name: str
    args: tuple["BoundExpr", ...]
    type: Optional[str]


@dataclass(frozen=True)
class BoundLambda:
    """``collection/any(variable: predicate)``; ``predicate`` None for ``any()``."""

    collection: BoundProperty
    kind: str
    variable: Optional[str]
    predicate: Optional["BoundExpr"]
    type: str = "Edm.Boolean"


BoundExpr = Union[
    BoundLiteral, BoundProperty, BoundBinary, BoundUnary, BoundIn, BoundCall, BoundLambda
]


def operands(expr: BoundExpr) -> tuple[BoundExpr, ...]:
    """The expressions directly under ``expr``."""
    if isinstance(expr, BoundBinary):
        return (expr.left, expr.right)
    if isinstance(expr, BoundUnary):
        return (expr.operand,)
    if isinstance(expr, BoundIn):
        return (expr.operand, *expr.values)
    if isinstance(expr, BoundCall):
        return expr.args
    if isinstance(expr, BoundLambda):
        return (expr.collection,) if expr.predicate is None else (expr.collection, expr.predicate)
    return ()


def conjuncts(expr: Optional[BoundExpr]) -> list[BoundExpr]:
    """Split ``a and (b and c)`` into ``[a, b, c]``; None gives ``[]``."""
    return [] if expr is None else _operands_of("and", expr)


def disjuncts(expr: BoundExpr) -> list[BoundExpr]:
    """Split ``a or (b or c)`` into ``[a, b, c]``."""
    return _operands_of("or", expr)


def _operands_of(op: str, expr: BoundExpr) -> list[BoundExpr]:
    # Without recursion: a chain of thousands of terms is no error.
    found: list[BoundExpr] = []
    pending = [expr]
    while pending:
        current = pending.pop()
        if isinstance(current, BoundBinary) and current.op == op:
            pending += (current.right, current.left)
        else:
            found.append(current)
    return found


def conjunction(parts: list[BoundExpr]) -> Optional[BoundExpr]:
    """The inverse of `conjuncts`: None for an empty list."""
    return _balanced("and", parts)


def disjunction(parts: list[BoundExpr]) -> Optional[BoundExpr]:
    """The inverse of `disjuncts`: None for an empty list."""
    return _balanced("or", parts)


def _balanced(op: str, parts: list[BoundExpr]) -> Optional[BoundExpr]:
    """
    ``parts`` joined by ``op`` in a tree of logarithmic depth, as the parser
    makes long chains: code that walks trees recursively (evaluation, push-down,
    descriptions) then never meets one thousands of levels deep.
    """
    level = list(parts)
    while len(level) > 1:
        level = [
            BoundBinary(op, level[i], level[i + 1], "Edm.Boolean") if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        ]
    return level[0] if level else None
