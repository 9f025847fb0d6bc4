"""
Turning OData filters into ClickTime list parameters.

The filter is split into conjuncts; each conjunct ClickTime can apply becomes
query parameters (repeated keys mean OR), the rest is left to the engine.

Some of ClickTime's filter semantics are documented and some are only
inferred (`clicktime-api.md` marks them [I]); the provider must not depend
on the inferred ones.  So a pushed conjunct is *exact* (ClickTime's answer is
precisely the matching rows: opaque ID equality, booleans) or only
*narrowing* (ClickTime's answer contains every matching row, maybe more):
narrowing conjuncts stay in the residual filter for the engine to check
again.  Text equality (case sensitivity unknown) narrows.  Date ranges
(inclusive or exclusive ends unknown) are widened by a day at each end,
which holds every matching row under either reading, and then narrow.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Mapping, Optional

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

_ONE_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class _Param:
    name: str
    exact: bool


_ID = _Param("ID", True)


def _ids(*names: str) -> dict[str, _Param]:
    return {name: _Param(name, True) for name in names}


def _texts(*names: str) -> dict[str, _Param]:
    return {name: _Param(name, False) for name in names}


# Property -> list filter, per entity set and scope ("root": company-wide
# endpoints; "me": /Me/... for users who see only their own records).
EQUALITY_FILTERS: Mapping[str, Mapping[str, _Param]] = {
    "TimeEntries": {"ID": _ID, **_ids("JobID", "TaskID", "UserID")},
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

# Entity set -> (date property, lower-bound parameter, upper-bound parameter).
DATE_RANGE_FILTERS: Mapping[str, tuple[str, str, str]] = {
    "TimeEntries": ("Date", "StartDate", "EndDate"),
}


@dataclass
class Pushdown:
    """What goes upstream, and what the engine must still check."""

    params: list[tuple[str, str]] = field(default_factory=list)
    residual: Optional[BoundExpr] = None
    # The filter can match no row (contradictory equalities): skip the upstream.
    matches_nothing: bool = False
    applied: list[str] = field(default_factory=list)


def _literal_text(value: object) -> Optional[str]:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
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


def _date_bound(conjunct: BoundExpr, date_property: str) -> Optional[tuple[str, datetime.date]]:
    """``Date ge 2026-03-01`` as ("ge", date), with the operands in either order."""
    if not isinstance(conjunct, BoundBinary) or conjunct.op not in ("eq", "ge", "gt", "le", "lt"):
        return None
    flipped = {"ge": "le", "gt": "lt", "le": "ge", "lt": "gt", "eq": "eq"}
    for prop_side, value_side, op in (
        (conjunct.left, conjunct.right, conjunct.op),
        (conjunct.right, conjunct.left, flipped[conjunct.op]),
    ):
        if _property_name(prop_side) == date_property and isinstance(value_side, BoundLiteral):
            value = value_side.value
            if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
                return op, value
    return None


def plan_pushdown(entity_set: str, filter_: Optional[BoundExpr], *, own_scope: bool) -> Pushdown:
    plan = Pushdown()
    filters = EQUALITY_FILTERS.get(entity_set, {})
    date_range = DATE_RANGE_FILTERS.get(entity_set)
    residual: list[BoundExpr] = []
    chosen: dict[str, tuple[_Param, set[str], list[str]]] = {}
    lower: Optional[datetime.date] = None
    upper: Optional[datetime.date] = None

    for conjunct in conjuncts(filter_):
        equality = _equality(conjunct)
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
            bound = _date_bound(conjunct, date_range[0])
            if bound is not None:
                op, day = bound
                if op in ("ge", "gt", "eq"):
                    low = day + _ONE_DAY if op == "gt" else day
                    lower = low if lower is None else max(lower, low)
                if op in ("le", "lt", "eq"):
                    high = day - _ONE_DAY if op == "lt" else day
                    upper = high if upper is None else min(upper, high)
                residual.append(conjunct)
                continue
        residual.append(conjunct)

    for name, (param, kept, ordered) in chosen.items():
        if not kept:
            plan.matches_nothing = True
        plan.params.extend((param.name, value) for value in ordered)
        plan.applied.append(f"{name} in ({', '.join(ordered)})" if len(ordered) > 1 else f"{name} eq {ordered[0] if ordered else '∅'}")
    if date_range is not None and (lower is not None or upper is not None):
        if lower is not None and upper is not None and lower > upper:
            plan.matches_nothing = True
        _, low_param, high_param = date_range
        if lower is not None:
            plan.params.append((low_param, (lower - _ONE_DAY).isoformat()))
        if upper is not None:
            plan.params.append((high_param, (upper + _ONE_DAY).isoformat()))
        plan.applied.append(f"{date_range[0]} between {lower or '…'} and {upper or '…'} (widened a day, checked again)")
    plan.residual = conjunction(residual)
    return plan

