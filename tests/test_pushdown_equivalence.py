"""
Push-down changes how much the service asks of ClickTime, never the answer.

Two stacks serve the same company, one pushing filters down to ClickTime's
list parameters and one filtering every row itself.  Filters generated from
the company's real values (IDs, foreign keys, names, dates, booleans,
conditions through navigation properties, with and/or/not, Power BI's date-time literals at an offset, conditions ClickTime
cannot apply), with or without ``$skip``, must give both the same rows in the
same order, and the same ``@odata.count``.  A few fixed filters show that push-down really does read
fewer rows upstream.
"""

from __future__ import annotations

import datetime
from typing import Any, AsyncIterator, Callable, Optional, cast
from urllib.parse import quote

import pytest
import pytest_twisted  # type: ignore[import-untyped]  # no py.typed marker, no stubs
import treq
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from harness import ADMIN_TOKEN, RECORDS, Stack, TreqHeaders, records_of, small_company, start_stack
from odata_klein_plugins.clicktime.simulator import Company


class Stacks:
    """A stack that pushes filters down and one that does not, over the same company."""

    def __init__(self, pushing: Stack, filtering: Stack) -> None:
        self.pushing = pushing
        self.filtering = filtering

    @property
    def company(self) -> Company:
        return self.pushing.company

    def __repr__(self) -> str:
        # Hypothesis prints the arguments of a failing example (dataclasses field by field): not the company.
        return "Stacks(pushing, filtering)"


@pytest_twisted.async_yield_fixture(scope="module")
async def stacks() -> AsyncIterator[Stacks]:
    company = small_company(500)
    pushing = await start_stack(company, pushdown=True)
    filtering = await start_stack(company, pushdown=False)
    yield Stacks(pushing, filtering)
    await pushing.stop()
    await filtering.stop()


async def read(
    stack: Stack, entity_set: str, filter_text: str, count: bool = True, skip: int = 0
) -> tuple[list[str], Optional[int]]:
    """The IDs of every page (following nextLinks), and @odata.count when asked for."""
    first = f"{entity_set}?$select=ID&$count={str(count).lower()}&$filter={quote(filter_text, safe='')}"
    if skip:
        first += f"&$skip={skip}"
    url: Optional[str] = first
    ids: list[str] = []
    total = None
    while url is not None:
        reply = await stack.get(url)
        assert reply.code == 200, (filter_text, reply.body[:500])
        body = reply.json()
        total = body.get("@odata.count", total)
        ids.extend(row["ID"] for row in body["value"])
        url = body.get("@odata.nextLink")
    assert (total is not None) == count
    return ids, total


# --- literals as a client writes them -------------------------------------------------------


def string_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


OFFSETS = ("Z", "-05:00", "-04:00", "+01:00", "+05:30", "-10:00")


@st.composite
def date_literals(draw: st.DrawFn, day: datetime.date) -> str:
    """``day`` (moved a little) as a date, or as Power BI's date-time at some offset."""
    day = day + datetime.timedelta(days=draw(st.integers(-2, 2)))
    if draw(st.booleans()):
        return day.isoformat()
    hour, minute = draw(st.sampled_from(((0, 0), (0, 0), (0, 0), (12, 30), (23, 59))))
    return f"{day.isoformat()}T{hour:02d}:{minute:02d}:00{draw(st.sampled_from(OFFSETS))}"


# --- conditions on one column ----------------------------------------------------------------


def values_of(company: Company, entity_set: str, column: str) -> list[Any]:
    records = records_of(company, entity_set)
    return sorted({getattr(r, column) for r in records if getattr(r, column) is not None})


@st.composite
def key_conditions(draw: st.DrawFn, column: str, values: list[str]) -> str:
    """eq, ne, in and or-lists on an ID or foreign key (sometimes a value nobody has)."""
    real = st.sampled_from(values)
    value = draw(st.one_of(real, real, real, st.just("NoSuchId0000000000000000")))
    shape = draw(st.sampled_from(("eq", "eq", "ne", "in", "or", "flipped")))
    if shape == "in":
        chosen = draw(st.lists(real, min_size=1, max_size=4))
        return f"{column} in ({','.join(map(string_literal, chosen))})"
    if shape == "or":
        other = draw(real)
        return f"({column} eq {string_literal(value)} or {column} eq {string_literal(other)})"
    if shape == "flipped":
        return f"{string_literal(value)} eq {column}"
    return f"{column} {shape} {string_literal(value)}"


@st.composite
def text_conditions(draw: st.DrawFn, column: str, values: list[str]) -> str:
    """Text equality, which ClickTime may compare differently (case): the engine checks again."""
    value = draw(st.sampled_from(values))
    value = draw(st.sampled_from((value, value, value.upper(), value.lower(), value[:-1], value + " ")))
    op = draw(st.sampled_from(("eq", "eq", "ne", "in")))
    if op == "in":
        return f"{column} in ({string_literal(value)},{string_literal(draw(st.sampled_from(values)))})"
    return f"{column} {op} {string_literal(value)}"


@st.composite
def date_conditions(draw: st.DrawFn, column: str, values: list[str]) -> str:
    day = datetime.date.fromisoformat(draw(st.sampled_from(values)))
    op = draw(st.sampled_from(("ge", "gt", "le", "lt", "eq")))
    literal = draw(date_literals(day))
    if draw(st.booleans()):
        return f"{column} {op} {literal}"
    mirrored = {"ge": "le", "gt": "lt", "le": "ge", "lt": "gt", "eq": "eq"}[op]
    return f"{literal} {mirrored} {column}"


@st.composite
def date_ranges(draw: st.DrawFn, column: str, values: list[str]) -> str:
    """``Date ge a and Date lt b``: what Power BI sends for a date slicer."""
    low = datetime.date.fromisoformat(draw(st.sampled_from(values)))
    days = draw(st.sampled_from((1, 7, 31, 92)))
    start = draw(date_literals(low))
    end = draw(date_literals(low + datetime.timedelta(days=days)))
    return f"{column} {draw(st.sampled_from(('ge', 'gt')))} {start} and {column} {draw(st.sampled_from(('lt', 'le')))} {end}"


BOOLEAN_CONDITIONS = ("{0}", "not {0}", "{0} eq true", "{0} eq false", "{0} ne true", "true eq {0}")


def boolean_conditions(column: str) -> st.SearchStrategy[str]:
    return st.sampled_from(BOOLEAN_CONDITIONS).map(lambda form: form.format(column))


# Conditions ClickTime cannot apply, per entity set: the engine always does.
UNPUSHABLE: dict[str, tuple[str, ...]] = {
    "TimeEntries": ("Hours gt 2", "contains(Comment,'a')", "StartTime eq null", "Comment eq null", "BreakTime gt 0"),
    "Users": ("contains(Name,'a')", "EndDate eq null", "StartDate lt 2020-01-01", "RequireComments"),
    "Jobs": ("contains(Name,'Phase')", "EndDate ne null", "IsBillable", "StartDate ge 2025-06-01"),
    "Clients": ("startswith(Name,'A')", "CreatedDate lt 2020-01-01T00:00:00-05:00", "Notes eq null"),
    "Tasks": ("IsBillable", "length(Name) gt 8", "TaskCode eq null"),
    "Divisions": ("Notes eq null", "contains(Name,'i')"),
    "Timesheets": ("HasBeenSubmitted", "ApprovedByUserID eq null", "EndDate le 2026-06-30"),
}


# Conditions through navigation properties: path -> (entity set and column its values come from).
NAVIGATION: dict[str, dict[str, tuple[str, str]]] = {
    "TimeEntries": {
        "Job/ClientID": ("Jobs", "ClientID"),
        "User/DivisionID": ("Users", "DivisionID"),
        "Task/Name": ("Tasks", "Name"),
        "Job/Client/Name": ("Clients", "Name"),
    },
    "Jobs": {"Client/Name": ("Clients", "Name")},
    "Users": {"Division/Name": ("Divisions", "Name")},
    "Timesheets": {"User/Name": ("Users", "Name")},
}


def column_conditions(company: Company, entity_set: str) -> st.SearchStrategy[str]:
    """Every kind of condition this entity set has a column for, on the company's values."""

    def of(column: str) -> list[Any]:
        return values_of(company, entity_set, column)

    keys = {
        "TimeEntries": ("ID", "JobID", "TaskID", "UserID"),
        "Users": ("ID", "DivisionID", "EmploymentTypeID", "TimesheetApproverID"),
        "Jobs": ("ID", "ClientID", "ProjectManagerID"),
        "Clients": ("ID",),
        "Tasks": ("ID",),
        "Divisions": ("ID",),
        "Timesheets": ("ID", "UserID"),
    }[entity_set]
    texts = {
        "TimeEntries": ("Comment",),
        "Users": ("Name", "Email", "SecurityLevel"),
        "Jobs": ("Name", "JobNumber"),
        "Clients": ("Name", "ShortName", "ClientNumber"),
        "Tasks": ("Name", "TaskCode"),
        "Divisions": ("Name",),
        "Timesheets": ("Status",),
    }[entity_set]
    dates = {"TimeEntries": ("Date",), "Users": ("StartDate",), "Jobs": ("StartDate",), "Timesheets": ("StartDate", "EndDate")}
    options: list[st.SearchStrategy[str]] = [key_conditions(c, of(c)) for c in keys]
    options += [text_conditions(c, of(c)) for c in texts]
    for column in dates.get(entity_set, ()):
        options += [date_conditions(column, of(column)), date_ranges(column, of(column))]
    if entity_set not in ("TimeEntries", "Timesheets"):
        options.append(boolean_conditions("IsActive"))
    options.append(st.sampled_from(UNPUSHABLE[entity_set]))
    for path, (target_set, column) in NAVIGATION.get(entity_set, {}).items():
        kind = key_conditions if column.endswith("ID") else text_conditions
        options.append(kind(path, values_of(company, target_set, column)))
    return st.one_of(options)


def filters(company: Company, entity_set: str) -> st.SearchStrategy[str]:
    """Filters on ``entity_set``: a conjunction (what push-down splits) of conditions and small trees."""
    condition = column_conditions(company, entity_set)
    tree = st.recursive(
        condition,
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(("and", "or")), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            inner.map(lambda c: f"not ({c})"),
        ),
        max_leaves=3,
    )
    return st.lists(st.one_of(condition, condition, tree), min_size=1, max_size=4).map(" and ".join)


# Mostly TimeEntries; Timesheets seldom (about 4,000 rows to read without push-down).
WEIGHTED_SETS = ("TimeEntries",) * 5 + ("Users", "Jobs") * 2 + ("Clients", "Tasks", "Divisions", "Timesheets")


@pytest.fixture(scope="module")
def cases(stacks: Stacks) -> dict[str, st.SearchStrategy[str]]:
    """The filter strategy of every entity set, built once."""
    return {entity_set: filters(stacks.company, entity_set) for entity_set in RECORDS}


EQUIVALENCE = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow],
)


@EQUIVALENCE
@given(data=st.data())
@pytest_twisted.ensureDeferred
async def test_pushdown_gives_the_same_rows(
    stacks: Stacks, cases: dict[str, st.SearchStrategy[str]], data: st.DataObject
) -> None:
    entity_set = data.draw(st.sampled_from(WEIGHTED_SETS), label="entity set")
    filter_text = data.draw(cases[entity_set], label="filter")
    # $count costs a second pass over the rows: asked for in every other example.
    count = data.draw(st.booleans(), label="count")
    # ClickTime skips by its offset when it applies the whole filter; the service otherwise.
    skip = data.draw(st.sampled_from((0, 0, 1, 7, 600)), label="skip")
    pushed = await read(stacks.pushing, entity_set, filter_text, count, skip)
    assert pushed == await read(stacks.filtering, entity_set, filter_text, count, skip)
    # With count, read() made sure @odata.count was there.
    assert not count or len(pushed[0]) == max(cast(int, pushed[1]) - skip, 0)
    event(f"{entity_set}: {'no rows' if not pushed[0] else 'rows'}")  # --hypothesis-show-statistics


# Hand-picked filters of each kind: they match rows (the generated ones are not all empty).
def representative_filters(company: Company) -> list[tuple[str, str]]:
    entry = company.time_entries[len(company.time_entries) // 2]
    user = next(u for u in company.users if not u.IsActive)
    job = company.jobs[3]
    sheet = next(s for s in company.timesheets if s.UserID == entry.UserID and s.StartDate <= entry.Date <= s.EndDate)
    day_before = datetime.date.fromisoformat(entry.Date) - datetime.timedelta(days=1)
    return [
        ("TimeEntries", f"UserID eq '{entry.UserID}' and Date ge {entry.Date}T00:00:00-05:00 and Hours gt 0"),
        ("TimeEntries", f"JobID in ('{entry.JobID}','{job.ID}') or TaskID eq '{entry.TaskID}'"),
        ("TimeEntries", f"ID eq '{entry.ID}' and not (Comment eq null)"),
        ("TimeEntries", f"Date gt {day_before}T12:30:00+05:30 and Date le {entry.Date} and Hours ge {entry.Hours}"),
        ("Users", f"not IsActive and ID ne '{user.TimesheetApproverID}'"),
        ("Users", f"DivisionID eq '{user.DivisionID}' and Name ne {string_literal(user.Name.upper())}"),
        ("Jobs", f"ClientID eq '{job.ClientID}' or (IsActive eq false and JobNumber ne '{job.JobNumber}')"),
        ("Clients", "IsActive and ClientNumber in ('C-001','C-002','C-028')"),
        ("Tasks", "IsActive eq false or TaskCode eq 'DEV'"),
        ("Divisions", "Name eq 'Engineering' or not IsActive"),
        ("Timesheets", f"UserID eq '{entry.UserID}' and Status eq '{sheet.Status}' and StartDate ge {sheet.StartDate}"),
        ("Timesheets", f"ID eq '{sheet.ID}'"),
        ("TimeEntries", f"Job/ClientID eq '{job.ClientID}' or User/DivisionID eq '{user.DivisionID}'"),
    ]


@pytest_twisted.ensureDeferred
async def test_representative_filters_match_rows_and_agree(stacks: Stacks) -> None:
    for entity_set, filter_text in representative_filters(stacks.company):
        pushed = await read(stacks.pushing, entity_set, filter_text)
        assert pushed[0], (entity_set, filter_text)
        assert pushed == await read(stacks.filtering, entity_set, filter_text), (entity_set, filter_text)


# --- push-down reads less ------------------------------------------------------------------


async def upstream_since(stack: Stack, endpoint: str, start: int) -> tuple[int, int]:
    """How many requests to ``endpoint`` the simulator received since its ``start``-th, and how many rows they answered.

    The simulator records each request's parameters; asking them again tells
    how many rows each answer held.
    """
    calls = [r for r in stack.simulator.requests[start:] if r.path.rstrip("/").endswith("/" + endpoint)]
    root = stack.simulator.base_url.rsplit("/v2", 1)[0]
    rows = 0
    for call in calls:
        headers: TreqHeaders = {"Authorization": f"Token {ADMIN_TOKEN}"}
        response = await treq.get(root + call.path, params=list(call.params), headers=headers)
        data = (await response.json())["data"]
        rows += len(data) if isinstance(data, list) else 1
    return len(calls), rows


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(
    "entity_set, make_filter, expected",
    [
        (
            "TimeEntries",
            lambda company, entry: f"UserID eq '{entry.UserID}'",
            lambda company, entry: [e for e in company.time_entries if e.UserID == entry.UserID],
        ),
        (
            "TimeEntries",
            lambda company, entry: f"Date ge 2026-03-01T00:00:00-05:00 and Date lt 2026-04-01T00:00:00-05:00 and UserID eq '{entry.UserID}'",
            lambda company, entry: [
                e for e in company.time_entries if "2026-03-01" <= e.Date < "2026-04-01" and e.UserID == entry.UserID
            ],
        ),
        (
            "TimeEntries",
            lambda company, entry: f"JobID in ('{entry.JobID}','{company.time_entries[0].JobID}') and Hours gt 1",
            lambda company, entry: [
                e for e in company.time_entries if e.JobID in (entry.JobID, company.time_entries[0].JobID) and e.Hours > 1
            ],
        ),
        (
            "Timesheets",
            lambda company, entry: f"UserID eq '{entry.UserID}' and Status eq 'Approved'",
            lambda company, entry: [
                s for s in company.timesheets if s.UserID == entry.UserID and s.Status == "Approved"
            ],
        ),
    ],
    ids=["user", "march-of-a-user", "jobs-and-hours", "approved-timesheets-of-a-user"],
)
async def test_pushdown_reads_fewer_rows_upstream(
    stacks: Stacks, entity_set: str, make_filter: Callable[..., str], expected: Callable[..., list]
) -> None:
    company = stacks.company
    entry = next(e for e in company.time_entries if e.Date.startswith("2026-03"))
    filter_text = make_filter(company, entry)
    wanted = [record.ID for record in expected(company, entry)]
    assert wanted

    pushing_start, filtering_start = len(stacks.pushing.simulator.requests), len(stacks.filtering.simulator.requests)
    assert await read(stacks.pushing, entity_set, filter_text) == (wanted, len(wanted))
    assert await read(stacks.filtering, entity_set, filter_text) == (wanted, len(wanted))
    pushed_calls, pushed_rows = await upstream_since(stacks.pushing, entity_set, pushing_start)
    all_calls, all_rows = await upstream_since(stacks.filtering, entity_set, filtering_start)
    assert all_rows >= len(records_of(company, entity_set))
    assert len(wanted) <= pushed_rows < all_rows / 5
    assert pushed_calls <= all_calls
