"""
Turning OData filters into ClickTime list parameters.

The filter is split into conjuncts; each conjunct ClickTime can apply becomes
query parameters (repeated keys mean OR), the rest is left to the engine.

Some of ClickTime's filter semantics are documented and some are only
inferred (`clicktime-api.md` marks them [I]); the provider must not depend
on the inferred ones.  So a pushed conjunct is *exact* (ClickTime's answer is
precisely the matching rows: opaque ID equality, booleans, a time entry's
date) or only *narrowing* (ClickTime's answer contains every matching row,
maybe more): narrowing conjuncts stay in the residual filter for the engine
to check again.  Text equality (case sensitivity unknown) narrows.

Date ranges narrow.  Time entries: whether ``StartDate``/``EndDate`` include
their ends is not documented, so the range is widened by a day at each end,
which holds every matching entry under either reading.  Timesheets: what
``FromDate``/``ToDate`` select is not documented at all; it could be the
timesheets whose period overlaps the range, starts in it, ends in it or lies
within it.  The conjuncts on ``StartDate`` and ``EndDate`` bound the period of
every matching timesheet, from its earliest possible start to its latest
possible end (a period spans at most `LONGEST_TIMESHEET_PERIOD`, which turns a
bound on one end into a bound on the other).  Sending that span, widened by a
day, as ``FromDate``/``ToDate`` returns every matching timesheet under each of
those readings, since each of them selects at least the periods lying within
the range.

Some conjuncts decide themselves without ClickTime: a constant (the binder
folds ``Date eq 2026-03-01T10:00:00Z`` to false), ``x in ()``, and, under
``/Me/...`` where every row is the caller's, a condition on ``UserID``
(``known``).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping, Optional

from odata_klein.bound import (
    BoundBinary,
    BoundExpr,
    BoundIn,
    BoundLiteral,
    BoundProperty,
    BoundUnary,
    conjunction,
    conjuncts,
)

# At most this many values in one repeated parameter: a longer list would make
# the upstream URL too long, and the engine applies it just as well.
MAX_PUSHED_VALUES = 100

# The longest a timesheet period can be, from StartDate to EndDate: ClickTime's
# longest period is a calendar month (30 days from its first to its last day).
LONGEST_TIMESHEET_PERIOD = datetime.timedelta(days=31)

_ONE_DAY = datetime.timedelta(days=1)
_NOTHING_KNOWN: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class _Param:
    name: str
    exact: bool


_ID = _Param("ID", True)


def _ids(*names: str) -> dict[str, _Param]:
    return {name: _Param(name, True) for name in names}


def _texts(*names: str) -> dict[str, _Param]:
    return {name: _Param(name, False) for name in names}


# Property -> list filter, per entity set.  Left out on purpose: Users' JobID[]
# and Jobs' UserID[] (job assignments, not properties of either), Timesheets'
# DivisionID[] and EmploymentTypeID[] (properties of the timesheet's user; a
# filter on User/DivisionID reaches them through the cached Users instead).
EQUALITY_FILTERS: Mapping[str, Mapping[str, _Param]] = {
    "TimeEntries": {"ID": _ID, **_ids("JobID", "TaskID", "UserID"), "Date": _Param("EntryDate", True)},
    "Users": {
        "ID": _ID,
        **_ids("DivisionID", "EmploymentTypeID", "TimesheetApproverID", "IsActive"),
        **_texts("Name", "Email", "SecurityLevel"),
    },
    "Jobs": {
        "ID": _ID,
        **_ids("ClientID", "ProjectManagerID", "IsActive"),
        **_texts("Name", "JobNumber"),
    },
    "Clients": {"ID": _ID, **_ids("IsActive"), **_texts("Name", "ShortName", "ClientNumber")},
    "Tasks": {"ID": _ID, **_ids("IsActive"), **_texts("Name", "TaskCode")},
    "Divisions": {"ID": _ID, **_ids("IsActive"), **_texts("Name")},
    "Timesheets": {**_ids("UserID"), **_texts("Status")},
}

# Parameters the /Me/... endpoints do not take.
_NOT_IN_OWN_SCOPE = frozenset({"UserID"})


@dataclass
class Pushdown:
    """What goes upstream, and what the engine must still check."""

    params: list[tuple[str, str]] = field(default_factory=list)
    residual: Optional[BoundExpr] = None
    # The filter can match no row (contradictory equalities): skip the upstream.
    matches_nothing: bool = False
    applied: list[str] = field(default_factory=list)


@dataclass
class _Range:
    """Inclusive bounds on one date property; ``empty`` when no date meets them."""

    lower: Optional[datetime.date] = None
    upper: Optional[datetime.date] = None
    empty: bool = False

    def narrow(self, op: str, day: datetime.date) -> None:
        if op in ("ge", "gt", "eq"):
            low = _shifted(day, _ONE_DAY) if op == "gt" else day
            if low is None:
                self.empty = True
            elif self.lower is None or low > self.lower:
                self.lower = low
        if op in ("le", "lt", "eq"):
            high = _shifted(day, -_ONE_DAY) if op == "lt" else day
            if high is None:
                self.empty = True
            elif self.upper is None or high < self.upper:
                self.upper = high
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            self.empty = True


def _shifted(day: Optional[datetime.date], delta: datetime.timedelta) -> Optional[datetime.date]:
    """``day + delta``, or None when there is no day or the result is outside the calendar."""
    if day is None:
        return None
    try:
        return day + delta
    except OverflowError:
        return None


def _latest(*days: Optional[datetime.date]) -> Optional[datetime.date]:
    known = [day for day in days if day is not None]
    return max(known) if known else None


def _earliest(*days: Optional[datetime.date]) -> Optional[datetime.date]:
    known = [day for day in days if day is not None]
    return min(known) if known else None


# A range's translation: the inclusive span every matching row lies in
# (None: unbounded), given the bounds collected per date property; None when
# no row can match.
_Span = tuple[Optional[datetime.date], Optional[datetime.date]]


def _entry_dates(ranges: Mapping[str, _Range]) -> Optional[_Span]:
    dates = ranges["Date"]
    return dates.lower, dates.upper


def _timesheet_periods(ranges: Mapping[str, _Range]) -> Optional[_Span]:
    start, end = ranges["StartDate"], ranges["EndDate"]
    # A period starts no later than it ends, and ends within the longest period.
    start_low = _latest(start.lower, _shifted(end.lower, -LONGEST_TIMESHEET_PERIOD))
    start_high = _earliest(start.upper, end.upper)
    end_low = _latest(end.lower, start.lower)
    end_high = _earliest(end.upper, _shifted(start.upper, LONGEST_TIMESHEET_PERIOD))
    for low, high in ((start_low, start_high), (end_low, end_high)):
        if low is not None and high is not None and low > high:
            return None
    return start_low, end_high


@dataclass(frozen=True)
class _DateRangeFilter:
    properties: tuple[str, ...]
    lower_param: str
    upper_param: str
    span: Callable[[Mapping[str, _Range]], Optional[_Span]]


DATE_RANGE_FILTERS: Mapping[str, _DateRangeFilter] = {
    "TimeEntries": _DateRangeFilter(("Date",), "StartDate", "EndDate", _entry_dates),
    "Timesheets": _DateRangeFilter(("StartDate", "EndDate"), "FromDate", "ToDate", _timesheet_periods),
}


def _literal_text(value: object) -> Optional[str]:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        return value.isoformat()
    return None


def _property_name(expr: BoundExpr) -> Optional[str]:
    if isinstance(expr, BoundProperty) and expr.variable is None and len(expr.path) == 1:
        return expr.path[0]
    return None


def _equality(conjunct: BoundExpr) -> Optional[tuple[str, list[str]]]:
    """``P eq 'x'``, ``'x' eq P``, ``P in ('x','y')``, ``P eq 'x' or P eq 'y'``, bare ``P`` / ``not P`` booleans."""
    if isinstance(conjunct, BoundBinary) and conjunct.op == "eq":
        for prop_side, value_side in ((conjunct.left, conjunct.right), (conjunct.right, conjunct.left)):
            name = _property_name(prop_side)
            if name is not None and isinstance(value_side, BoundLiteral):
                text = _literal_text(value_side.value)
                return (name, [text]) if text is not None else None
        return None
    if isinstance(conjunct, BoundIn):
        name = _property_name(conjunct.operand)
        if name is None or not all(isinstance(v, BoundLiteral) for v in conjunct.values):
            return None
        texts = [_literal_text(v.value) for v in conjunct.values]  # type: ignore[union-attr]
        if any(t is None for t in texts) or not texts:
            return None
        return name, texts  # type: ignore[return-value]
    if isinstance(conjunct, BoundBinary) and conjunct.op == "or":
        left, right = _equality(conjunct.left), _equality(conjunct.right)
        if left is not None and right is not None and left[0] == right[0]:
            return left[0], left[1] + right[1]
        return None
    if isinstance(conjunct, BoundProperty) and conjunct.type == "Edm.Boolean":
        name = _property_name(conjunct)
        return (name, ["true"]) if name is not None else None
    if isinstance(conjunct, BoundUnary) and conjunct.op == "not":
        name = _property_name(conjunct.operand)
        if name is not None and getattr(conjunct.operand, "type", None) == "Edm.Boolean":
            return name, ["false"]
    return None


def required_values(filter_: Optional[BoundExpr], name: str) -> Optional[frozenset[str]]:
    """The values the filter allows for property ``name`` by equality conjuncts (None: not restricted so)."""
    allowed: Optional[frozenset[str]] = None
    for conjunct in conjuncts(filter_):
        equality = _equality(conjunct)
        if equality is not None and equality[0] == name:
            values = frozenset(equality[1])
            allowed = values if allowed is None else allowed & values
    return allowed


def _date_bound(conjunct: BoundExpr, properties: tuple[str, ...]) -> Optional[tuple[str, str, datetime.date]]:
    """``Date ge 2026-03-01`` as ("Date", "ge", date), with the operands in either order."""
    if not isinstance(conjunct, BoundBinary) or conjunct.op not in ("eq", "ge", "gt", "le", "lt"):
        return None
    flipped = {"ge": "le", "gt": "lt", "le": "ge", "lt": "gt", "eq": "eq"}
    for prop_side, value_side, op in (
        (conjunct.left, conjunct.right, conjunct.op),
        (conjunct.right, conjunct.left, flipped[conjunct.op]),
    ):
        name = _property_name(prop_side)
        if name in properties and isinstance(value_side, BoundLiteral):
            value = value_side.value
            if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
                assert name is not None
                return name, op, value
    return None


def _constant(conjunct: BoundExpr) -> Optional[bool]:
    """True or False when the conjunct holds for every row or for none, whatever the row."""
    if isinstance(conjunct, BoundLiteral):
        # A null condition holds for no row.
        return conjunct.value is True
    if isinstance(conjunct, BoundIn) and not conjunct.values:
        return False
    return None


def plan_pushdown(
    entity_set: str,
    filter_: Optional[BoundExpr],
    *,
    own_scope: bool,
    known: Mapping[str, str] = _NOTHING_KNOWN,
) -> Pushdown:
    """
    Parameters for ``entity_set``'s list endpoint, and the residual filter.
    ``known`` maps properties to the value every row of the endpoint has
    (``UserID`` under ``/Me/...``): conditions on them decide themselves.
    """
    plan = Pushdown()
    filters = EQUALITY_FILTERS.get(entity_set, {})
    date_range = DATE_RANGE_FILTERS.get(entity_set)
    ranges = {name: _Range() for name in (date_range.properties if date_range else ())}
    residual: list[BoundExpr] = []
    # Date comparisons: pushed as exact days, or as a widened span and checked again.
    range_conjuncts: list[BoundExpr] = []
    chosen: dict[str, tuple[_Param, set[str], list[str]]] = {}

    for conjunct in conjuncts(filter_):
        constant = _constant(conjunct)
        if constant is not None:
            plan.matches_nothing = plan.matches_nothing or not constant
            continue
        equality = _equality(conjunct)
        if equality is not None and equality[0] in known:
            name, values = equality
            plan.matches_nothing = plan.matches_nothing or known[name] not in values
            plan.applied.append(f"{name} is always {known[name]} here")
            continue
        if equality is not None:
            name, values = equality
            param = filters.get(name)
            usable = (
                param is not None
                and len(values) <= MAX_PUSHED_VALUES
                and not (own_scope and param.name in _NOT_IN_OWN_SCOPE)
            )
            if usable:
                assert param is not None
                if name in chosen:
                    # Two conditions on one parameter: only rows meeting both can match.
                    _, existing, ordered = chosen[name]
                    kept = existing & set(values)
                    chosen[name] = (param, kept, [v for v in ordered if v in kept])
                else:
                    chosen[name] = (param, set(values), list(dict.fromkeys(values)))
                if not param.exact:
                    residual.append(conjunct)
                continue
        if date_range is not None:
            bound = _date_bound(conjunct, date_range.properties)
            if bound is not None:
                name, op, day = bound
                ranges[name].narrow(op, day)
                range_conjuncts.append(conjunct)
                continue
        residual.append(conjunct)

    exact_days = _days_of_range(date_range, ranges, filters)
    if exact_days is not None:
        name, days = exact_days
        param = filters[name]
        if name in chosen:
            _, existing, ordered = chosen[name]
            kept = existing & set(days)
            chosen[name] = (param, kept, [v for v in ordered if v in kept])
        else:
            chosen[name] = (param, set(days), days)
    else:
        residual.extend(range_conjuncts)

    for name, (param, kept, ordered) in chosen.items():
        if not kept:
            plan.matches_nothing = True
        plan.params.extend((param.name, value) for value in ordered)
        plan.applied.append(f"{name} in ({', '.join(ordered)})" if len(ordered) > 1 else f"{name} eq {ordered[0] if ordered else '∅'}")
    if date_range is not None and exact_days is None:
        _push_date_range(plan, date_range, ranges)
    plan.residual = conjunction(residual)
    return plan


def _days_of_range(
    date_range: Optional[_DateRangeFilter], ranges: Mapping[str, _Range], filters: Mapping[str, _Param]
) -> Optional[tuple[str, list[str]]]:
    """
    A closed range of at most MAX_PUSHED_VALUES days on a date with an exact
    equality filter (TimeEntries' Date and EntryDate[]), as its days: ClickTime
    then returns exactly the matching rows, where the widened StartDate/EndDate
    span would return the days at both ends too.
    """
    if date_range is None or len(date_range.properties) != 1:
        return None
    name = date_range.properties[0]
    param, bounds = filters.get(name), ranges[name]
    if param is None or not param.exact or bounds.empty or bounds.lower is None or bounds.upper is None:
        return None
    length = (bounds.upper - bounds.lower).days + 1
    if not 1 <= length <= MAX_PUSHED_VALUES:
        return None
    return name, [(bounds.lower + datetime.timedelta(days=n)).isoformat() for n in range(length)]


def _push_date_range(plan: Pushdown, date_range: _DateRangeFilter, ranges: Mapping[str, _Range]) -> None:
    span = None if any(bounds.empty for bounds in ranges.values()) else date_range.span(ranges)
    if span is None:
        plan.matches_nothing = True
        return
    lower, upper = span
    if lower is None and upper is None:
        return
    if lower is not None and upper is not None and lower > upper:
        plan.matches_nothing = True
        return
    # Widened by a day: whether ClickTime includes the ends is not documented.
    from_day, to_day = _shifted(lower, -_ONE_DAY), _shifted(upper, _ONE_DAY)
    if from_day is not None:
        plan.params.append((date_range.lower_param, from_day.isoformat()))
    if to_day is not None:
        plan.params.append((date_range.upper_param, to_day.isoformat()))
    plan.applied.append(
        f"{'/'.join(date_range.properties)} within {lower or '…'} and {upper or '…'}"
        " (widened a day, checked again)"
    )
