"""Which parts of a filter go to ClickTime, and what the engine must still check."""

from __future__ import annotations

import datetime
import random
from typing import Callable, Iterator, Optional

from odata_klein.binder import Binder
from odata_klein.bound import BoundBinary, BoundExpr, BoundIn, BoundLiteral, BoundProperty, BoundUnary, conjunction, conjuncts
from odata_klein.evaluate import compile_predicate
from odata_klein.parser import QueryParser
from odata_klein_plugins.clicktime.pushdown import (
    LONGEST_TIMESHEET_PERIOD,
    MAX_PUSHED_VALUES,
    plan_pushdown,
    required_values,
)
from odata_klein_plugins.clicktime.schema import build_model

BOOL = "Edm.Boolean"


def prop(name: str, type_: str = "Edm.String") -> BoundProperty:
    return BoundProperty((name,), type_)


def eq(name: str, value: object, type_: str = "Edm.String") -> BoundBinary:
    return BoundBinary("eq", prop(name, type_), BoundLiteral(value, type_), BOOL)


def cmp(op: str, name: str, value: object, type_: str = "Edm.Date") -> BoundBinary:
    return BoundBinary(op, prop(name, type_), BoundLiteral(value, type_), BOOL)


def all_of(*parts: BoundExpr) -> BoundExpr:
    joined = conjunction(list(parts))
    assert joined is not None  # None only for no parts
    return joined


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


def test_long_date_ranges_are_widened_and_checked_again() -> None:
    start, end = datetime.date(2025, 3, 1), datetime.date(2026, 4, 1)
    filter_ = all_of(cmp("ge", "Date", start), cmp("lt", "Date", end), eq("UserID", "u1"))
    plan = plan_pushdown("TimeEntries", filter_, own_scope=False)
    assert ("StartDate", "2025-02-28") in plan.params
    # lt 2026-04-01 is le 2026-03-31, widened by a day.
    assert ("EndDate", "2026-04-01") in plan.params
    assert ("UserID", "u1") in plan.params
    assert conjuncts(plan.residual) == [cmp("ge", "Date", start), cmp("lt", "Date", end)]
    open_ended = plan_pushdown("TimeEntries", cmp("ge", "Date", start), own_scope=False)
    assert open_ended.params == [("StartDate", "2025-02-28")] and open_ended.residual == cmp("ge", "Date", start)


def test_short_date_ranges_go_as_exact_days() -> None:
    """A month becomes 31 EntryDate values: ClickTime returns exactly the matching rows."""
    start, end = datetime.date(2026, 3, 1), datetime.date(2026, 4, 1)
    filter_ = all_of(cmp("ge", "Date", start), cmp("lt", "Date", end), eq("UserID", "u1"))
    plan = plan_pushdown("TimeEntries", filter_, own_scope=False)
    days = [value for name, value in plan.params if name == "EntryDate"]
    assert days == [(start + datetime.timedelta(days=n)).isoformat() for n in range(31)]
    assert ("UserID", "u1") in plan.params and plan.residual is None
    both = plan_pushdown(
        "TimeEntries", all_of(cmp("ge", "Date", start), cmp("lt", "Date", end), cmp("eq", "Date", end)),
        own_scope=False,
    )
    assert both.matches_nothing


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


# --- Constants, entry dates, known values ----------------------------------------------------


def test_constant_conjuncts_decide_without_clicktime() -> None:
    never = plan_pushdown("TimeEntries", all_of(BoundLiteral(False, BOOL), eq("JobID", "j1")), own_scope=False)
    assert never.matches_nothing
    assert plan_pushdown("TimeEntries", BoundLiteral(None, None), own_scope=False).matches_nothing
    always = plan_pushdown("TimeEntries", all_of(BoundLiteral(True, BOOL), eq("JobID", "j1")), own_scope=False)
    assert always.params == [("JobID", "j1")] and always.residual is None and not always.matches_nothing
    assert plan_pushdown("Jobs", BoundIn(prop("ClientID"), ()), own_scope=False).matches_nothing


def test_entry_dates_are_exact() -> None:
    day, other = datetime.date(2026, 3, 2), datetime.date(2026, 3, 9)
    plan = plan_pushdown("TimeEntries", eq("Date", day, "Edm.Date"), own_scope=True)
    assert plan.params == [("EntryDate", "2026-03-02")] and plan.residual is None
    both = BoundIn(prop("Date", "Edm.Date"), (BoundLiteral(day, "Edm.Date"), BoundLiteral(other, "Edm.Date")))
    plan = plan_pushdown("TimeEntries", both, own_scope=False)
    assert plan.params == [("EntryDate", "2026-03-02"), ("EntryDate", "2026-03-09")]
    # Elsewhere a date equality has no parameter.
    start = eq("StartDate", day, "Edm.Date")
    assert plan_pushdown("Users", start, own_scope=False).residual == start


def test_a_known_value_decides_its_conditions() -> None:
    known = {"UserID": "me"}
    mine = plan_pushdown("TimeEntries", all_of(eq("UserID", "me"), eq("JobID", "j")), own_scope=True, known=known)
    assert mine.params == [("JobID", "j")] and mine.residual is None and not mine.matches_nothing
    either = BoundIn(prop("UserID"), (BoundLiteral("other", "Edm.String"), BoundLiteral("me", "Edm.String")))
    assert not plan_pushdown("Timesheets", either, own_scope=True, known=known).matches_nothing
    assert plan_pushdown("TimeEntries", eq("UserID", "other"), own_scope=True, known=known).matches_nothing


def test_dates_at_the_ends_of_the_calendar() -> None:
    last, first = datetime.date.max, datetime.date.min
    assert plan_pushdown("TimeEntries", cmp("gt", "Date", last), own_scope=False).matches_nothing
    assert plan_pushdown("TimeEntries", cmp("lt", "Date", first), own_scope=False).matches_nothing
    plan = plan_pushdown("TimeEntries", all_of(cmp("ge", "Date", first), cmp("le", "Date", last)), own_scope=False)
    assert plan.params == [] and not plan.matches_nothing and len(conjuncts(plan.residual)) == 2


def test_required_values() -> None:
    filter_ = all_of(
        BoundIn(prop("ID"), (BoundLiteral("a", "Edm.String"), BoundLiteral("b", "Edm.String"))),
        eq("ID", "b"),
        eq("Name", "x"),
    )
    assert required_values(filter_, "ID") == {"b"}
    assert required_values(filter_, "Name") == {"x"}
    assert required_values(eq("Name", "x"), "ID") is None
    assert required_values(None, "ID") is None


# --- Timesheet periods ------------------------------------------------------------------------

DAY = datetime.timedelta(days=1)


def test_timesheet_start_range_pushes_the_periods_it_bounds() -> None:
    march, april = datetime.date(2026, 3, 1), datetime.date(2026, 4, 1)
    filter_ = all_of(cmp("ge", "StartDate", march), cmp("lt", "StartDate", april))
    plan = plan_pushdown("Timesheets", filter_, own_scope=False)
    # Starts in March, so lies within March 1 .. March 31 + 31 days.
    assert plan.params == [("FromDate", "2026-02-28"), ("ToDate", (april - DAY + LONGEST_TIMESHEET_PERIOD + DAY).isoformat())]
    assert plan.residual == filter_


def test_timesheet_end_bound_alone_reaches_back_a_period() -> None:
    day = datetime.date(2026, 3, 15)
    plan = plan_pushdown("Timesheets", cmp("ge", "EndDate", day), own_scope=False)
    assert plan.params == [("FromDate", (day - LONGEST_TIMESHEET_PERIOD - DAY).isoformat())]
    plan = plan_pushdown("Timesheets", cmp("le", "EndDate", day), own_scope=False)
    assert plan.params == [("ToDate", (day + DAY).isoformat())]


def test_impossible_timesheet_periods_match_nothing() -> None:
    day = datetime.date(2026, 3, 15)
    starts_after_end = all_of(cmp("gt", "StartDate", day), cmp("lt", "EndDate", day))
    assert plan_pushdown("Timesheets", starts_after_end, own_scope=False).matches_nothing
    too_long = all_of(cmp("le", "StartDate", day), cmp("ge", "EndDate", day + 2 * LONGEST_TIMESHEET_PERIOD))
    assert plan_pushdown("Timesheets", too_long, own_scope=False).matches_nothing


def _readings(
    from_day: Optional[datetime.date], to_day: Optional[datetime.date]
) -> Iterator[Callable[..., bool]]:
    """What FromDate/ToDate could select (each end inclusive or not): (start, end) -> selected."""

    def at_least(day: datetime.date, bound: Optional[datetime.date], inclusive: bool) -> bool:
        return bound is None or (day >= bound if inclusive else day > bound)

    def at_most(day: datetime.date, bound: Optional[datetime.date], inclusive: bool) -> bool:
        return bound is None or (day <= bound if inclusive else day < bound)

    # Callable[..., bool]: each reading also takes ``i``, bound to a default.
    for inclusive in (True, False):
        yield lambda s, e, i=inclusive: at_least(e, from_day, i) and at_most(s, to_day, i)  # overlaps
        yield lambda s, e, i=inclusive: at_least(s, from_day, i) and at_most(s, to_day, i)  # starts within
        yield lambda s, e, i=inclusive: at_least(e, from_day, i) and at_most(e, to_day, i)  # ends within
        yield lambda s, e, i=inclusive: at_least(s, from_day, i) and at_most(e, to_day, i)  # lies within


def test_timesheet_ranges_hold_every_match_under_every_reading() -> None:
    chooser = random.Random(11)
    base = datetime.date(2026, 1, 1)
    periods = []
    for _ in range(300):
        start = base + chooser.randrange(120) * DAY
        periods.append({"StartDate": start, "EndDate": start + chooser.randrange(31) * DAY})
    pushed = 0
    for _ in range(400):
        parts = [
            cmp(chooser.choice(("eq", "ge", "gt", "le", "lt")), chooser.choice(("StartDate", "EndDate")),
                base + chooser.randrange(-10, 140) * DAY)
            for _ in range(chooser.randrange(1, 4))
        ]
        filter_ = all_of(*parts)
        plan = plan_pushdown("Timesheets", filter_, own_scope=False)
        holds = compile_predicate(filter_)
        matching = [p for p in periods if holds(p)]
        if plan.matches_nothing:
            assert matching == [], filter_
            continue
        assert plan.residual == filter_
        params = dict(plan.params)
        from_day = datetime.date.fromisoformat(params["FromDate"]) if "FromDate" in params else None
        to_day = datetime.date.fromisoformat(params["ToDate"]) if "ToDate" in params else None
        for selected in _readings(from_day, to_day):
            assert all(selected(p["StartDate"], p["EndDate"]) for p in matching), (filter_, params)
        pushed += bool(matching and params)
    assert pushed > 100


def test_date_time_literals_reach_the_provider_as_dates() -> None:
    """Power BI filters dates with offsets; the binder turns them into dates before push-down."""
    model = build_model([], sees_rates=True)
    timesheet = model.type_of(model.entity_set("Timesheets"))
    text = "StartDate ge 2026-03-01T00:00:00-05:00 and EndDate lt 2026-04-01T10:30:00Z"
    filter_ = Binder(model).bind_filter(QueryParser().parse_filter(text), timesheet)
    plan = plan_pushdown("Timesheets", filter_, own_scope=False)
    # "EndDate lt 2026-04-01T10:30Z" is "EndDate le 2026-04-01": widened by a day.
    assert plan.params == [("FromDate", "2026-02-28"), ("ToDate", "2026-04-02")]
    assert conjuncts(plan.residual) == [
        cmp("ge", "StartDate", datetime.date(2026, 3, 1)),
        cmp("le", "EndDate", datetime.date(2026, 4, 1)),
    ]
