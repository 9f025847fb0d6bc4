"""
Binding expressions to a small ClickTime-like model: name resolution, types,
rewriting (aliases, literal types, Date against DateTimeOffset), and every
error with its message and position.

Syntax trees are built by hand with the helpers below (``path``, ``lit``,
``op``, ``call``...), which `test_evaluate` uses too.
"""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal
from typing import Any, Mapping, Optional

import pytest

from odata_klein import syntax
from odata_klein.binder import IN_VARIABLE, MAX_BOUND_DEPTH, Binder, date_comparison_for_date_time
from odata_klein.bound import (
    BoundBinary,
    BoundCall,
    BoundExpr,
    BoundIn,
    BoundLambda,
    BoundLiteral,
    BoundProperty,
    BoundUnary,
)
from odata_klein.errors import BadRequest, NotImplementedYet
from odata_klein.model import (
    ComplexType,
    EntitySet,
    EntityType,
    Model,
    NavigationProperty,
    Property,
)
from odata_klein.parser import MAX_DEPTH, QueryParser

# --- The fixture model ------------------------------------------------------------------

CLIENT = EntityType(
    "Client",
    ("ID",),
    (
        Property("ID", "Edm.String", nullable=False),
        Property("Name", "Edm.String"),
        Property("CreatedDate", "Edm.DateTimeOffset"),
    ),
)
JOB = EntityType(
    "Job",
    ("ID",),
    (
        Property("ID", "Edm.String", nullable=False),
        Property("Name", "Edm.String"),
        Property("ClientID", "Edm.String"),
        Property("IsActive", "Edm.Boolean"),
    ),
    (NavigationProperty("Client", "ClickTime.Client"),),
)
CUSTOM_FIELDS = ComplexType("CustomFields", (Property("Priority", "Edm.Int32"),), open=True)
TIME_ENTRY = EntityType(
    "TimeEntry",
    ("ID",),
    (
        Property("ID", "Edm.String", nullable=False),
        Property("Date", "Edm.Date"),
        Property("Hours", "Edm.Decimal"),
        Property("Amount", "Edm.Decimal"),
        Property("BreakTime", "Edm.Duration"),
        Property("StartTime", "Edm.TimeOfDay"),
        Property("Comment", "Edm.String"),
        Property("JobID", "Edm.String"),
        Property("Rate", "Edm.Double"),
        Property("Count", "Edm.Int32"),
        Property("Big", "Edm.Int64"),
        Property("Billable", "Edm.Boolean"),
        Property("Stamp", "Edm.DateTimeOffset"),
        Property("Token", "Edm.Guid"),
        Property("Image", "Edm.Binary"),
        Property("Tags", "Edm.String", collection=True),
        Property("CustomFields", "ClickTime.CustomFields"),
    ),
    (NavigationProperty("Job", "ClickTime.Job"),),
)
TIMESHEET = EntityType(
    "Timesheet",
    ("ID",),
    (
        Property("ID", "Edm.String", nullable=False),
        Property("StartDate", "Edm.Date"),
        Property("Status", "Edm.String"),
    ),
    (
        NavigationProperty("TimeEntries", "ClickTime.TimeEntry", collection=True),
        NavigationProperty("DefaultJob", "ClickTime.Job"),
    ),
)
OPEN_THING = EntityType("Thing", ("ID",), (Property("ID", "Edm.Int32", nullable=False),), open=True)
MODEL = Model(
    "ClickTime",
    "Container",
    (CLIENT, JOB, TIME_ENTRY, TIMESHEET, OPEN_THING),
    (
        EntitySet("TimeEntries", "ClickTime.TimeEntry"),
        EntitySet("Jobs", "ClickTime.Job"),
        EntitySet("Clients", "ClickTime.Client"),
        EntitySet("Timesheets", "ClickTime.Timesheet"),
        EntitySet("Things", "ClickTime.Thing"),
    ),
    (CUSTOM_FIELDS,),
)
NOW = datetime.datetime(2026, 2, 3, 15, 30, tzinfo=datetime.timezone.utc)


# --- Syntax builders ------------------------------------------------------------------------


def offset(hours: float) -> datetime.timezone:
    return datetime.timezone(datetime.timedelta(hours=hours))


_LITERAL_TYPES: list[tuple[type, str]] = [
    (bool, "Edm.Boolean"),
    (int, "Edm.Int32"),
    (Decimal, "Edm.Decimal"),
    (float, "Edm.Double"),
    (str, "Edm.String"),
    (datetime.datetime, "Edm.DateTimeOffset"),
    (datetime.date, "Edm.Date"),
    (datetime.time, "Edm.TimeOfDay"),
    (datetime.timedelta, "Edm.Duration"),
    (uuid.UUID, "Edm.Guid"),
    (bytes, "Edm.Binary"),
]


def lit(value: Any, type_: Optional[str] = None, pos: int = 0) -> syntax.Literal:
    """A literal typed as the parser types it (``42`` Int32, beyond Int32 Int64, ``1.5`` Decimal)."""
    if type_ is None and value is not None:
        type_ = next(t for kind, t in _LITERAL_TYPES if isinstance(value, kind))
        if type_ == "Edm.Int32" and not -(2**31) <= value < 2**31:
            type_ = "Edm.Int64"
    return syntax.Literal(value, type_, pos=pos)


NULL = syntax.Literal(None, None)


def expr(value: Any) -> syntax.Expr:
    """Syntax nodes as they are, anything else as a literal."""
    if isinstance(
        value,
        (
            syntax.Literal,
            syntax.Path,
            syntax.BinaryOp,
            syntax.UnaryOp,
            syntax.Call,
            syntax.Lambda,
            syntax.In,
            syntax.Alias,
            syntax.ListExpr,
            syntax.JsonValue,
            syntax.EnumLiteral,
            syntax.TypeName,
        ),
    ):
        return value
    return lit(value)


def path(text: str, pos: int = 0) -> syntax.Path:
    """``Job/Client/Name``, ``$it/ID``; segment positions follow the text from ``pos``."""
    names = text.split("/")
    root = names.pop(0) if names[0] in ("$it", "$root", "$this") or names[0].startswith("@") else None
    segments = []
    at = pos + (len(root) + 1 if root else 0)
    for name in names:
        segments.append(syntax.PathSegment(name, pos=at))
        at += len(name) + 1
    return syntax.Path(tuple(segments), root=root, pos=pos)


def op(name: str, left: Any, right: Any, pos: int = 0) -> syntax.BinaryOp:
    return syntax.BinaryOp(name, expr(left), expr(right), pos=pos)


def call(name: str, *args: Any, pos: int = 0) -> syntax.Call:
    return syntax.Call(name, tuple(expr(a) for a in args), pos=pos)


def any_(
    collection: str, variable: Optional[str] = None, predicate: Any = None, pos: int = 0
) -> syntax.Lambda:
    return syntax.Lambda(
        path(collection), "any", variable, expr(predicate) if predicate is not None else None, pos=pos
    )


def all_(collection: str, variable: str, predicate: Any, pos: int = 0) -> syntax.Lambda:
    return syntax.Lambda(path(collection), "all", variable, expr(predicate), pos=pos)


def in_(operand: Any, *values: Any, pos: int = 0) -> syntax.In:
    return syntax.In(expr(operand), tuple(expr(v) for v in values), pos=pos)


def array(*items: syntax.Expr, pos: int = 0) -> syntax.ListExpr:
    """A JSON array or parenthesised list (the parser gives both as ListExpr)."""
    return syntax.ListExpr(items, pos=pos)


def alias(name: str, pos: int = 0) -> syntax.Alias:
    return syntax.Alias(name, pos=pos)


def type_name(name: str, pos: int = 0) -> syntax.TypeName:
    return syntax.TypeName(name, pos=pos)


def bind(
    tree: syntax.Expr,
    entity_type: EntityType = TIME_ENTRY,
    aliases: Mapping[str, syntax.Expr] = {},
    **kwargs: Any,
) -> BoundExpr:
    return Binder(MODEL, now=NOW).bind_filter(tree, entity_type, aliases, **kwargs)


def bind_value(
    tree: syntax.Expr, entity_type: EntityType = TIME_ENTRY, aliases: Mapping[str, syntax.Expr] = {}
) -> BoundExpr:
    return Binder(MODEL, now=NOW).bind_expression(tree, entity_type, aliases)


def bad(
    tree: syntax.Expr,
    entity_type: EntityType = TIME_ENTRY,
    aliases: Mapping[str, syntax.Expr] = {},
    **kwargs: Any,
) -> str:
    with pytest.raises(BadRequest) as caught:
        bind(tree, entity_type, aliases, **kwargs)
    return caught.value.message


BOOL = "Edm.Boolean"
HOURS = BoundProperty(("Hours",), "Edm.Decimal")
DATE = BoundProperty(("Date",), "Edm.Date")


# --- Paths ------------------------------------------------------------------------------------


def test_property_of_the_entity() -> None:
    assert bind(op("gt", path("Hours"), Decimal("2.5"))) == BoundBinary(
        "gt", HOURS, BoundLiteral(Decimal("2.5"), "Edm.Decimal"), BOOL
    )


def test_single_valued_navigation_is_walked() -> None:
    bound = bind(op("eq", path("Job/Client/Name"), "Acme"))
    assert isinstance(bound, BoundBinary)
    assert bound.left == BoundProperty(("Job", "Client", "Name"), "Edm.String", (True, True))


def test_complex_and_dynamic_properties() -> None:
    declared = bind(op("eq", path("CustomFields/Priority"), 1))
    assert isinstance(declared, BoundBinary)
    assert declared.left == BoundProperty(("CustomFields", "Priority"), "Edm.Int32", (False,))
    dynamic = bind(op("eq", path("CustomFields/Region"), "EU"))
    assert isinstance(dynamic, BoundBinary)
    assert dynamic.left == BoundProperty(("CustomFields", "Region"), "Edm.Untyped", (False,))


def test_dynamic_property_of_an_open_entity_type() -> None:
    bound = bind(op("gt", path("Colour/Depth"), 3), OPEN_THING)
    assert isinstance(bound, BoundBinary)
    assert bound.left == BoundProperty(("Colour", "Depth"), "Edm.Untyped", (False,))


def test_it_and_this_are_the_current_instance() -> None:
    for root in ("$it", "$this"):
        bound = bind(op("eq", path(f"{root}/Comment"), "x"))
        assert isinstance(bound, BoundBinary) and bound.left == BoundProperty(("Comment",), "Edm.String")


def test_type_cast_segment_of_the_same_type_is_a_no_op() -> None:
    bound = bind(op("eq", path("Job/ClickTime.Job/Name"), "x"))
    assert isinstance(bound, BoundBinary)
    assert bound.left == BoundProperty(("Job", "Name"), "Edm.String", (True,))


def test_single_valued_navigation_compares_with_null() -> None:
    assert bind(op("eq", path("Job"), NULL)) == BoundBinary(
        "eq", BoundProperty(("Job",), "ClickTime.Job"), BoundLiteral(None, None), BOOL
    )


def test_count_of_a_collection_navigation() -> None:
    bound = bind(op("gt", path("TimeEntries/$count"), 2), TIMESHEET)
    assert bound == BoundBinary(
        "gt",
        BoundCall("$count", (BoundProperty(("TimeEntries",), "ClickTime.TimeEntry", (), True),), "Edm.Int64"),
        BoundLiteral(2, "Edm.Int64"),
        BOOL,
    )


def test_computed_names_are_replaced_by_their_expressions() -> None:
    total = BoundBinary("mul", HOURS, BoundLiteral(Decimal(2), "Edm.Decimal"), "Edm.Decimal")
    bound = bind(op("gt", path("Total"), 10), computed={"Total": total})
    assert bound == BoundBinary("gt", total, BoundLiteral(Decimal(10), "Edm.Decimal"), BOOL)


# --- Lambdas ----------------------------------------------------------------------------------


def test_any_binds_the_variable_to_the_items() -> None:
    bound = bind(any_("TimeEntries", "t", op("gt", path("t/Hours"), 2)), TIMESHEET)
    assert bound == BoundLambda(
        BoundProperty(("TimeEntries",), "ClickTime.TimeEntry", (), True),
        "any",
        "t",
        BoundBinary(
            "gt",
            BoundProperty(("Hours",), "Edm.Decimal", variable="t"),
            BoundLiteral(Decimal(2), "Edm.Decimal"),
            BOOL,
        ),
    )


def test_variable_given_as_path_root_is_understood_too() -> None:
    predicate = op("gt", syntax.Path((syntax.PathSegment("Hours"),), root="t"), 2)
    bound = bind(any_("TimeEntries", "t", predicate), TIMESHEET)
    assert isinstance(bound, BoundLambda) and isinstance(bound.predicate, BoundBinary)
    assert bound.predicate.left == BoundProperty(("Hours",), "Edm.Decimal", variable="t")


def test_lambda_variable_hides_a_property_of_the_same_name_and_it_reaches_outside() -> None:
    # Timesheet has a property ID; the variable named ID takes precedence, $it/ID is the sheet's.
    bound = bind(any_("TimeEntries", "ID", op("eq", path("ID/JobID"), path("$it/ID"))), TIMESHEET)
    assert isinstance(bound, BoundLambda) and isinstance(bound.predicate, BoundBinary)
    assert bound.predicate.left == BoundProperty(("JobID",), "Edm.String", variable="ID")
    assert bound.predicate.right == BoundProperty(("ID",), "Edm.String")


def test_unprefixed_paths_in_a_lambda_are_the_current_instance() -> None:
    bound = bind(any_("TimeEntries", "t", op("eq", path("t/Date"), path("StartDate"))), TIMESHEET)
    assert isinstance(bound, BoundLambda) and isinstance(bound.predicate, BoundBinary)
    assert bound.predicate.right == BoundProperty(("StartDate",), "Edm.Date")


def test_nested_lambdas_see_outer_variables() -> None:
    inner = any_("t/Tags", "tag", op("eq", path("tag"), path("t/Comment")))
    bound = bind(any_("TimeEntries", "t", inner), TIMESHEET)
    assert isinstance(bound, BoundLambda) and isinstance(bound.predicate, BoundLambda)
    nested = bound.predicate
    assert nested.collection == BoundProperty(("Tags",), "Edm.String", (), True, "t")
    assert nested.predicate == BoundBinary(
        "eq",
        BoundProperty((), "Edm.String", variable="tag"),
        BoundProperty(("Comment",), "Edm.String", variable="t"),
        BOOL,
    )


def test_any_without_predicate() -> None:
    assert bind(any_("Tags")) == BoundLambda(
        BoundProperty(("Tags",), "Edm.String", (), True), "any", None, None
    )


def test_all_over_navigation_through_a_variable() -> None:
    bound = bind(all_("TimeEntries", "t", op("eq", path("t/Job/Client/Name"), "Acme")), TIMESHEET)
    assert isinstance(bound, BoundLambda) and bound.kind == "all" and isinstance(bound.predicate, BoundBinary)
    assert bound.predicate.left == BoundProperty(
        ("Job", "Client", "Name"), "Edm.String", (True, True), False, "t"
    )


# --- Aliases ------------------------------------------------------------------------------------


def test_alias_is_replaced_by_its_bound_value() -> None:
    bound = bind(op("gt", path("Hours"), alias("h")), aliases={"h": lit(2)})
    assert bound == BoundBinary("gt", HOURS, BoundLiteral(Decimal(2), "Edm.Decimal"), BOOL)


def test_alias_may_be_null() -> None:
    assert bind(op("eq", path("Comment"), alias("c")), aliases={"c": NULL}) == BoundBinary(
        "eq", BoundProperty(("Comment",), "Edm.String"), BoundLiteral(None, None), BOOL
    )


def test_alias_may_hold_an_expression_and_other_aliases() -> None:
    aliases: dict[str, syntax.Expr] = {"a": op("add", path("Hours"), alias("b")), "b": lit(1)}
    bound = bind(op("gt", alias("a"), 3), aliases=aliases)
    assert bound == BoundBinary(
        "gt",
        BoundBinary("add", HOURS, BoundLiteral(1, "Edm.Int32"), "Edm.Decimal"),
        BoundLiteral(Decimal(3), "Edm.Decimal"),
        BOOL,
    )


def test_undefined_alias() -> None:
    assert bad(op("gt", path("Hours"), alias("h", pos=9), pos=5)) == (
        "$filter at position 9: parameter alias @h is not defined"
    )


def test_alias_used_in_its_own_value() -> None:
    message = bad(op("gt", path("Hours"), alias("h", pos=9)), aliases={"h": op("add", alias("h", pos=4), 1)})
    assert message == "@h at position 4: parameter alias @h refers to itself"


def test_errors_inside_an_alias_value_point_into_the_alias() -> None:
    message = bad(op("gt", path("Hours"), alias("h")), aliases={"h": op("add", path("Hourz", pos=0), 1)})
    assert (
        message == "@h at position 0: 'Hourz' is not a property of ClickTime.TimeEntry; did you mean 'Hours'?"
    )


def test_error_target_is_the_option() -> None:
    with pytest.raises(BadRequest) as caught:
        Binder(MODEL).bind_expression(path("Nope"), TIME_ENTRY, {}, "$orderby")
    assert caught.value.target == "$orderby"
    assert caught.value.message == "$orderby at position 0: 'Nope' is not a property of ClickTime.TimeEntry"


# --- Literal types ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("property_", "literal", "expected"),
    [
        # A literal takes the other operand's type when its text denotes that value exactly.
        ("Hours", lit(2), BoundLiteral(Decimal(2), "Edm.Decimal")),
        ("Hours", lit(0.1), BoundLiteral(Decimal("0.1"), "Edm.Decimal")),
        ("Rate", lit(Decimal("0.1")), BoundLiteral(0.1, "Edm.Double")),
        ("Rate", lit(3), BoundLiteral(3.0, "Edm.Double")),
        ("Count", lit(Decimal("2.0")), BoundLiteral(2, "Edm.Int32")),
        ("Big", lit(7), BoundLiteral(7, "Edm.Int64")),
        # ...and keeps its own type otherwise: compared exactly at run time.
        ("Count", lit(Decimal("2.5")), BoundLiteral(Decimal("2.5"), "Edm.Decimal")),
        ("Count", lit(2**40), BoundLiteral(2**40, "Edm.Int64")),
        ("Count", lit(2.5), BoundLiteral(2.5, "Edm.Double")),
        ("Hours", lit(float("inf")), BoundLiteral(float("inf"), "Edm.Double")),
        # 4.01: duration literals without their prefix.
        ("BreakTime", lit("PT30M"), BoundLiteral(datetime.timedelta(minutes=30), "Edm.Duration")),
    ],
)
def test_literals_take_the_type_of_the_other_operand(
    property_: str, literal: syntax.Literal, expected: BoundLiteral
) -> None:
    bound = bind(op("eq", path(property_), literal))
    assert isinstance(bound, BoundBinary)
    assert bound.right == expected and type(bound.right.value) is type(expected.value)
    mirrored = bind(op("eq", literal, path(property_)))
    assert isinstance(mirrored, BoundBinary) and mirrored.left == expected


def test_negative_literals_are_folded() -> None:
    bound = bind(op("gt", path("Hours"), syntax.UnaryOp("-", lit(Decimal("1.5")))))
    assert bound == BoundBinary("gt", HOURS, BoundLiteral(Decimal("-1.5"), "Edm.Decimal"), BOOL)


def test_negation_of_a_property_stays() -> None:
    bound = bind(op("lt", syntax.UnaryOp("-", path("Hours")), 0))
    assert isinstance(bound, BoundBinary)
    assert bound.left == BoundUnary("-", HOURS, "Edm.Decimal")


# --- Date against DateTimeOffset -------------------------------------------------------------

MINUS_5 = offset(-5)
PLUS_1 = offset(1)


@pytest.mark.parametrize(
    ("op_name", "moment", "expected"),
    [
        # Midnight at the literal's offset: the same comparison of its local date.
        ("ge", datetime.datetime(2026, 2, 3, tzinfo=MINUS_5), ("ge", datetime.date(2026, 2, 3))),
        ("ge", datetime.datetime(2026, 2, 3, tzinfo=PLUS_1), ("ge", datetime.date(2026, 2, 3))),
        ("lt", datetime.datetime(2026, 2, 3, tzinfo=MINUS_5), ("lt", datetime.date(2026, 2, 3))),
        ("gt", datetime.datetime(2026, 2, 3, tzinfo=PLUS_1), ("gt", datetime.date(2026, 2, 3))),
        (
            "le",
            datetime.datetime(2026, 2, 3, tzinfo=datetime.timezone.utc),
            ("le", datetime.date(2026, 2, 3)),
        ),
        ("eq", datetime.datetime(2026, 2, 3, tzinfo=MINUS_5), ("eq", datetime.date(2026, 2, 3))),
        ("ne", datetime.datetime(2026, 2, 3, tzinfo=MINUS_5), ("ne", datetime.date(2026, 2, 3))),
        # Later on the literal's day: its date started before it.
        ("ge", datetime.datetime(2026, 2, 3, 10, tzinfo=MINUS_5), ("gt", datetime.date(2026, 2, 3))),
        ("gt", datetime.datetime(2026, 2, 3, 10, tzinfo=MINUS_5), ("gt", datetime.date(2026, 2, 3))),
        ("lt", datetime.datetime(2026, 2, 3, 10, tzinfo=MINUS_5), ("le", datetime.date(2026, 2, 3))),
        ("le", datetime.datetime(2026, 2, 3, 10, tzinfo=MINUS_5), ("le", datetime.date(2026, 2, 3))),
        ("ge", datetime.datetime(2026, 2, 3, 0, 0, 0, 1, tzinfo=PLUS_1), ("gt", datetime.date(2026, 2, 3))),
        # The local date counts, not the UTC one: 23:00-05:00 is 04:00Z the next day.
        ("ge", datetime.datetime(2026, 2, 3, 23, tzinfo=MINUS_5), ("gt", datetime.date(2026, 2, 3))),
        ("lt", datetime.datetime(2026, 2, 3, 0, 30, tzinfo=offset(5.5)), ("le", datetime.date(2026, 2, 3))),
        ("eq", datetime.datetime(2026, 2, 3, 10, tzinfo=MINUS_5), False),
        ("ne", datetime.datetime(2026, 2, 3, 10, tzinfo=MINUS_5), True),
    ],
)
def test_date_compared_with_date_time_literal(op_name: str, moment: datetime.datetime, expected: Any) -> None:
    assert date_comparison_for_date_time(op_name, moment) == expected
    bound = bind(op(op_name, path("Date"), moment))
    if isinstance(expected, bool):
        assert bound == BoundLiteral(expected, BOOL)
    else:
        assert bound == BoundBinary(expected[0], DATE, BoundLiteral(expected[1], "Edm.Date"), BOOL)


def test_date_time_literal_on_the_left_of_a_date() -> None:
    # 2026-02-03T10:00-05:00 lt Date  is  Date gt 2026-02-03T10:00-05:00  is  Date gt 2026-02-03.
    bound = bind(op("lt", datetime.datetime(2026, 2, 3, 10, tzinfo=MINUS_5), path("Date")))
    assert bound == BoundBinary("gt", DATE, BoundLiteral(datetime.date(2026, 2, 3), "Edm.Date"), BOOL)


def test_date_compared_with_now_and_aliases() -> None:
    # now() is 2026-02-03T15:30Z: not midnight, so "lt now()" includes the 3rd.
    assert bind(op("lt", path("Date"), call("now"))) == BoundBinary(
        "le", DATE, BoundLiteral(datetime.date(2026, 2, 3), "Edm.Date"), BOOL
    )
    aliased = bind(
        op("ge", path("Date"), alias("d")), aliases={"d": lit(datetime.datetime(2026, 1, 1, tzinfo=PLUS_1))}
    )
    assert aliased == BoundBinary("ge", DATE, BoundLiteral(datetime.date(2026, 1, 1), "Edm.Date"), BOOL)


def test_date_of_a_call_is_rewritten_too() -> None:
    bound = bind(op("ge", call("date", path("Stamp")), datetime.datetime(2026, 2, 3, tzinfo=MINUS_5)))
    assert isinstance(bound, BoundBinary) and bound.right == BoundLiteral(
        datetime.date(2026, 2, 3), "Edm.Date"
    )


def test_date_in_date_time_literals() -> None:
    bound = bind(
        in_(
            path("Date"),
            datetime.datetime(2026, 2, 3, tzinfo=MINUS_5),
            datetime.datetime(2026, 2, 4, 12, tzinfo=MINUS_5),
            datetime.date(2026, 3, 1),
        )
    )
    # The non-midnight instant equals no date and drops out.
    assert bound == BoundIn(
        DATE,
        (
            BoundLiteral(datetime.date(2026, 2, 3), "Edm.Date"),
            BoundLiteral(datetime.date(2026, 3, 1), "Edm.Date"),
        ),
    )


def test_date_time_property_against_date_literal_is_an_error() -> None:
    message = bad(op("ge", path("Stamp"), datetime.date(2026, 2, 3), pos=6))
    assert (
        message
        == "$filter at position 6: cannot compare Edm.DateTimeOffset property 'Stamp' with Edm.Date 2026-02-03"
    )


# --- in ------------------------------------------------------------------------------------------


def test_in_list_items_take_the_operand_type() -> None:
    assert bind(in_(path("Hours"), 1, Decimal("2.5"), NULL)) == BoundIn(
        HOURS,
        (
            BoundLiteral(Decimal(1), "Edm.Decimal"),
            BoundLiteral(Decimal("2.5"), "Edm.Decimal"),
            BoundLiteral(None, None),
        ),
    )


def test_in_alias_holding_a_list() -> None:
    listed = bind(syntax.In(path("JobID"), alias("jobs")), aliases={"jobs": array(lit("a"), lit("b"))})
    assert listed == BoundIn(
        BoundProperty(("JobID",), "Edm.String"),
        (BoundLiteral("a", "Edm.String"), BoundLiteral("b", "Edm.String")),
    )


def test_json_values_are_literals() -> None:
    assert bind_value(array(lit(4), lit(Decimal("1.5")), NULL)) == BoundLiteral(
        [4, Decimal("1.5"), None], "Collection(Edm.Decimal)"
    )
    assert bind_value(array(lit("a"), lit(1))) == BoundLiteral(["a", 1], "Collection(Edm.Untyped)")
    document = syntax.JsonValue((("a", lit(1)), ("b", array(lit("x")))))
    assert bind_value(document) == BoundLiteral({"a": 1, "b": ["x"]}, "Edm.Untyped")
    assert bind_value(syntax.JsonValue({"a": [1]})) == BoundLiteral({"a": [1]}, "Edm.Untyped")


def test_json_members_must_be_literals() -> None:
    document = syntax.JsonValue((("a", path("Hours", pos=21)),))
    assert bad(op("eq", path("CustomFields"), document)) == (
        "$filter at position 21: JSON members must be literals, not Edm.Decimal property 'Hours'"
    )


def test_in_collection_becomes_any() -> None:
    bound = bind(syntax.In(lit("urgent"), path("Tags")))
    assert bound == BoundLambda(
        BoundProperty(("Tags",), "Edm.String", (), True),
        "any",
        IN_VARIABLE,
        BoundBinary(
            "eq",
            BoundLiteral("urgent", "Edm.String"),
            BoundProperty((), "Edm.String", variable=IN_VARIABLE),
            BOOL,
        ),
    )


def test_in_items_must_be_comparable() -> None:
    assert (
        bad(in_(path("Hours"), "x", pos=6))
        == "$filter at position 6: cannot compare Edm.Decimal property 'Hours' with Edm.String 'x'"
    )


def test_in_needs_a_list_or_collection() -> None:
    assert bad(syntax.In(path("Comment"), path("JobID"), pos=8)) == (
        "$filter at position 8: the right operand of 'in' must be a list or a collection, not Edm.String property 'JobID'"
    )


# --- Entities, functions, constants -------------------------------------------------------------


def test_entities_compare_by_key() -> None:
    bound = bind(any_("TimeEntries", "t", op("eq", path("t/Job"), path("DefaultJob"))), TIMESHEET)
    assert isinstance(bound, BoundLambda)
    assert bound.predicate == BoundBinary(
        "eq",
        BoundProperty(("Job", "ID"), "Edm.String", (True,), False, "t"),
        BoundProperty(("DefaultJob", "ID"), "Edm.String", (True,)),
        BOOL,
    )


def test_function_result_types() -> None:
    assert bind_value(call("length", path("Comment"))) == BoundCall(
        "length", (BoundProperty(("Comment",), "Edm.String"),), "Edm.Int32"
    )
    assert bind_value(call("round", path("Count"))).type == "Edm.Decimal"
    assert bind_value(call("round", path("Rate"))).type == "Edm.Double"
    assert bind_value(call("concat", path("Tags"), path("Tags"))).type == "Collection(Edm.String)"
    assert bind_value(call("substring", path("Tags"), 1)).type == "Collection(Edm.String)"
    assert bind_value(call("fractionalseconds", path("StartTime"))).type == "Edm.Decimal"
    assert bind_value(call("date", path("Stamp"))).type == "Edm.Date"
    assert bind_value(call("tolower", path("CustomFields/Region"))).type == "Edm.String"


def test_date_and_duration_arithmetic_types() -> None:
    assert bind_value(op("sub", path("Date"), path("Date"))).type == "Edm.Duration"
    assert bind_value(op("add", path("Date"), path("BreakTime"))).type == "Edm.Date"
    assert bind_value(op("sub", path("Stamp"), path("Stamp"))).type == "Edm.Duration"
    assert bind_value(op("add", path("Stamp"), path("BreakTime"))).type == "Edm.DateTimeOffset"
    assert bind_value(op("mul", 2, path("BreakTime"))).type == "Edm.Duration"
    assert bind_value(op("div", path("BreakTime"), 2)).type == "Edm.Duration"


def test_numeric_arithmetic_types() -> None:
    assert bind_value(op("add", path("Count"), path("Big"))).type == "Edm.Int64"
    assert bind_value(op("add", path("Count"), path("Hours"))).type == "Edm.Decimal"
    assert bind_value(op("mul", path("Hours"), path("Rate"))).type == "Edm.Double"
    assert bind_value(op("divby", path("Count"), 2)).type == "Edm.Decimal"
    assert bind_value(op("div", path("Count"), 2)).type == "Edm.Int32"


def test_now_and_date_time_bounds_are_literals() -> None:
    utc = datetime.timezone.utc
    assert bind_value(call("now")) == BoundLiteral(NOW, "Edm.DateTimeOffset")
    assert bind_value(call("maxdatetime")) == BoundLiteral(
        datetime.datetime.max.replace(tzinfo=utc), "Edm.DateTimeOffset"
    )
    assert bind_value(call("mindatetime")) == BoundLiteral(
        datetime.datetime.min.replace(tzinfo=utc), "Edm.DateTimeOffset"
    )


def test_cast_and_isof() -> None:
    assert bind_value(call("cast", path("Hours"), type_name("Edm.Int32"))) == BoundCall(
        "cast", (HOURS, BoundLiteral("Edm.Int32", "Edm.String")), "Edm.Int32"
    )
    assert bind(call("isof", type_name("ClickTime.TimeEntry"))) == BoundCall(
        "isof",
        (BoundProperty((), "ClickTime.TimeEntry"), BoundLiteral("ClickTime.TimeEntry", "Edm.String")),
        BOOL,
    )
    assert bind_value(call("cast", path("Tags"), type_name("Edm.Int32"))).type == "Collection(Edm.Int32)"


# --- Errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        (
            op("eq", path("Hours"), lit("x", pos=9), pos=5),
            "$filter at position 5: cannot compare Edm.Decimal property 'Hours' with Edm.String 'x'",
        ),
        (
            op("eq", path("Hourz"), 1, pos=6),
            "$filter at position 0: 'Hourz' is not a property of ClickTime.TimeEntry; did you mean 'Hours'?",
        ),
        (
            op("eq", path("Zzyzx"), 1),
            "$filter at position 0: 'Zzyzx' is not a property of ClickTime.TimeEntry",
        ),
        (
            op("eq", path("Job/Nmae", pos=4), "x"),
            "$filter at position 8: 'Nmae' is not a property of ClickTime.Job; did you mean 'Name'?",
        ),
        (
            op("eq", path("Comment/Length"), 1),
            "$filter at position 8: Edm.String property 'Comment' has no property 'Length'",
        ),
        (
            path("Hours"),
            "$filter at position 0: the expression must be Edm.Boolean, not Edm.Decimal property 'Hours'",
        ),
        (
            op("and", path("Billable"), path("Comment"), pos=9),
            "$filter at position 9: the right operand of 'and' must be Edm.Boolean, not Edm.String property 'Comment'",
        ),
        (
            syntax.UnaryOp("not", path("Count"), pos=0),
            "$filter at position 0: the operand of 'not' must be Edm.Boolean, not Edm.Int32 property 'Count'",
        ),
        (
            op("gt", op("add", path("Comment"), 1, pos=8), 2),
            "$filter at position 8: cannot add Edm.String property 'Comment' and Edm.Int32 1",
        ),
        (
            op("gt", op("add", path("Date"), path("Date"), pos=5), 2),
            "$filter at position 5: cannot add Edm.Date property 'Date' and Edm.Date property 'Date'",
        ),
        (
            op("gt", op("div", path("Hours"), 0, pos=6), 2),
            "$filter at position 6: Edm.Decimal property 'Hours' div zero is undefined",
        ),
        (
            op("gt", op("mod", path("Rate"), 0.0, pos=6), 2),
            "$filter at position 6: Edm.Double property 'Rate' mod zero is undefined",
        ),
        (
            op("gt", syntax.UnaryOp("-", path("Comment"), pos=3), 2),
            "$filter at position 3: cannot negate Edm.String property 'Comment'",
        ),
        (
            call("contains", path("Hours"), "x", pos=0),
            "$filter at position 0: contains() takes (Edm.String, Edm.String) or (a collection, a collection),"
            " not (Edm.Decimal property 'Hours', Edm.String 'x')",
        ),
        (
            call("startswith", path("Comment"), pos=0),
            "$filter at position 0: startswith() takes 2 arguments, not 1",
        ),
        (
            op("eq", call("substring", path("Comment"), "1", pos=0), "x"),
            "$filter at position 0: substring() takes (Edm.String, an integer) or (a collection, an integer),"
            " not (Edm.String property 'Comment', Edm.String '1')",
        ),
        (
            op("eq", call("year", path("StartTime"), pos=0), 2026),
            "$filter at position 0: year() takes (Edm.Date or Edm.DateTimeOffset), not (Edm.TimeOfDay property 'StartTime')",
        ),
        (
            call("contians", path("Comment"), "x", pos=0),
            "$filter at position 0: unknown function contians(); did you mean contains()?",
        ),
        (op("eq", call("now", 1, pos=3), path("Stamp")), "$filter at position 3: now() takes no arguments"),
        (
            call("matchespattern", path("Comment"), lit("a(b", pos=24), pos=0),
            "$filter at position 24: invalid regular expression: missing ) at position 3",
        ),
        (
            call("matchespattern", path("Comment"), lit("a++", pos=24), pos=0),
            "$filter at position 24: invalid regular expression: nothing to repeat at position 2",
        ),
        (
            op("eq", call("substring", path("Comment"), 1, lit(-2, pos=22)), "x"),
            "$filter at position 22: the length given to substring() must not be negative",
        ),
        (
            op("eq", path("Comment"), syntax.EnumLiteral("ClickTime.Colour", ("Red",), pos=11)),
            "$filter at position 11: the model defines no enumeration type 'ClickTime.Colour'",
        ),
        (
            op("has", path("Comment"), "x", pos=8),
            "$filter at position 8: 'has' needs an enumeration value, not Edm.String property 'Comment'",
        ),
        (
            op("eq", path("Image"), lit(b"\x00", pos=9), pos=6),
            "$filter at position 6: cannot compare Edm.Binary property 'Image' with Edm.Binary AA==",
        ),
        (
            op("gt", path("CustomFields"), NULL, pos=13),
            "$filter at position 13: cannot compare ClickTime.CustomFields property 'CustomFields' with null"
            " using an order operator",
        ),
        (
            op("gt", path("Job"), path("Job"), pos=4),
            "$filter at position 4: cannot compare ClickTime.Job property 'Job' with ClickTime.Job property 'Job'"
            " using an order operator",
        ),
        (
            op("eq", path("BreakTime"), "soon", pos=10),
            "$filter at position 10: cannot compare Edm.Duration property 'BreakTime' with Edm.String 'soon'",
        ),
        (
            op(
                "eq",
                syntax.Path((syntax.PathSegment("Job", syntax.KeyPredicate((lit("j1"),)), pos=2),)),
                NULL,
            ),
            "$filter at position 2: a key predicate can only follow a $root path",
        ),
        (
            op("eq", path("Billable"), 1, pos=9),
            "$filter at position 9: cannot compare Edm.Boolean property 'Billable' with Edm.Int32 1",
        ),
        (
            op("eq", call("cast", path("Hours"), type_name("Edm.Nope", pos=11)), 1),
            "$filter at position 11: unknown type 'Edm.Nope'",
        ),
        (
            call("cast", path("Hours"), pos=0),
            "$filter at position 0: cast() takes an optional expression and a type name",
        ),
        (
            op("eq", type_name("Edm.String", pos=0), 1),
            "$filter at position 0: the type name 'Edm.String' can only be an argument of cast() or isof()",
        ),
        (
            op("eq", path("Job/ClickTime.Client/Name"), "x"),
            "$filter at position 4: 'ClickTime.Client' is not derived from ClickTime.Job",
        ),
    ],
)
def test_errors(tree: syntax.Expr, message: str) -> None:
    assert bad(tree) == message


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("[abc", "unterminated character class"),
        ("abc\\", "the pattern ends with a backslash"),
        ("[\\D]", "\\D inside a character class is not supported"),
        ("[\\1]", "octal escapes are not supported"),
        ("\\c1", "\\c must be followed by a letter"),
        ("\\x4", "\\x must be followed by 2 hexadecimal digits"),
        ("\\u12G4", "\\u must be followed by 4 hexadecimal digits"),
        ("\\k<1>", "\\k must be followed by <name>"),
        ("(?i)a", "invalid group at position 0"),
        ("(?>a)", "invalid group at position 0"),
        ("(?P<n>a)", "invalid group at position 0"),
        ("a?+", "nothing to repeat at position 2"),
        ("a{2}+", "nothing to repeat at position 4"),
    ],
)
def test_invalid_patterns(pattern: str, problem: str) -> None:
    tree = call("matchespattern", path("Comment"), lit(pattern, pos=24))
    assert bad(tree) == f"$filter at position 24: invalid regular expression: {problem}"


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        (
            op("gt", path("TimeEntries/Hours"), 1),
            "$filter at position 12: 'TimeEntries' is a collection: use it with any(), all() or /$count",
        ),
        (
            op("gt", path("DefaultJob/$count"), 1),
            "$filter at position 11: $count needs a collection, and DefaultJob is not one",
        ),
        (op("gt", path("TimeEntries/$count/x"), 1), "$filter at position 19: nothing can follow /$count"),
        (
            any_("StartDate", "d", op("eq", path("d"), 1), pos=10),
            "$filter at position 10: any() needs a collection, not Edm.Date property 'StartDate'",
        ),
        (
            syntax.Lambda(path("TimeEntries"), "all", None, None, pos=12),
            "$filter at position 12: all() needs a lambda variable and a predicate",
        ),
        (
            any_("TimeEntries", "t", lit("x", pos=16), pos=12),
            "$filter at position 16: the predicate of any() must be Edm.Boolean, not Edm.String 'x'",
        ),
        (
            op("eq", syntax.Path((syntax.PathSegment("Hours", pos=2),), root="t", pos=0), 1),
            "$filter at position 0: lambda variable 't' is not defined here",
        ),
        (
            op("eq", path("TimeEntries/Job"), NULL),
            "$filter at position 12: 'TimeEntries' is a collection: use it with any(), all() or /$count",
        ),
    ],
)
def test_collection_errors(tree: syntax.Expr, message: str) -> None:
    assert bad(tree, TIMESHEET) == message


@pytest.mark.parametrize(
    "tree",
    [
        op("eq", path("$root/Jobs/Name"), "x"),
        op("lt", call("geo.distance", path("Comment"), path("Comment")), 1),
        op("eq", path("@p/Name"), "x"),
    ],
)
def test_valid_but_unsupported(tree: syntax.Expr) -> None:
    with pytest.raises(NotImplementedYet):
        bind(tree)


def test_binding_never_raises_anything_but_bad_request_for_type_errors() -> None:
    trees = [
        op(name, path(left), path(right))
        for name in ("eq", "lt", "add", "mod", "divby", "and")
        for left in (
            "Comment",
            "Hours",
            "Date",
            "Stamp",
            "BreakTime",
            "Tags",
            "Job",
            "CustomFields",
            "Image",
            "Token",
        )
        for right in ("Comment", "Count", "Date", "BreakTime", "Tags", "CustomFields/Region", "Billable")
    ]
    for tree in trees:
        try:
            Binder(MODEL).bind_expression(tree, TIME_ENTRY)
        except BadRequest as error:
            assert error.message.startswith("$orderby at position 0: ")


# --- case ------------------------------------------------------------------------------------------


def test_case_takes_the_common_type_of_its_values() -> None:
    def case_type(*values: Any) -> Optional[str]:
        args: list[Any] = []
        for value in values:
            args += [op("gt", path("Hours"), 1), value]
        bound = bind_value(call("case", *args))
        assert isinstance(bound, BoundCall) and bound.name == "case"
        return bound.type

    assert case_type("big", "small") == "Edm.String"
    assert case_type(1, Decimal("2.5"), NULL) == "Edm.Decimal"
    assert case_type(path("Count"), path("Rate")) == "Edm.Double"
    assert case_type(1, "one") == "Edm.Untyped"
    assert case_type(NULL) is None


def test_case_errors() -> None:
    assert (
        bad(op("eq", call("case", path("Billable"), pos=3), 1))
        == "$filter at position 3: case() takes condition:value pairs"
    )
    assert bad(op("eq", call("case", path("Comment", pos=8), 1), 1)) == (
        "$filter at position 8: a condition of case() must be Edm.Boolean, not Edm.String property 'Comment'"
    )


# --- Through the parser -------------------------------------------------------------------------

PARSER = QueryParser()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "Hours eq 'x'",
            "$filter at position 6: cannot compare Edm.Decimal property 'Hours' with Edm.String 'x'",
        ),
        (
            "Job/Client/Nmae eq 'x'",
            "$filter at position 11: 'Nmae' is not a property of ClickTime.Client; did you mean 'Name'?",
        ),
        (
            "Hours gt 2 and contains(Hours, 'x')",
            "$filter at position 15: contains() takes (Edm.String, Edm.String) or (a collection, a collection),"
            " not (Edm.Decimal property 'Hours', Edm.String 'x')",
        ),
        (
            "Comment eq 'a' or Hours",
            "$filter at position 15: the right operand of 'or' must be Edm.Boolean, not Edm.Decimal property 'Hours'",
        ),
        (
            "Date ge 2026-02-03T10:00:00-05:00 and Stamp ge 2026-02-03",
            "$filter at position 44: cannot compare Edm.DateTimeOffset property 'Stamp' with Edm.Date 2026-02-03",
        ),
        (
            "substring(Comment, 1, -1) eq 'x'",
            "$filter at position 22: the length given to substring() must not be negative",
        ),
        (
            "matchesPattern(Comment, 'a**')",
            "$filter at position 24: invalid regular expression: multiple repeat at position 2",
        ),
        ("Comment gt 1 add 'x'", "$filter at position 13: cannot add Edm.Int32 1 and Edm.String 'x'"),
        (
            "Comment has 'x'",
            "$filter at position 8: 'has' needs an enumeration value, not Edm.String property 'Comment'",
        ),
    ],
)
def test_errors_in_parsed_filters(text: str, message: str) -> None:
    assert bad(PARSER.parse_filter(text)) == message


def test_errors_in_parsed_lambdas() -> None:
    assert bad(PARSER.parse_filter("TimeEntries/any(t: t/Hourz gt 1)"), TIMESHEET) == (
        "$filter at position 21: 'Hourz' is not a property of ClickTime.TimeEntry; did you mean 'Hours'?"
    )
    assert bad(PARSER.parse_filter("TimeEntries/any(t: t/Hours)"), TIMESHEET) == (
        "$filter at position 19: the predicate of any() must be Edm.Boolean, not Edm.Decimal property 't/Hours'"
    )


@pytest.mark.parametrize(
    ("pairs", "message", "target"),
    [
        (
            [("$filter", "Hours gt @h"), ("@h", "'x'")],
            "$filter at position 6: cannot compare Edm.Decimal property 'Hours' with Edm.String 'x'",
            "$filter",
        ),
        (
            [("$filter", "Hours gt @h and Comment eq @c"), ("@h", "Hourz add 1"), ("@c", "null")],
            "@h at position 0: 'Hourz' is not a property of ClickTime.TimeEntry; did you mean 'Hours'?",
            "@h",
        ),
        ([("$filter", "Hours gt @x")], "$filter at position 9: parameter alias @x is not defined", "$filter"),
    ],
)
def test_errors_with_parsed_aliases(pairs: list[tuple[str, str]], message: str, target: str) -> None:
    options = PARSER.parse_query(pairs)
    assert options.filter is not None
    with pytest.raises(BadRequest) as caught:
        Binder(MODEL).bind_filter(options.filter, TIME_ENTRY, dict(options.aliases))
    assert (caught.value.message, caught.value.target) == (message, target)


def test_power_bi_date_filter_through_the_parser() -> None:
    text = "Date ge 2026-02-03T00:00:00-05:00 and Date lt 2026-02-10T00:00:00-05:00"
    assert bind(PARSER.parse_filter(text)) == BoundBinary(
        "and",
        BoundBinary("ge", DATE, BoundLiteral(datetime.date(2026, 2, 3), "Edm.Date"), BOOL),
        BoundBinary("lt", DATE, BoundLiteral(datetime.date(2026, 2, 10), "Edm.Date"), BOOL),
        BOOL,
    )


def test_lambdas_nest_two_deep_at_most() -> None:
    # A timesheet's entries, and for each of them all of them again: allowed.
    two = any_("TimeEntries", "a", any_("TimeEntries", "b", op("gt", path("b/Hours"), path("a/Hours"))))
    assert isinstance(bind(two, TIMESHEET), BoundLambda)
    innermost = any_("TimeEntries", "c", op("gt", path("c/Hours"), 1), pos=40)
    three = any_("TimeEntries", "a", any_("TimeEntries", "b", innermost))
    assert bad(three, TIMESHEET) == "$filter at position 40: any() and all() may be nested at most 2 deep"


def doubling_aliases(levels: int) -> dict[str, syntax.Expr]:
    """@a0 is concat(@a1,@a1), @a1 concat(@a2,@a2)... down to Comment."""
    values: dict[str, syntax.Expr] = {f"a{levels}": path("Comment")}
    for level in range(levels):
        values[f"a{level}"] = call("concat", alias(f"a{level + 1}"), alias(f"a{level + 1}"))
    return values


def test_aliases_used_again_and_again_are_refused_before_they_double_thirty_times() -> None:
    tree = op("gt", call("length", alias("a0")), 5)
    assert isinstance(bind(tree, aliases=doubling_aliases(3)), BoundBinary)
    message = bad(tree, aliases=doubling_aliases(30))
    assert "used more than once, stand for more than 10,000 terms written out" in message


def test_a_long_list_alias_may_be_used_once_but_not_thousands_of_times() -> None:
    jobs = {"jobs": syntax.ListExpr(tuple(lit(f"j{i}") for i in range(20_000)))}
    assert isinstance(bind(syntax.In(path("JobID"), alias("jobs")), aliases=jobs), BoundIn)
    many: syntax.Expr = syntax.In(path("JobID"), alias("jobs"))
    for _ in range(3):
        many = op("or", many, syntax.In(path("Comment"), alias("jobs")))
    assert "@jobs and the names used before it" in bad(many, aliases=jobs)


def test_aliases_chained_past_the_depth_limit_are_a_400_not_a_recursion_error() -> None:
    chain: dict[str, syntax.Expr] = {f"a{i}": syntax.UnaryOp("not", alias(f"a{i + 1}")) for i in range(2000)}
    chain["a2000"] = lit(True)
    message = bad(alias("a0"), aliases=chain)
    assert f"nested more than {MAX_BOUND_DEPTH} levels deep" in message
    deepest = QueryParser().parse_filter("not " * (MAX_DEPTH - 1) + "true")
    assert isinstance(bind(deepest), (BoundUnary, BoundLiteral))
