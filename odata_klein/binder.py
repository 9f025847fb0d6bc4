"""
Binding: checking a syntax tree (`odata_klein.syntax`) against the model and
turning it into a bound tree (`odata_klein.bound`) whose every name is a
property of the model and every node has its Edm type.

Everything a client can get wrong is reported here, before any row is read,
as `BadRequest` whose message names the query option, the character position
in it and what was expected, e.g. ``$filter at position 6: cannot compare
Edm.Decimal property 'Hours' with Edm.String 'x'``.

Some rewriting happens on the way, so that providers pushing filters down and
the evaluator see plain comparisons:

* parameter aliases and ``$compute`` names are replaced by their bound values;
* ``now()``, ``maxdatetime()`` and ``mindatetime()`` become literals (one
  instant per `Binder`, so bind one request's options with one binder);
* a numeric literal takes the type of the operand it is compared with when it
  converts without loss (``Hours gt 2`` compares with ``Decimal('2')``), and
  a string literal compared with an Edm.Duration is read as a duration (4.01
  allows ``duration'...'`` without its prefix);
* an Edm.Date compared with a DateTimeOffset literal becomes a comparison of
  dates (`date_comparison_for_date_time`);
* entities compare by their keys (``Job eq $it/OtherJob``);
* ``x in Collection`` becomes ``Collection/any($in: $in eq x)``;
* ``Nav/$count`` becomes ``BoundCall("$count", (BoundProperty(Nav, collection),), "Edm.Int64")``;
* ``cast`` and ``isof`` get their type name as a ``BoundLiteral(name, "Edm.String")``
  last argument; ``cast(T)`` and ``isof(T)`` get ``$it`` (a BoundProperty
  with an empty path) as first argument.
"""

from __future__ import annotations

import datetime
import difflib
import math
from dataclasses import dataclass, replace
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Mapping, Optional, Union

from . import syntax
from .bound import (
    BoundBinary,
    BoundCall,
    BoundExpr,
    BoundIn,
    BoundLambda,
    BoundLiteral,
    BoundProperty,
    BoundUnary,
    operands,
)
from .errors import BadRequest, NotImplementedYet
from .functions import CONSTANT_FUNCTIONS, FUNCTIONS, TYPE_FUNCTIONS
from .model import INTEGER_TYPES, NUMERIC_TYPES, ComplexType, Edm, EntityType, Model
from .parser import MAX_DEPTH
from .patterns import ecmascript_regex
from .values import INT_RANGES, TypeRef, binary_operation, negation, parse_text, payload_text, promote

Structure = Union[EntityType, ComplexType]

_NOTHING: Mapping[str, Any] = MappingProxyType({})
# Terms one binder writes out for computed properties and parameter aliases
# used more than once (see `Binder._written_out`): far beyond any use that is
# not an attack.
MAX_INLINED_TERMS = 10_000
# How deep a bound expression may be, aliases and computed properties
# written out: deeper than anything the parser lets through (MAX_DEPTH), and
# shallow enough that the recursive code that binds, compiles and evaluates
# it stays far from Python's recursion limit however aliases chain.
MAX_BOUND_DEPTH = MAX_DEPTH + 50
# Lambdas within lambdas: seven over a timesheet's entries took longer than
# anyone waits, with the reactor held for all of it.
MAX_LAMBDA_NESTING = 2
_BOOLEAN = Edm.BOOLEAN.value
_UNTYPED = Edm.UNTYPED.value
_COMPARISONS = frozenset({"eq", "ne", "gt", "ge", "lt", "le"})
_ARITHMETIC = frozenset({"add", "sub", "mul", "div", "divby", "mod"})
_MIRRORED = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}
# The lambda variable of the `any` that ``x in Collection`` becomes: not an
# OData identifier, so it cannot hide a variable of the client's.
IN_VARIABLE = "$in"


def date_comparison_for_date_time(
    op: str, moment: datetime.datetime
) -> Union[bool, tuple[str, datetime.date]]:
    """
    How ``DateValue op moment`` reads as a comparison of dates, for an
    Edm.Date value and a DateTimeOffset literal.

    Power BI and Excel filter Edm.Date columns with DateTimeOffset literals at
    the user's offset (``Date ge 2026-02-03T00:00:00-05:00``).  The literal is
    read at its own offset: a date D stands for its first instant, D at 00:00
    at the literal's offset, and is compared with the literal.  With ``d`` the
    literal's local date, that gives:

    ====  ==================  ===========================
    op    literal at 00:00    literal later on its day
    ====  ==================  ===========================
    eq    ``D eq d``          false (no date starts then)
    ne    ``D ne d``          true
    gt    ``D gt d``          ``D gt d``
    ge    ``D ge d``          ``D gt d`` (``D ge d+1``)
    lt    ``D lt d``          ``D le d``
    le    ``D le d``          ``D le d``
    ====  ==================  ===========================

    The result is ``(op, d)`` for the comparison of dates, or the constant
    truth value; constants are right for a null D too (``null eq x`` is false,
    ``null ne x`` true).
    """
    day = moment.date()
    if moment.time() == datetime.time():
        return op, day
    later: dict[str, Union[bool, tuple[str, datetime.date]]] = {
        "eq": False,
        "ne": True,
        "gt": ("gt", day),
        "ge": ("gt", day),
        "lt": ("le", day),
        "le": ("le", day),
    }
    return later[op]


@dataclass(frozen=True)
class _Variable:
    type: TypeRef
    structure: Optional[Structure]


@dataclass(frozen=True)
class _Context:
    """Where an expression is bound: the option it came from and the names in scope."""

    option: str
    it: EntityType
    variables: Mapping[str, _Variable]
    aliases: Mapping[str, syntax.Expr]
    computed: Mapping[str, BoundExpr]
    # Aliases being bound, innermost last: an alias used in its own value is an error.
    resolving: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Shape:
    """The size of a bound expression written out, and its depth."""

    terms: int
    depth: int


def _too_deep(ctx: _Context, pos: int) -> BadRequest:
    return _error(
        ctx.option,
        pos,
        f"the expression is nested more than {MAX_BOUND_DEPTH} levels deep, with the aliases and "
        "computed properties it uses written out",
    )


def describe(expr: BoundExpr) -> str:
    """An operand as error messages name it: ``Edm.Decimal property 'Hours'``, ``Edm.String 'x'``."""
    kind = TypeRef.of(expr)
    if isinstance(expr, BoundProperty):
        if not expr.path:
            return f"{kind} lambda variable '{expr.variable}'" if expr.variable else f"{kind} $it"
        steps = ((expr.variable,) if expr.variable else ()) + expr.path
        return f"{kind} property '{'/'.join(steps)}'"
    if isinstance(expr, BoundLiteral):
        if expr.value is None:
            return "null"
        if isinstance(expr.value, str):
            return f"{kind} '{expr.value}'"
        if kind.collection or kind.edm is None or kind.is_untyped:
            return f"{kind} literal"
        return f"{kind} {payload_text(expr.value)}"
    if isinstance(expr, BoundCall):
        return f"{kind} result of {expr.name}()"
    return f"{kind} expression"


class Binder:
    """
    Binds expressions of one request against ``model``.  ``now`` is the
    instant ``now()`` stands for (default: when the binder is made).
    """

    def __init__(self, model: Model, *, now: Optional[datetime.datetime] = None) -> None:
        self._model = model
        self._now = now if now is not None else datetime.datetime.now(datetime.timezone.utc)
        # Computed properties and aliases used so far, the terms their further
        # uses wrote out (see _written_out), and a memo of expression sizes.
        self._used_names: set[str] = set()
        self._inlined_terms = 0
        self._shapes: dict[int, tuple[BoundExpr, _Shape]] = {}
        # How many expressions are being bound, one inside the other.
        self._depth = 0

    def bind_filter(
        self,
        expr: syntax.Expr,
        entity_type: EntityType,
        aliases: Mapping[str, syntax.Expr] = _NOTHING,
        option: str = "$filter",
        *,
        computed: Mapping[str, BoundExpr] = _NOTHING,
    ) -> BoundExpr:
        """
        A Boolean expression over instances of ``entity_type``.  ``aliases``
        maps alias names (without ``@``) to their values; ``computed`` maps
        ``$compute`` names to their bound expressions.
        """
        bound = self.bind_expression(expr, entity_type, aliases, option, computed=computed)
        kind = TypeRef.of(bound)
        if kind.collection or not (kind.edm is Edm.BOOLEAN or kind.is_untyped):
            raise _error(option, expr.pos, f"the expression must be Edm.Boolean, not {describe(bound)}")
        return bound

    def bind_expression(
        self,
        expr: syntax.Expr,
        entity_type: EntityType,
        aliases: Mapping[str, syntax.Expr] = _NOTHING,
        option: str = "$orderby",
        *,
        computed: Mapping[str, BoundExpr] = _NOTHING,
    ) -> BoundExpr:
        """An expression of any type over instances of ``entity_type`` (``$orderby``, ``$compute``)."""
        return self._bind(expr, _Context(option, entity_type, _NOTHING, aliases, computed))

    # --- Dispatch -----------------------------------------------------------------------

    def _bind(self, expr: syntax.Expr, ctx: _Context) -> BoundExpr:
        self._depth += 1
        try:
            if self._depth > MAX_BOUND_DEPTH:
                raise _too_deep(ctx, getattr(expr, "pos", 0))
            return self._bind_node(expr, ctx)
        finally:
            self._depth -= 1

    def _bind_node(self, expr: syntax.Expr, ctx: _Context) -> BoundExpr:
        if isinstance(expr, syntax.Literal):
            return BoundLiteral(expr.value, expr.type)
        if isinstance(expr, syntax.Path):
            return self._bind_path(expr, ctx)
        if isinstance(expr, syntax.BinaryOp):
            return self._bind_binary(expr, ctx)
        if isinstance(expr, syntax.UnaryOp):
            return self._bind_unary(expr, ctx)
        if isinstance(expr, syntax.Call):
            return self._bind_call(expr, ctx)
        if isinstance(expr, syntax.Lambda):
            return self._bind_lambda(expr, ctx)
        if isinstance(expr, syntax.In):
            return self._bind_in(expr, ctx)
        if isinstance(expr, syntax.Alias):
            value, alias_ctx = self._alias_value(expr, ctx)
            bound = self._bind(value, alias_ctx)
            self._written_out(f"@{expr.name}", self._shape(bound).terms, expr.pos, ctx)
            return bound
        if isinstance(expr, syntax.ListExpr):
            return self._bind_list(expr, ctx)
        if isinstance(expr, syntax.JsonValue):
            return BoundLiteral(self._json_object(expr, ctx), _UNTYPED)
        if isinstance(expr, syntax.EnumLiteral):
            raise _error(ctx.option, expr.pos, f"the model defines no enumeration type '{expr.type_name}'")
        if isinstance(expr, syntax.TypeName):
            raise _error(
                ctx.option,
                expr.pos,
                f"the type name '{expr.name}' can only be an argument of cast() or isof()",
            )
        raise TypeError(f"not a syntax tree: {expr!r}")

    def _alias_value(self, alias: syntax.Alias, ctx: _Context) -> tuple[syntax.Expr, _Context]:
        """The value of an alias and the context to bind it in (errors then point into the alias)."""
        if alias.name in ctx.resolving:
            raise _error(ctx.option, alias.pos, f"parameter alias @{alias.name} refers to itself")
        if alias.name not in ctx.aliases:
            raise _error(ctx.option, alias.pos, f"parameter alias @{alias.name} is not defined")
        return ctx.aliases[alias.name], replace(
            ctx, option=f"@{alias.name}", resolving=ctx.resolving + (alias.name,)
        )

    # --- Paths ----------------------------------------------------------------------------

    def _qualified(self, structure: Structure) -> str:
        return self._model.qualified(structure.name)

    def _structure(self, type_name: str) -> Optional[Structure]:
        return self._model.entity_type(type_name) or self._model.complex_type(type_name)

    def _inline(self, computed: BoundExpr, name: str, path: syntax.Path, ctx: _Context) -> BoundExpr:
        """A computed property's expression, where its alias is used."""
        shape = self._shape(computed)
        if self._depth + shape.depth > MAX_BOUND_DEPTH:
            raise _too_deep(ctx, path.pos)
        self._written_out(name, shape.terms, path.pos, ctx)
        return computed

    def _written_out(self, name: str, terms: int, pos: int, ctx: _Context) -> None:
        """
        Account for ``terms`` more terms bound and evaluated anew because
        ``name`` (a computed property or a parameter alias) is used once more.
        Its first use costs what its text in the URL does; each further one
        copies it, so ``$compute=concat(C,C) as A1,concat(A1,A1) as A2,...``
        (or ``@a1=concat(@a2,@a2)&@a2=...``) doubles the work, and the text,
        with every name: thirty of them would take a billion terms per row
        and as many copies of the comment.  A binder writes out at most
        `MAX_INLINED_TERMS` terms in all for such further uses.
        """
        if name not in self._used_names:
            self._used_names.add(name)
            return
        self._inlined_terms += terms
        if self._inlined_terms > MAX_INLINED_TERMS:
            raise _error(
                ctx.option,
                pos,
                f"{name} and the names used before it, each used more than once, stand for more than "
                f"{MAX_INLINED_TERMS:,} terms written out; use them fewer times",
            )

    def _shape(self, expr: BoundExpr) -> "_Shape":
        """How many terms ``expr`` has written out (shared parts counted each time) and how deep it is."""
        known = self._shapes.get(id(expr))
        if known is None:
            parts = [self._shape(part) for part in operands(expr)]
            shape = _Shape(1 + sum(p.terms for p in parts), 1 + max((p.depth for p in parts), default=0))
            # The memo holds the expression too, so that its id is not reused meanwhile.
            known = self._shapes[id(expr)] = (expr, shape)
        return known[1]

    def _bind_path(self, path: syntax.Path, ctx: _Context) -> BoundExpr:
        segments = list(path.segments)
        root = path.root
        if root is None and segments and segments[0].name in ctx.variables and segments[0].key is None:
            # A lambda variable takes precedence over a property of the same name.
            root = segments.pop(0).name
        if root is None and len(segments) == 1 and segments[0].name in ctx.computed:
            return self._inline(ctx.computed[segments[0].name], segments[0].name, path, ctx)
        if root == "$root" or (root is not None and root.startswith("@")):
            raise NotImplementedYet(
                f"{ctx.option} at position {path.pos}: paths into {root} are not supported", target=ctx.option
            )
        variable: Optional[str] = None
        if root in (None, "$it", "$this"):
            current = TypeRef(self._qualified(ctx.it))
            structure: Optional[Structure] = ctx.it
        elif root in ctx.variables:
            variable = root
            current, structure = ctx.variables[root].type, ctx.variables[root].structure
        else:
            raise _error(ctx.option, path.pos, f"lambda variable '{root}' is not defined here")

        names: list[str] = []
        navigation: list[bool] = []
        for index, segment in enumerate(segments):
            if segment.key is not None:
                raise _error(ctx.option, segment.pos, "a key predicate can only follow a $root path")
            if segment.name == "$count":
                if not current.collection:
                    raise _error(
                        ctx.option,
                        segment.pos,
                        f"$count needs a collection, and {'/'.join(names) or '$it'} is not one",
                    )
                if index != len(segments) - 1:
                    raise _error(ctx.option, segments[index + 1].pos, "nothing can follow /$count")
                collection = BoundProperty(
                    tuple(names), current.name or _UNTYPED, tuple(navigation[:-1]), True, variable
                )
                return BoundCall("$count", (collection,), Edm.INT64.value)
            if current.collection:
                raise _error(
                    ctx.option,
                    segment.pos,
                    f"'{names[-1]}' is a collection: use it with any(), all() or /$count",
                )
            if (
                structure is not None
                and "." in segment.name
                and segment.name.startswith(self._model.namespace + ".")
            ):
                if segment.name != self._qualified(structure):
                    raise _error(
                        ctx.option,
                        segment.pos,
                        f"'{segment.name}' is not derived from {self._qualified(structure)}",
                    )
                continue
            if structure is None:
                if current.is_untyped:
                    # Inside a dynamic value: whatever the data holds.
                    names.append(segment.name)
                    navigation.append(False)
                    continue
                raise _error(
                    ctx.option,
                    segment.pos,
                    f"{current} property '{'/'.join(names)}' has no property '{segment.name}'",
                )
            current, structure, is_navigation = self._member(structure, segment, ctx)
            names.append(segment.name)
            navigation.append(is_navigation)
        return BoundProperty(
            tuple(names), current.name or _UNTYPED, tuple(navigation[:-1]), current.collection, variable
        )

    def _member(
        self, structure: Structure, segment: syntax.PathSegment, ctx: _Context
    ) -> tuple[TypeRef, Optional[Structure], bool]:
        """The type of a member of ``structure``, its own structure, and whether it is a navigation property."""
        for prop in structure.properties:
            if prop.name == segment.name:
                return TypeRef(prop.type, prop.collection), self._structure(prop.type), False
        if isinstance(structure, EntityType):
            nav = structure.navigation_property(segment.name)
            if nav is not None:
                return TypeRef(nav.target_type, nav.collection), self._structure(nav.target_type), True
        if structure.open:
            return TypeRef(_UNTYPED), None, False
        names = [p.name for p in structure.properties]
        if isinstance(structure, EntityType):
            names += [n.name for n in structure.navigation_properties]
        close = difflib.get_close_matches(segment.name, names, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise _error(
            ctx.option,
            segment.pos,
            f"'{segment.name}' is not a property of {self._qualified(structure)}{hint}",
        )

    # --- Operators ------------------------------------------------------------------------

    def _require_boolean(self, expr: BoundExpr, ctx: _Context, pos: int, role: str) -> None:
        kind = TypeRef.of(expr)
        if kind.collection or not (kind.edm is Edm.BOOLEAN or kind.is_untyped or kind.is_null):
            raise _error(ctx.option, pos, f"{role} must be Edm.Boolean, not {describe(expr)}")

    def _bind_binary(self, node: syntax.BinaryOp, ctx: _Context) -> BoundExpr:
        op = node.op
        if op in _COMPARISONS:
            return self._bind_comparison(node, ctx)
        left, right = self._bind(node.left, ctx), self._bind(node.right, ctx)
        if op in ("and", "or"):
            self._require_boolean(left, ctx, node.pos, f"the left operand of '{op}'")
            self._require_boolean(right, ctx, node.pos, f"the right operand of '{op}'")
            return BoundBinary(op, left, right, _BOOLEAN)
        if op == "has":
            raise _error(ctx.option, node.pos, f"'has' needs an enumeration value, not {describe(left)}")
        if op in _ARITHMETIC:
            operation = binary_operation(op, TypeRef.of(left), TypeRef.of(right))
            if operation is None:
                raise _error(ctx.option, node.pos, f"cannot {op} {describe(left)} and {describe(right)}")
            self._check_divisor(op, operation.result, left, right, ctx, node.pos)
            return BoundBinary(op, left, right, operation.result)
        raise _error(ctx.option, node.pos, f"unknown operator '{op}'")

    def _check_divisor(
        self, op: str, result: str, left: BoundExpr, right: BoundExpr, ctx: _Context, pos: int
    ) -> None:
        """
        A literal zero divisor fails the request where OData says so: ``mod``
        always, ``div`` unless it divides floating-point numbers (INF, -INF or
        NaN); ``divby`` never fails.
        """
        if op not in ("div", "mod") or not isinstance(right, BoundLiteral):
            return
        value = right.value
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)) or value != 0:
            return
        if op == "div" and result in (Edm.DOUBLE.value, Edm.SINGLE.value, _UNTYPED):
            return
        raise _error(ctx.option, pos, f"{describe(left)} {op} zero is undefined")

    def _bind_unary(self, node: syntax.UnaryOp, ctx: _Context) -> BoundExpr:
        operand = self._bind(node.operand, ctx)
        if node.op == "not":
            self._require_boolean(operand, ctx, node.pos, "the operand of 'not'")
            return BoundUnary("not", operand, _BOOLEAN)
        operation = negation(TypeRef.of(operand))
        if operation is None:
            raise _error(ctx.option, node.pos, f"cannot negate {describe(operand)}")
        if (
            isinstance(operand, BoundLiteral)
            and operand.value is not None
            and not TypeRef.of(operand).is_untyped
        ):
            # Fold -5 into a literal: providers push literals down, not negations.
            try:
                return BoundLiteral(operation.apply(operand.value, None), operand.type)
            except ArithmeticError:
                raise _error(
                    ctx.option, node.pos, f"-{payload_text(operand.value)} is out of range"
                ) from None
        return BoundUnary("-", operand, operation.result)

    def _bind_comparison(self, node: syntax.BinaryOp, ctx: _Context) -> BoundExpr:
        left, right = self._bind(node.left, ctx), self._bind(node.right, ctx)
        return self._compare(node.op, left, right, ctx, node.pos)

    def _compare(self, op: str, left: BoundExpr, right: BoundExpr, ctx: _Context, pos: int) -> BoundExpr:
        """``left op right`` checked and normalised (see the module docstring)."""
        for date_side, literal, side_op in ((left, right, op), (right, left, _MIRRORED[op])):
            if (
                TypeRef.of(date_side).edm is Edm.DATE
                and not TypeRef.of(date_side).collection
                and _is_date_time_literal(literal)
            ):
                assert isinstance(literal, BoundLiteral) and isinstance(literal.value, datetime.datetime)
                rewritten = date_comparison_for_date_time(side_op, literal.value)
                if isinstance(rewritten, bool):
                    return BoundLiteral(rewritten, _BOOLEAN)
                return BoundBinary(
                    rewritten[0], date_side, BoundLiteral(rewritten[1], Edm.DATE.value), _BOOLEAN
                )
        left, right = _harmonise(left, right)
        lt, rt = TypeRef.of(left), TypeRef.of(right)
        if not self._comparable(op, lt, rt):
            raise _error(
                ctx.option,
                pos,
                f"cannot compare {describe(left)} with {describe(right)}"
                + (
                    " using an order operator"
                    if op not in ("eq", "ne") and self._comparable("eq", lt, rt)
                    else ""
                ),
            )
        if (
            self._model.entity_type(lt.name or "") is not None
            and isinstance(left, BoundProperty)
            and isinstance(right, BoundProperty)
            and not lt.collection
        ):
            return self._compare_entities(op, left, right)
        return BoundBinary(op, left, right, _BOOLEAN)

    def _comparable(self, op: str, lt: TypeRef, rt: TypeRef) -> bool:
        ordering = op not in ("eq", "ne")
        if lt.is_null or rt.is_null:
            other = rt if lt.is_null else lt
            return (
                not ordering
                or other.is_null
                or (other.edm is not None and not other.collection and other.edm is not Edm.BINARY)
            )
        if lt.collection or rt.collection:
            # Ordered collections compare item by item, with eq and ne only.
            return (
                not ordering
                and lt.collection
                and rt.collection
                and self._comparable("eq", TypeRef(lt.name), TypeRef(rt.name))
            )
        if lt.is_untyped or rt.is_untyped:
            return True
        le, re_ = lt.edm, rt.edm
        if le is None or re_ is None:
            # Structured values: equal structure and values (complex), same entity (entities).
            return not ordering and lt.name == rt.name
        if le is Edm.BINARY or re_ is Edm.BINARY:
            return False
        return le == re_ or (le in NUMERIC_TYPES and re_ in NUMERIC_TYPES)

    def _compare_entities(self, op: str, left: BoundProperty, right: BoundProperty) -> BoundExpr:
        """Two entities are equal when they have the same key (both null: equal too)."""
        entity_type = self._model.entity_type(left.type)
        assert entity_type is not None
        joiner = "and" if op == "eq" else "or"
        result: Optional[BoundExpr] = None
        for key in entity_type.key_properties:
            part = BoundBinary(
                op, _key_of(left, key.name, key.type), _key_of(right, key.name, key.type), _BOOLEAN
            )
            result = part if result is None else BoundBinary(joiner, result, part, _BOOLEAN)
        assert result is not None
        return result

    # --- in ------------------------------------------------------------------------------------

    def _bind_in(self, node: syntax.In, ctx: _Context) -> BoundExpr:
        operand = self._bind(node.operand, ctx)
        values, values_ctx = node.values, ctx
        while isinstance(values, syntax.Alias):
            alias = values
            values, values_ctx = self._alias_value(alias, values_ctx)
            listed = len(values.items) if isinstance(values, syntax.ListExpr) else 1
            self._written_out(f"@{alias.name}", listed, alias.pos, ctx)
        if isinstance(values, syntax.ListExpr):
            values = values.items
        if not isinstance(values, tuple):
            return self._in_collection(operand, self._bind(values, values_ctx), ctx, node.pos)
        items = [self._bind(item, values_ctx) for item in values]
        members: list[BoundExpr] = []
        for item in items:
            # Each member must be comparable as in ``operand eq member``.
            compared = self._compare("eq", operand, item, ctx, node.pos)
            if isinstance(compared, BoundLiteral):
                # A DateTimeOffset that no Edm.Date can equal.
                continue
            if isinstance(compared, BoundBinary) and compared.op == "eq" and compared.left is operand:
                members.append(compared.right)
            else:
                members.append(_harmonise(operand, item)[1])
        return BoundIn(operand, tuple(members))

    def _in_collection(self, operand: BoundExpr, collection: BoundExpr, ctx: _Context, pos: int) -> BoundExpr:
        if not (isinstance(collection, BoundProperty) and collection.collection):
            raise _error(
                ctx.option,
                pos,
                f"the right operand of 'in' must be a list or a collection, not {describe(collection)}",
            )
        item = BoundProperty((), collection.type, (), False, IN_VARIABLE)
        member = self._compare("eq", operand, item, ctx, pos)
        return BoundLambda(collection, "any", IN_VARIABLE, member)

    def _json_object(self, node: syntax.JsonValue, ctx: _Context) -> Any:
        """
        A JSON object as a Python dict.  The parser gives its members as
        ``(name, expression)`` pairs; each must bind to a literal.
        """
        if not isinstance(node.value, tuple):
            return node.value
        members: dict[str, Any] = {}
        for name, member in node.value:
            bound = self._bind(member, ctx)
            if not isinstance(bound, BoundLiteral):
                raise _error(ctx.option, member.pos, f"JSON members must be literals, not {describe(bound)}")
            members[name] = bound.value
        return members

    def _bind_list(self, node: syntax.ListExpr, ctx: _Context) -> BoundExpr:
        """A parenthesised list outside ``in``: a collection literal."""
        items = [self._bind(item, ctx) for item in node.items]
        values: list[Any] = []
        element: Optional[TypeRef] = None
        for item in items:
            if not isinstance(item, BoundLiteral) or TypeRef.of(item).collection:
                raise _error(
                    ctx.option, node.pos, f"list items must be primitive literals, not {describe(item)}"
                )
            values.append(item.value)
            kind = TypeRef.of(item)
            if kind.is_null:
                continue
            if element is None or element == kind:
                element = kind
            elif element.edm in NUMERIC_TYPES and kind.edm in NUMERIC_TYPES:
                element = TypeRef(promote(element.edm, kind.edm).value)
            else:
                element = TypeRef(_UNTYPED)
        return BoundLiteral(values, f"Collection({element.name if element else _UNTYPED})")

    # --- Lambdas ---------------------------------------------------------------------------

    def _bind_lambda(self, node: syntax.Lambda, ctx: _Context) -> BoundExpr:
        collection = self._bind_path(node.collection, ctx)
        if not (
            isinstance(collection, BoundProperty) and (collection.collection or collection.type == _UNTYPED)
        ):
            raise _error(
                ctx.option, node.pos, f"{node.kind}() needs a collection, not {describe(collection)}"
            )
        if node.predicate is None or node.variable is None:
            if node.kind == "all":
                raise _error(ctx.option, node.pos, "all() needs a lambda variable and a predicate")
            return BoundLambda(collection, "any", None, None)
        if len(ctx.variables) >= MAX_LAMBDA_NESTING:
            # Each level multiplies the work per row by the size of a collection.
            raise _error(
                ctx.option, node.pos, f"any() and all() may be nested at most {MAX_LAMBDA_NESTING} deep"
            )
        element = TypeRef(collection.type)
        variables = dict(ctx.variables)
        variables[node.variable] = _Variable(element, self._structure(collection.type))
        predicate = self._bind(node.predicate, replace(ctx, variables=MappingProxyType(variables)))
        self._require_boolean(predicate, ctx, node.predicate.pos, f"the predicate of {node.kind}()")
        return BoundLambda(collection, node.kind, node.variable, predicate)

    # --- Function calls -------------------------------------------------------------------

    def _bind_call(self, node: syntax.Call, ctx: _Context) -> BoundExpr:
        name = node.name
        if name in CONSTANT_FUNCTIONS:
            if node.args:
                raise _error(ctx.option, node.pos, f"{name}() takes no arguments")
            return BoundLiteral(self._constant(name), Edm.DATE_TIME_OFFSET.value)
        if name in TYPE_FUNCTIONS:
            return self._bind_type_function(node, ctx)
        if name == "case":
            return self._bind_case(node, ctx)
        function = FUNCTIONS.get(name)
        if function is None:
            if name.startswith("geo."):
                raise NotImplementedYet(
                    f"{ctx.option} at position {node.pos}: {name}() is not supported", target=ctx.option
                )
            close = difflib.get_close_matches(
                name, list(FUNCTIONS) + list(CONSTANT_FUNCTIONS) + list(TYPE_FUNCTIONS), n=1
            )
            hint = f"; did you mean {close[0]}()?" if close else ""
            raise _error(ctx.option, node.pos, f"unknown function {name}(){hint}")
        args = tuple(self._bind(arg, ctx) for arg in node.args)
        kinds = [TypeRef.of(arg) for arg in args]
        signature = function.signature_for(kinds)
        if signature is None:
            arities = sorted({len(s.params) for s in function.signatures})
            if len(args) not in arities:
                counts = " or ".join(str(n) for n in arities)
                raise _error(ctx.option, node.pos, f"{name}() takes {counts} arguments, not {len(args)}")
            takes = " or ".join(str(s) for s in function.signatures if len(s.params) == len(args))
            given = ", ".join(describe(arg) for arg in args)
            raise _error(ctx.option, node.pos, f"{name}() takes {takes}, not ({given})")
        self._check_literal_arguments(name, args, ctx, node)
        return BoundCall(name, args, str(signature.result(kinds)))

    def _check_literal_arguments(
        self, name: str, args: tuple[BoundExpr, ...], ctx: _Context, node: syntax.Call
    ) -> None:
        """Literal arguments that make a call fail for every row fail the request instead."""
        if name == "matchespattern" and isinstance(args[1], BoundLiteral) and isinstance(args[1].value, str):
            try:
                ecmascript_regex(args[1].value)
            except ValueError as error:
                raise _error(ctx.option, node.args[1].pos, f"invalid regular expression: {error}") from None
        if name == "substring" and len(args) == 3 and isinstance(args[2], BoundLiteral):
            count = args[2].value
            if isinstance(count, int) and count < 0:
                raise _error(
                    ctx.option, node.args[2].pos, "the length given to substring() must not be negative"
                )

    def _bind_case(self, node: syntax.Call, ctx: _Context) -> BoundExpr:
        """
        ``case(c1:v1, c2:v2, ...)``, its arguments given as ``c1, v1, c2, v2...``.
        Its type is the values' common type: theirs if they agree, the
        promoted numeric type for numbers, Edm.Untyped otherwise.
        """
        if not node.args or len(node.args) % 2:
            raise _error(ctx.option, node.pos, "case() takes condition:value pairs")
        args = tuple(self._bind(arg, ctx) for arg in node.args)
        for condition, syntax_node in zip(args[::2], node.args[::2]):
            self._require_boolean(condition, ctx, syntax_node.pos, "a condition of case()")
        common: Optional[TypeRef] = None
        for kind in (TypeRef.of(result) for result in args[1::2]):
            if kind.is_null or common == kind:
                continue
            if common is None:
                common = kind
            elif not kind.collection and not common.collection and _numeric(kind) and _numeric(common):
                common = TypeRef(promote(common.edm, kind.edm).value)  # type: ignore[arg-type]
            else:
                common = TypeRef(_UNTYPED)
                break
        return BoundCall("case", args, str(common) if common is not None else None)

    def _constant(self, name: str) -> datetime.datetime:
        utc = datetime.timezone.utc
        if name == "now":
            return self._now
        if name == "maxdatetime":
            return datetime.datetime.max.replace(tzinfo=utc)
        return datetime.datetime.min.replace(tzinfo=utc)

    def _bind_type_function(self, node: syntax.Call, ctx: _Context) -> BoundExpr:
        """``cast(x, T)``, ``cast(T)``, ``isof(x, T)``, ``isof(T)``: T a primitive or structured type of the model."""
        if len(node.args) not in (1, 2) or not isinstance(node.args[-1], syntax.TypeName):
            raise _error(ctx.option, node.pos, f"{node.name}() takes an optional expression and a type name")
        type_name = node.args[-1]
        if len(node.args) == 2:
            value = self._bind(node.args[0], ctx)
        else:
            value = BoundProperty((), self._qualified(ctx.it))
        try:
            Edm(type_name.name)
        except ValueError:
            if self._structure(type_name.name) is None:
                raise _error(ctx.option, type_name.pos, f"unknown type '{type_name.name}'") from None
        target = BoundLiteral(type_name.name, Edm.STRING.value)
        if node.name == "isof":
            return BoundCall("isof", (value, target), _BOOLEAN)
        result = TypeRef(type_name.name, TypeRef.of(value).collection)
        return BoundCall("cast", (value, target), str(result))


# --- Helpers -------------------------------------------------------------------------------------


def _error(option: str, pos: int, message: str) -> BadRequest:
    return BadRequest(f"{option} at position {pos}: {message}", target=option)


def _numeric(kind: TypeRef) -> bool:
    return kind.edm in NUMERIC_TYPES


def _is_date_time_literal(expr: BoundExpr) -> bool:
    return (
        isinstance(expr, BoundLiteral)
        and isinstance(expr.value, datetime.datetime)
        and expr.type == Edm.DATE_TIME_OFFSET.value
    )


def _key_of(entity: BoundProperty, key: str, key_type: str) -> BoundProperty:
    # The entity itself was reached by navigation (unless it is $it or a lambda variable).
    steps_navigation = entity.navigation + ((True,) if entity.path else ())
    return BoundProperty(entity.path + (key,), key_type, steps_navigation, False, entity.variable)


def _harmonise(left: BoundExpr, right: BoundExpr) -> tuple[BoundExpr, BoundExpr]:
    """Give a literal operand the type of the other operand where its value converts without loss."""
    if isinstance(right, BoundLiteral):
        converted = _literal_as(right, TypeRef.of(left))
        if converted is not None:
            return left, converted
    if isinstance(left, BoundLiteral):
        converted = _literal_as(left, TypeRef.of(right))
        if converted is not None:
            return converted, right
    return left, right


def _literal_as(literal: BoundLiteral, target: TypeRef) -> Optional[BoundLiteral]:
    value, source, edm = literal.value, TypeRef.of(literal), target.edm
    if value is None or target.collection or source.collection or edm is None or source.edm == edm:
        return None
    if edm is Edm.DURATION and isinstance(value, str):
        try:
            return BoundLiteral(parse_text(Edm.DURATION, value), edm.value)
        except ValueError:
            return None
    if edm not in NUMERIC_TYPES or source.edm not in NUMERIC_TYPES or isinstance(value, bool):
        return None
    converted = _exact_number(value, edm)
    return None if converted is None else BoundLiteral(converted, edm.value)


def _exact_number(value: Any, target: Edm) -> Any:
    """A numeric literal's value as ``target`` when the literal's text denotes it exactly, else None."""
    if target in INTEGER_TYPES:
        if isinstance(value, float) and not value.is_integer():
            return None
        if isinstance(value, Decimal) and (not value.is_finite() or value != value.to_integral_value()):
            return None
        number = int(value)
        low, high = INT_RANGES[target]
        return number if low <= number <= high else None
    if target is Edm.DECIMAL:
        if isinstance(value, float):
            # A Double literal's text is its shortest repr: 1e-1 is 0.1.
            return Decimal(repr(value)) if math.isfinite(value) else None
        return Decimal(value)
    as_float = float(value)
    return as_float if math.isfinite(as_float) else None
