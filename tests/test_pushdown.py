"""Which parts of a filter go to ClickTime, and what the engine must still check."""

import datetime

from odata_klein.bound import BoundBinary, BoundIn, BoundLiteral, BoundProperty, BoundUnary, conjunction, conjuncts
from odata_klein_plugins.clicktime.pushdown import MAX_PUSHED_VALUES, plan_pushdown

BOOL = "Edm.Boolean"


def prop(name: str, type_: str = "Edm.String") -> BoundProperty:
    return BoundProperty((name,), type_)


def eq(name: str, value: object, type_: str = "Edm.String") -> BoundBinary:
    return BoundBinary("eq", prop(name, type_), BoundLiteral(value, type_), BOOL)


def cmp(op: str, name: str, value: object, type_: str = "Edm.Date") -> BoundBinary:
    return BoundBinary(op, prop(name, type_), BoundLiteral(value, type_), BOOL)


def all_of(*parts):
    return conjunction(list(parts))


def test_id_equalities_are_exact() -> None:
    plan = plan_pushdown("TimeEntries", all_of(eq("JobID", "j1"), eq("UserID", "u1")), own_scope=False)
    assert plan.params == [("JobID", "j1"), ("UserID", "u1")]
    assert plan.residual is None and not plan.matches_nothing


def test_reversed_operands_and_in_and_or() -> None:
    reversed_eq = BoundBinary("eq", BoundLiteral("j1", "Edm.String"), prop("JobID"), BOOL)
    in_list = BoundIn(prop("TaskID"), (BoundLiteral("t1", "Edm.String"), BoundLiteral("t2", "Edm.String")))
    either = BoundBinary("or", eq("UserID", "u1"), eq("UserID", "u2"), BOOL)
    plan = plan_pushdown("TimeEntries", all_of(reversed_eq, in_list, either), own_scope=False)
    assert plan.params == [("JobID", "j1"), ("TaskID", "t1"), ("TaskID", "t2"), ("UserID", "u1"), ("UserID", "u2")]
    assert plan.residual is None


def test_two_conditions_on_one_key_intersect() -> None:
    both = all_of(
        BoundIn(prop("JobID"), (BoundLiteral("a", "Edm.String"), BoundLiteral("b", "Edm.String"))),
        eq("JobID", "b"),
    )
    plan = plan_pushdown("TimeEntries", both, own_scope=False)
    assert plan.params == [("JobID", "b")] and not plan.matches_nothing
    contradiction = plan_pushdown("TimeEntries", all_of(eq("JobID", "a"), eq("JobID", "b")), own_scope=False)
    assert contradiction.matches_nothing


def test_text_equality_narrows_and_is_checked_again() -> None:
    name = eq("Name", "Acme")
    plan = plan_pushdown("Clients", name, own_scope=False)
    assert plan.params == [("Name", "Acme")]
    assert plan.residual == name


def test_booleans() -> None:
    plan = plan_pushdown("Jobs", all_of(prop("IsActive", BOOL)), own_scope=False)
    assert plan.params == [("IsActive", "true")] and plan.residual is None
    plan = plan_pushdown("Jobs", BoundUnary("not", prop("IsActive", BOOL), BOOL), own_scope=False)
    assert plan.params == [("IsActive", "false")] and plan.residual is None
    plan = plan_pushdown("Jobs", eq("IsActive", True, BOOL), own_scope=False)
    assert plan.params == [("IsActive", "true")]


def test_dates_are_widened_and_checked_again() -> None:
    start, end = datetime.date(2026, 3, 1), datetime.date(2026, 4, 1)
    filter_ = all_of(cmp("ge", "Date", start), cmp("lt", "Date", end), eq("UserID", "u1"))
    plan = plan_pushdown("TimeEntries", filter_, own_scope=False)
    assert ("StartDate", "2026-02-28") in plan.params
    # lt 2026-04-01 is le 2026-03-31, widened by a day.
    assert ("EndDate", "2026-04-01") in plan.params
    assert ("UserID", "u1") in plan.params
    assert conjuncts(plan.residual) == [cmp("ge", "Date", start), cmp("lt", "Date", end)]


def test_empty_date_range_matches_nothing() -> None:
    filter_ = all_of(cmp("gt", "Date", datetime.date(2026, 3, 5)), cmp("lt", "Date", datetime.date(2026, 3, 6)))
    assert plan_pushdown("TimeEntries", filter_, own_scope=False).matches_nothing


def test_what_clicktime_cannot_do_stays() -> None:
    hours = cmp("gt", "Hours", 2, "Edm.Decimal")
    comment = eq("Comment", "x")
    plan = plan_pushdown("TimeEntries", all_of(hours, comment, eq("ID", None)), own_scope=False)
    assert plan.params == []
    assert conjuncts(plan.residual) == [hours, comment, eq("ID", None)]


def test_disjunctions_over_different_keys_stay() -> None:
    either = BoundBinary("or", eq("UserID", "u1"), eq("JobID", "j1"), BOOL)
    plan = plan_pushdown("TimeEntries", either, own_scope=False)
    assert plan.params == [] and plan.residual == either


def test_own_scope_has_no_user_filter() -> None:
    plan = plan_pushdown("TimeEntries", eq("UserID", "u1"), own_scope=True)
    assert plan.params == [] and plan.residual == eq("UserID", "u1")


def test_timesheets_have_no_id_filter_and_long_lists_stay() -> None:
    assert plan_pushdown("Timesheets", eq("ID", "t"), own_scope=False).params == []
    many = BoundIn(prop("ID"), tuple(BoundLiteral(str(i), "Edm.String") for i in range(MAX_PUSHED_VALUES + 1)))
    plan = plan_pushdown("Jobs", many, own_scope=False)
    assert plan.params == [] and plan.residual == many
