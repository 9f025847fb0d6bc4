"""
Evaluation of bound expressions over rows.

A bound tree is compiled once into nested closures, each taking the row and
the values of the lambda variables in scope; no closure looks at node types
while rows are evaluated.  The semantics are those of OData 4.01 Part 2,
5.1.1:

* ``null eq null`` is true, ``x eq null`` false; order operators with a null
  operand are false; arithmetic, functions and ``not`` with a null operand are
  null; ``and``/``or`` follow three-valued logic (``false and null`` is false,
  ``true or null`` true, other combinations with null are null);
* a predicate holds only when its value is true (null counts as false);
* ``any`` is true when the predicate is true for some item (``any()``: the
  collection is not empty), ``all`` when it is true for every item (so for no
  items at all); an absent collection has no items, and ``/$count`` of it is 0;
* values of different numeric types compare exactly (Python compares int,
  Decimal and float by value); date-times compare by instant whatever their
  offsets; strings compare by code point;
* untyped (dynamic) values compare loosely (`odata_klein.values.loose_pair`).

Evaluation never raises: where data makes an operation undefined (integer
division by zero, overflow, a function given an untyped value of the wrong
kind) the value is null, as `odata_klein.values` explains.
"""

from __future__ import annotations

import functools
import operator
from types import MappingProxyType
from typing import Any, Callable, Mapping, Optional

from .bound import (
    BoundBinary,
    BoundCall,
    BoundExpr,
    BoundIn,
    BoundLambda,
    BoundLiteral,
    BoundProperty,
    BoundUnary,
    conjuncts,
    disjuncts,
)
from .functions import FUNCTIONS
from .interfaces import Row
from .model import NUMERIC_TYPES, Edm
from .values import TypeRef, binary_operation, cast_primitive, convert_number, loose_pair, negation

Scope = Mapping[str, Any]
Compiled = Callable[[Row, Scope], Any]

_NO_VARIABLES: Scope = MappingProxyType({})
# What operations raise when data makes their result undefined (OverflowError,
# ZeroDivisionError and decimal's signals are ArithmeticErrors).
_UNDEFINED = (ArithmeticError, TypeError, ValueError)
_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
    "eq": operator.eq,
    "ne": operator.ne,
}


def compile_predicate(expr: BoundExpr) -> Callable[[Row], bool]:
    """A function telling whether a row satisfies a Boolean expression (null: it does not)."""
    compiled = _compile(expr)

    def predicate(row: Row) -> bool:
        return compiled(row, _NO_VARIABLES) is True

    return predicate


def compile_expression(expr: BoundExpr) -> Callable[[Row], Any]:
    """A function giving the value of an expression for a row (None for null)."""
    compiled = _compile(expr)

    def evaluate(row: Row) -> Any:
        return compiled(row, _NO_VARIABLES)

    return evaluate


def _compile(expr: BoundExpr) -> Compiled:
    if isinstance(expr, BoundLiteral):
        value = expr.value
        return lambda row, scope: value
    if isinstance(expr, BoundProperty):
        return _compile_property(expr)
    if isinstance(expr, BoundBinary):
        return _compile_binary(expr)
    if isinstance(expr, BoundUnary):
        return _compile_unary(expr)
    if isinstance(expr, BoundIn):
        return _compile_in(expr)
    if isinstance(expr, BoundCall):
        return _compile_call(expr)
    if isinstance(expr, BoundLambda):
        return _compile_lambda(expr)
    raise TypeError(f"not a bound expression: {expr!r}")


# --- Paths ------------------------------------------------------------------------


def _compile_property(expr: BoundProperty) -> Compiled:
    path, variable = expr.path, expr.variable
    if variable is None:
        if not path:
            return lambda row, scope: row
        if len(path) == 1:
            (name,) = path
            return lambda row, scope: row.get(name)
        first, rest = path[0], path[1:]

        def walk_from_row(row: Row, scope: Scope) -> Any:
            value = row.get(first)
            for name in rest:
                # A null (or absent) complex value or related entity: its parts are null.
                if not isinstance(value, dict):
                    return None
                value = value.get(name)
            return value

        return walk_from_row

    def walk_from_variable(row: Row, scope: Scope) -> Any:
        value = scope[variable]
        for name in path:
            if not isinstance(value, dict):
                return None
            value = value.get(name)
        return value

    return walk_from_variable


# --- Operators --------------------------------------------------------------------


def _compile_binary(expr: BoundBinary) -> Compiled:
    op = expr.op
    if op == "and":
        return _all_of([_compile(part) for part in conjuncts(expr)])
    if op == "or":
        return _any_of(_compile_disjuncts(disjuncts(expr)))
    if op in _ORDER:
        return _compile_comparison(expr)
    operation = binary_operation(op, TypeRef.of(expr.left), TypeRef.of(expr.right))
    if operation is None:
        raise TypeError(f"{op} of {expr.left.type} and {expr.right.type} was not bound")
    return _strict_call2(operation.apply, _compile(expr.left), _compile(expr.right))


def _compile_disjuncts(parts: list[BoundExpr]) -> list[Compiled]:
    """
    The parts of an ``or``, where equalities of one property with literals
    (``JobID eq 'a' or JobID eq 'b' ...``, how Power BI writes a list of
    chosen values) become one ``in`` test, a set lookup: the same truth value
    (OData defines ``in`` so), but constant time per row instead of a test
    per value, which for a list of thousands made every row cost milliseconds.
    The lookups come first: they are the cheapest parts.
    """
    equalities: dict[BoundProperty, list[BoundBinary]] = {}
    others: list[BoundExpr] = []
    for part in parts:
        if (
            isinstance(part, BoundBinary)
            and part.op == "eq"
            and isinstance(part.left, BoundProperty)
            and isinstance(part.right, BoundLiteral)
            and not part.left.collection
            and not _is_loose(part.left, part.right)
        ):
            equalities.setdefault(part.left, []).append(part)
        else:
            others.append(part)
    compiled = [
        _compile(group[0]) if len(group) == 1 else _compile_in(BoundIn(prop, tuple(eq.right for eq in group)))
        for prop, group in equalities.items()
    ]
    return compiled + [_compile(part) for part in others]


def _all_of(parts: list[Compiled]) -> Compiled:
    """``a and b and c`` in one closure: false if any part is false, else null if any is null."""

    def evaluate_and(row: Row, scope: Scope) -> Optional[bool]:
        unknown = False
        for part in parts:
            value = part(row, scope)
            if value is False:
                return False
            if value is not True:
                unknown = True
        return None if unknown else True

    return evaluate_and


def _any_of(parts: list[Compiled]) -> Compiled:
    """``a or b or c`` in one closure: true if any part is true, else null if any is null."""

    def evaluate_or(row: Row, scope: Scope) -> Optional[bool]:
        unknown = False
        for part in parts:
            value = part(row, scope)
            if value is True:
                return True
            if value is not False:
                unknown = True
        return None if unknown else False

    return evaluate_or


def _compile_unary(expr: BoundUnary) -> Compiled:
    operand = _compile(expr.operand)
    if expr.op == "not":

        def evaluate_not(row: Row, scope: Scope) -> Optional[bool]:
            value = operand(row, scope)
            if value is True:
                return False
            return True if value is False else None

        return evaluate_not
    operation = negation(TypeRef.of(expr.operand))
    if operation is None:
        raise TypeError(f"negation of {expr.operand.type} was not bound")
    negate = operation.apply
    return _strict_call1(lambda value: negate(value, None), operand)


def _is_loose(*exprs: BoundExpr) -> bool:
    return any(TypeRef.of(e).is_untyped for e in exprs)


def _compile_comparison(expr: BoundBinary) -> Compiled:
    op, left = expr.op, _compile(expr.left)
    if _is_loose(expr.left, expr.right):
        return _loose_comparison(op, left, _compile(expr.right))
    if isinstance(expr.right, BoundLiteral):
        return _comparison_with_constant(op, left, expr.right.value)
    right = _compile(expr.right)
    if op == "eq":

        def evaluate_eq(row: Row, scope: Scope) -> bool:
            a, b = left(row, scope), right(row, scope)
            if a is None or b is None:
                return a is b
            return bool(a == b)

        return evaluate_eq
    if op == "ne":

        def evaluate_ne(row: Row, scope: Scope) -> bool:
            a, b = left(row, scope), right(row, scope)
            if a is None or b is None:
                return a is not b
            return bool(a != b)

        return evaluate_ne
    test = _ORDER[op]

    def evaluate_order(row: Row, scope: Scope) -> bool:
        a = left(row, scope)
        if a is None:
            return False
        b = right(row, scope)
        if b is None:
            return False
        try:
            return bool(test(a, b))
        except _UNDEFINED:
            return False

    return evaluate_order


def _comparison_with_constant(op: str, left: Compiled, constant: Any) -> Compiled:
    """The common case ``Property op literal``, with the literal's null test done once."""
    if constant is None:
        if op == "eq":
            return lambda row, scope: left(row, scope) is None
        if op == "ne":
            return lambda row, scope: left(row, scope) is not None
        return lambda row, scope: False
    if op == "eq":

        def equals_constant(row: Row, scope: Scope) -> bool:
            value = left(row, scope)
            return value is not None and bool(value == constant)

        return equals_constant
    if op == "ne":

        def differs_from_constant(row: Row, scope: Scope) -> bool:
            value = left(row, scope)
            return value is None or bool(value != constant)

        return differs_from_constant
    test = _ORDER[op]

    def orders_with_constant(row: Row, scope: Scope) -> bool:
        value = left(row, scope)
        if value is None:
            return False
        try:
            return bool(test(value, constant))
        except _UNDEFINED:
            return False

    return orders_with_constant


def _loose_test(op: str) -> Callable[[Any, Any], bool]:
    test = _ORDER[op]

    def loose(a: Any, b: Any) -> bool:
        if a is None or b is None:
            return (a is b) if op == "eq" else (a is not b) if op == "ne" else False
        pair = loose_pair(a, b)
        if pair is None:
            return op == "ne"
        try:
            return bool(test(*pair))
        except _UNDEFINED:
            return False

    return loose


def _loose_comparison(op: str, left: Compiled, right: Compiled) -> Compiled:
    loose = _loose_test(op)
    return lambda row, scope: loose(left(row, scope), right(row, scope))


def _strict_equal(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    return bool(a == b)


def _compile_in(expr: BoundIn) -> Compiled:
    operand = _compile(expr.operand)
    if _is_loose(expr.operand, *expr.values):
        equal = _loose_test("eq")
    else:
        equal = _strict_equal
        kind = TypeRef.of(expr.operand)
        literals = [v.value for v in expr.values if isinstance(v, BoundLiteral)]
        if kind.edm is not None and not kind.collection and len(literals) == len(expr.values):
            # Primitive values hash consistently with OData equality (2 and
            # Decimal('2.0'), instants at different offsets), so a set will do.
            members = frozenset(literals)
            return lambda row, scope: operand(row, scope) in members
    values = [_compile(v) for v in expr.values]

    def evaluate_in(row: Row, scope: Scope) -> bool:
        value = operand(row, scope)
        return any(equal(value, member(row, scope)) for member in values)

    return evaluate_in


# --- Functions --------------------------------------------------------------------


def _strict_call1(function: Callable[[Any], Any], argument: Compiled) -> Compiled:
    def call(row: Row, scope: Scope) -> Any:
        value = argument(row, scope)
        if value is None:
            return None
        try:
            return function(value)
        except _UNDEFINED:
            return None

    return call


def _strict_call2(function: Callable[[Any, Any], Any], first: Compiled, second: Compiled) -> Compiled:
    def call(row: Row, scope: Scope) -> Any:
        a = first(row, scope)
        if a is None:
            return None
        b = second(row, scope)
        if b is None:
            return None
        try:
            return function(a, b)
        except _UNDEFINED:
            return None

    return call


def _strict_call(function: Callable[..., Any], arguments: list[Compiled]) -> Compiled:
    def call(row: Row, scope: Scope) -> Any:
        values = [argument(row, scope) for argument in arguments]
        if None in values:
            return None
        try:
            return function(*values)
        except _UNDEFINED:
            return None

    return call


def _compile_call(expr: BoundCall) -> Compiled:
    name = expr.name
    if name == "$count":
        collection = _compile(expr.args[0])

        def count(row: Row, scope: Scope) -> int:
            items = collection(row, scope)
            return len(items) if isinstance(items, list) else 0

        return count
    if name in ("cast", "isof"):
        return _compile_type_function(expr)
    if name == "case":
        return _compile_case(expr)
    entry = FUNCTIONS[name]
    function = entry.implementation() if entry.per_call_site else entry.implementation
    arguments = [_compile(arg) for arg in expr.args]
    if len(arguments) == 1:
        return _strict_call1(function, arguments[0])
    if len(arguments) == 2:
        return _strict_call2(function, *arguments)
    return _strict_call(function, arguments)


def _compile_case(expr: BoundCall) -> Compiled:
    """The value of the first pair whose condition is true (null if none is), in the case's type."""
    common = TypeRef.parse(expr.type).edm
    pairs = []
    for condition, result in zip(expr.args[::2], expr.args[1::2]):
        value = _compile(result)
        own = TypeRef.of(result).edm
        if common in NUMERIC_TYPES and own in NUMERIC_TYPES and own is not common:
            # Numbers of different types take the promoted type (Part 2, "case").
            value = _strict_call1(functools.partial(convert_number, target=common), value)
        pairs.append((_compile(condition), value))

    def evaluate_case(row: Row, scope: Scope) -> Any:
        for condition, value in pairs:
            if condition(row, scope) is True:
                return value(row, scope)
        return None

    return evaluate_case


def _compile_type_function(expr: BoundCall) -> Compiled:
    """``cast`` gives the converted value or null; ``isof`` whether that conversion succeeds."""
    subject, target = expr.args
    assert isinstance(target, BoundLiteral) and isinstance(target.value, str)
    convert = _caster(TypeRef.of(subject), target.value)
    value = _compile(subject)
    if expr.name == "cast":
        return _strict_call1(convert, value)
    return _strict_call1(lambda v: convert(v) is not None, value)


def _caster(source: TypeRef, target: str) -> Callable[[Any], Any]:
    """Cast of a non-null value (Part 2, "cast"): the result, or None when the cast fails."""
    try:
        target_edm: Optional[Edm] = Edm(target)
    except ValueError:
        target_edm = None
    if target_edm is None:
        # Structured types: assignable to their own type (the model has no
        # derived types); untyped structures are taken to be assignable.
        same = source.name == target
        return lambda value: value if same or (source.is_untyped and isinstance(value, dict)) else None
    source_edm = source.edm

    def one(value: Any) -> Any:
        return cast_primitive(value, source_edm, target_edm)

    if not source.collection:
        return one

    def items(values: Any) -> Any:
        # Collections are cast item by item; one failing item fails the cast.
        if not isinstance(values, list):
            return None
        result = []
        for value in values:
            converted = None if value is None else one(value)
            if converted is None and value is not None:
                return None
            result.append(converted)
        return result

    return items


# --- Lambdas ----------------------------------------------------------------------


def _compile_lambda(expr: BoundLambda) -> Compiled:
    collection = _compile(expr.collection)
    if expr.predicate is None or expr.variable is None:

        def not_empty(row: Row, scope: Scope) -> bool:
            items = collection(row, scope)
            return isinstance(items, list) and len(items) > 0

        return not_empty
    predicate, variable = _compile(expr.predicate), expr.variable
    if expr.kind == "any":

        def evaluate_any(row: Row, scope: Scope) -> bool:
            items = collection(row, scope)
            if not isinstance(items, list):
                return False
            return any(predicate(row, {**scope, variable: item}) is True for item in items)

        return evaluate_any

    def evaluate_all(row: Row, scope: Scope) -> bool:
        items = collection(row, scope)
        if not isinstance(items, list):
            return True
        return all(predicate(row, {**scope, variable: item}) is True for item in items)

    return evaluate_all
