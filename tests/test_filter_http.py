"""
$filter evaluated over HTTP against the simulator's data.

Each expectation is computed here, with plain Python over the company's
records (the NamedTuples the simulator serves), following OData 4.01 Part 2,
5.1.1 -- not with the engine's code.  The rules that matter:

* ``x eq null`` is false and ``x ne null`` true for a non-null x; order
  operators with a null operand are false;
* functions and arithmetic of null are null; ``not null`` is null; ``null and
  false`` is false, ``null or true`` is true; a row is returned only when the
  filter is true;
* ``round`` rounds half away from zero; integer ``div`` truncates;
* an Edm.Date compared with a date-time literal (Power BI's way) stands for
  its first instant at the literal's offset.

Every case must match some rows and not all of them, so that each one can fail.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any, AsyncIterator, Callable, NamedTuple
from urllib.parse import quote

import pytest
import pytest_twisted  # type: ignore[import-untyped]  # no py.typed marker, no stubs

from harness import Stack, records_of, small_company, start_stack
from odata_klein_plugins.clicktime.simulator import Company


@pytest_twisted.async_yield_fixture(scope="module")
async def stack() -> AsyncIterator[Stack]:
    running = await start_stack(small_company(500), page_size=1000)
    yield running
    await running.stop()


def samples(company: Company) -> dict[str, Any]:
    """Values the filters name, taken from the company."""
    entries = company.time_entries
    busiest = max({e.UserID for e in entries}, key=lambda u: sum(e.UserID == u for e in entries))
    return {
        "user": busiest,
        "other_user": entries[1].UserID,
        "job": entries[2].JobID,
        "task": entries[3].TaskID,
        "entry": entries[4].ID,
        "division": company.users[0].DivisionID,
        "client": next(j.ClientID for j in company.jobs if j.ID == entries[5].JobID),
        # For conditions through navigation properties.
        "client_of_job": {j.ID: j.ClientID for j in company.jobs},
        "division_of_user": {u.ID: u.DivisionID for u in company.users},
        "name_of_division": {d.ID: d.Name for d in company.divisions},
    }


async def filtered_ids(stack: Stack, entity_set: str, query: str) -> tuple[list[str], int]:
    reply = await stack.get(f"{entity_set}?$select=ID&$count=true&{query}")
    assert reply.code == 200, (query, reply.body[:500])
    body = reply.json()
    assert "@odata.nextLink" not in body
    return [row["ID"] for row in body["value"]], body["@odata.count"]


def encoded(filter_text: str) -> str:
    return "$filter=" + quote(filter_text, safe="")


# --- the cases ----------------------------------------------------------------------------------

Predicate = Callable[[Any, dict[str, Any]], bool]


class Case(NamedTuple):
    entity_set: str
    filter: str  # str.format'ed with samples()
    holds: Predicate


def has(value: Any) -> bool:
    return value is not None


def text(value: str | None, test: Callable[[str], bool]) -> bool:
    """A string function's condition: null when the value is null, which is not true."""
    return value is not None and test(value)


def hours(entry: Any) -> Decimal:
    return Decimal(str(entry.Hours))


def half_away_from_zero(value: Decimal) -> int:
    return int(math.floor(value + Decimal("0.5"))) if value >= 0 else -int(math.floor(-value + Decimal("0.5")))


COMPARISONS = [
    Case("TimeEntries", "Hours eq 2.5", lambda e, v: e.Hours == 2.5),
    Case("TimeEntries", "Hours ne 2.5", lambda e, v: e.Hours != 2.5),
    Case("TimeEntries", "Hours gt 4", lambda e, v: e.Hours > 4),
    Case("TimeEntries", "Hours ge 4", lambda e, v: e.Hours >= 4),
    Case("TimeEntries", "Hours lt 1", lambda e, v: e.Hours < 1),
    Case("TimeEntries", "Hours le 1", lambda e, v: e.Hours <= 1),
    Case("TimeEntries", "4 lt Hours", lambda e, v: e.Hours > 4),
    Case("TimeEntries", "Date eq 2026-03-02", lambda e, v: e.Date == "2026-03-02"),
    Case("TimeEntries", "Date ge 2026-03-01 and Date lt 2026-04-01", lambda e, v: "2026-03-01" <= e.Date < "2026-04-01"),
    Case(
        "TimeEntries",
        "Date ge 2026-02-03T00:00:00-05:00 and Date lt 2026-03-03T00:00:00-05:00",
        lambda e, v: "2026-02-03" <= e.Date < "2026-03-03",
    ),
    # Later than midnight on the 3rd: the 3rd itself starts before it.
    Case("TimeEntries", "Date ge 2026-02-03T08:00:00+01:00", lambda e, v: e.Date > "2026-02-03"),
    Case("TimeEntries", "Date lt 2026-02-03T08:00:00+01:00", lambda e, v: e.Date <= "2026-02-03"),
    Case("TimeEntries", "StartTime lt 10:00:00", lambda e, v: text(e.StartTime, lambda t: t < "10:00")),
    Case("TimeEntries", "StartTime ge 12:30:00", lambda e, v: text(e.StartTime, lambda t: t >= "12:30")),
    Case("TimeEntries", "Comment gt 'R'", lambda e, v: text(e.Comment, lambda c: c > "R")),
    Case("TimeEntries", "Comment le 'Migrated'", lambda e, v: text(e.Comment, lambda c: c <= "Migrated")),
    Case("TimeEntries", "UserID eq '{user}'", lambda e, v: e.UserID == v["user"]),
    Case("TimeEntries", "'{user}' ne UserID", lambda e, v: e.UserID != v["user"]),
    Case("Users", "IsActive eq false", lambda u, v: not u.IsActive),
    Case("Users", "IsActive", lambda u, v: u.IsActive),
    Case("Users", "StartDate gt 2024-11-01", lambda u, v: text(u.StartDate, lambda d: d > "2024-11-01")),
    Case("Clients", "CreatedDate lt 2018-01-01T00:00:00Z", lambda c, v: c.CreatedDate < "2018"),
]

NULLS_AND_LOGIC = [
    Case("TimeEntries", "StartTime eq null", lambda e, v: e.StartTime is None),
    Case("TimeEntries", "StartTime ne null", lambda e, v: e.StartTime is not None),
    Case("TimeEntries", "Comment eq null", lambda e, v: e.Comment is None),
    Case("TimeEntries", "Comment ne null and Hours gt 6", lambda e, v: has(e.Comment) and e.Hours > 6),
    Case("TimeEntries", "null eq Comment or Hours eq 0.25", lambda e, v: e.Comment is None or e.Hours == 0.25),
    Case("TimeEntries", "not (Comment eq 'Weekly planning')", lambda e, v: e.Comment != "Weekly planning"),
    Case("TimeEntries", "not contains(Comment,'a')", lambda e, v: text(e.Comment, lambda c: "a" not in c)),
    Case(
        "TimeEntries",
        "contains(Comment,'e') or Hours ge 6",
        lambda e, v: text(e.Comment, lambda c: "e" in c) or e.Hours >= 6,
    ),
    Case(
        "TimeEntries",
        "not (contains(Comment,'e') and Hours ge 6)",
        lambda e, v: (e.Hours < 6) or text(e.Comment, lambda c: "e" not in c),
    ),
    Case("TimeEntries", "not (StartTime gt 12:00:00)", lambda e, v: not text(e.StartTime, lambda t: t > "12:00")),
    Case(
        "TimeEntries",
        "(UserID eq '{user}' or JobID eq '{job}') and not (TaskID eq '{task}')",
        lambda e, v: (e.UserID == v["user"] or e.JobID == v["job"]) and e.TaskID != v["task"],
    ),
    Case("Users", "EndDate ne null or Notes ne null", lambda u, v: has(u.EndDate) or has(u.Notes)),
]

ARITHMETIC = [
    Case("TimeEntries", "Hours add BreakTime gt 8", lambda e, v: e.Hours + e.BreakTime > 8),
    Case("TimeEntries", "Hours sub BreakTime lt 1", lambda e, v: e.Hours - e.BreakTime < 1),
    Case("TimeEntries", "Hours mul 2 eq 4.5", lambda e, v: e.Hours * 2 == 4.5),
    Case("TimeEntries", "Hours div 0.25 eq 9", lambda e, v: hours(e) / Decimal("0.25") == 9),
    Case("TimeEntries", "Hours divby 2 gt 1.5", lambda e, v: hours(e) / 2 > Decimal("1.5")),
    Case("TimeEntries", "Hours mod 1 eq 0.5", lambda e, v: hours(e) % 1 == Decimal("0.5")),
    Case("TimeEntries", "-Hours lt -7", lambda e, v: -e.Hours < -7),
    Case("TimeEntries", "length(Comment) div 2 eq 7", lambda e, v: text(e.Comment, lambda c: len(c) // 2 == 7)),
    Case("TimeEntries", "length(Comment) mod 3 eq 1", lambda e, v: text(e.Comment, lambda c: len(c) % 3 == 1)),
    Case("TimeEntries", "round(Hours) eq 2", lambda e, v: half_away_from_zero(hours(e)) == 2),
    Case("TimeEntries", "floor(Hours) eq 2", lambda e, v: math.floor(e.Hours) == 2),
    Case("TimeEntries", "ceiling(Hours) eq 2", lambda e, v: math.ceil(e.Hours) == 2),
    Case("TimeEntries", "round(Hours div 2) eq 1", lambda e, v: half_away_from_zero(hours(e) / 2) == 1),
]

STRINGS = [
    Case("TimeEntries", "contains(Comment,'client')", lambda e, v: text(e.Comment, lambda c: "client" in c)),
    Case("TimeEntries", "startswith(Comment,'W')", lambda e, v: text(e.Comment, lambda c: c.startswith("W"))),
    Case("TimeEntries", "endswith(Comment,'s')", lambda e, v: text(e.Comment, lambda c: c.endswith("s"))),
    Case("TimeEntries", "length(Comment) gt 22", lambda e, v: text(e.Comment, lambda c: len(c) > 22)),
    Case("TimeEntries", "indexof(Comment,'e') eq 1", lambda e, v: text(e.Comment, lambda c: c.find("e") == 1)),
    Case("TimeEntries", "substring(Comment,1,3) eq 'eek'", lambda e, v: text(e.Comment, lambda c: c[1:4] == "eek")),
    Case("TimeEntries", "substring(Comment,7) eq 'planning'", lambda e, v: text(e.Comment, lambda c: c[7:] == "planning")),
    Case("TimeEntries", "tolower(Comment) eq 'weekly planning'", lambda e, v: text(e.Comment, lambda c: c.lower() == "weekly planning")),
    Case("TimeEntries", "toupper(Comment) eq 'WROTE TEST CASES'", lambda e, v: text(e.Comment, lambda c: c.upper() == "WROTE TEST CASES")),
    Case("TimeEntries", "trim(concat(' ',Comment)) eq 'Weekly planning'", lambda e, v: e.Comment == "Weekly planning"),
    # null eq null is true: a null Comment makes both sides null.
    Case("TimeEntries", "trim(Comment) eq Comment and Hours lt 1", lambda e, v: e.Hours < 1),
    Case(
        "TimeEntries",
        "concat(concat(Comment,' / '),UserID) eq concat('Weekly planning / ','{user}')",
        lambda e, v: e.Comment == "Weekly planning" and e.UserID == v["user"],
    ),
    Case("TimeEntries", "matchesPattern(Comment,'^[A-Z][a-z]+ [a-z]+$')", lambda e, v: text(e.Comment, lambda c: re.fullmatch("[A-Z][a-z]+ [a-z]+", c) is not None)),
    Case("Users", "contains(Name,'a') and not startswith(Email,'a')", lambda u, v: "a" in u.Name and not u.Email.startswith("a")),
    Case("Users", "Name eq 'Zoë O''Brien' or length(Name) eq 2", lambda u, v: u.Name == "Zoë O'Brien" or len(u.Name) == 2),
    Case("Users", "toupper(substring(Name,0,1)) eq 'J'", lambda u, v: u.Name[:1].upper() == "J"),
    Case("Clients", "contains(Name,'&') or startswith(Name,'\"')", lambda c, v: "&" in c.Name or c.Name.startswith('"')),
    Case("Clients", "indexof(Name,' ') gt 5", lambda c, v: c.Name.find(" ") > 5),
    Case("Jobs", "endswith(Name,'Phase 2') or contains(JobNumber,'-001')", lambda j, v: j.Name.endswith("Phase 2") or "-001" in (j.JobNumber or "")),
    Case("Tasks", "length(TaskCode) eq 2 or tolower(Name) eq 'travel'", lambda t, v: len(t.TaskCode or "") == 2 or t.Name.lower() == "travel"),
]

DATES_AND_TIMES = [
    Case("TimeEntries", "year(Date) eq 2026 and month(Date) eq 3", lambda e, v: e.Date.startswith("2026-03")),
    Case("TimeEntries", "day(Date) eq 15", lambda e, v: e.Date.endswith("-15")),
    Case("TimeEntries", "month(Date) le 2", lambda e, v: int(e.Date[5:7]) <= 2),
    Case("TimeEntries", "hour(StartTime) eq 9", lambda e, v: text(e.StartTime, lambda t: t.startswith("09:"))),
    Case("TimeEntries", "minute(StartTime) eq 30", lambda e, v: text(e.StartTime, lambda t: t.endswith(":30"))),
    Case("Users", "year(StartDate) lt 2018", lambda u, v: text(u.StartDate, lambda d: d < "2018")),
]

IN_CAST_ALIASES = [
    Case("TimeEntries", "Hours in (0.5,1.5,8)", lambda e, v: e.Hours in (0.5, 1.5, 8)),
    Case("TimeEntries", "UserID in ('{user}','{other_user}')", lambda e, v: e.UserID in (v["user"], v["other_user"])),
    Case("TimeEntries", "Comment in ('Weekly planning',null)", lambda e, v: e.Comment in ("Weekly planning", None)),
    Case("TimeEntries", "cast(Date,Edm.String) eq '2026-03-02'", lambda e, v: e.Date == "2026-03-02"),
    Case("TimeEntries", "cast(Hours,Edm.Double) gt 7.5", lambda e, v: e.Hours > 7.5),
    Case("Users", "DivisionID eq '{division}' and IsActive", lambda u, v: u.DivisionID == v["division"] and u.IsActive),
]

NAVIGATION = [
    Case("TimeEntries", "Job/ClientID eq '{client}'", lambda e, v: v["client_of_job"][e.JobID] == v["client"]),
    Case(
        "TimeEntries",
        "User/Division/Name eq 'Engineering' and Hours ge 4",
        lambda e, v: v["name_of_division"].get(v["division_of_user"][e.UserID]) == "Engineering" and e.Hours >= 4,
    ),
]

ALL_CASES = COMPARISONS + NULLS_AND_LOGIC + ARITHMETIC + STRINGS + DATES_AND_TIMES + IN_CAST_ALIASES + NAVIGATION


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("case", ALL_CASES, ids=[f"{c.entity_set}: {c.filter}" for c in ALL_CASES])
async def test_filter(stack: Stack, case: Case) -> None:
    values = samples(stack.company)
    records = records_of(stack.company, case.entity_set)
    expected = [r.ID for r in records if case.holds(r, values)]
    assert 0 < len(expected) < len(records), "the case must be able to fail"
    ids, count = await filtered_ids(stack, case.entity_set, encoded(case.filter.format(**values)))
    assert ids == expected
    assert count == len(expected)


@pytest_twisted.ensureDeferred
async def test_parameter_aliases(stack: Stack) -> None:
    values = samples(stack.company)
    query = (
        encoded("Hours gt @h and UserID eq @u or contains(Comment,@word)")
        + f"&@h=3&@u=%27{values['user']}%27&@word=%27client%27"
    )
    expected = [
        e.ID
        for e in stack.company.time_entries
        if (e.Hours > 3 and e.UserID == values["user"]) or text(e.Comment, lambda c: "client" in c)
    ]
    assert expected
    assert await filtered_ids(stack, "TimeEntries", query) == (expected, len(expected))


@pytest_twisted.ensureDeferred
async def test_count_segment_with_a_filter(stack: Stack) -> None:
    reply = await stack.get("TimeEntries/$count?" + encoded("Hours ge 4 and Comment ne null"))
    expected = sum(1 for e in stack.company.time_entries if e.Hours >= 4 and e.Comment is not None)
    assert reply.code == 200 and reply.body == str(expected).encode()


# --- errors -------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(
    "filter_text, position, words",
    [
        ("Nope eq 1", 0, ("Nope",)),
        ("Hours gt 1 and Nope eq 1", 15, ("Nope",)),
        ("Hours eq 'x'", None, ("Hours", "Edm.String")),
        ("Date ge 'yesterday'", None, ("Date",)),
        ("contains(Hours,'1')", None, ("contains",)),
        ("Hours", None, ("Edm.Boolean",)),
        ("Hours gt", 8, ()),
        ("Hours gt @missing", None, ("@missing",)),
    ],
)
async def test_bad_filters_are_400_naming_option_and_position(
    stack: Stack, filter_text: str, position: int | None, words: tuple[str, ...]
) -> None:
    reply = await stack.get("TimeEntries?" + encoded(filter_text))
    assert reply.code == 400, reply.body
    error = reply.json()["error"]
    assert set(error) == {"code", "message", "target", "details"}
    assert error["target"] == "$filter"
    message = error["message"]
    assert "$filter" in message and "position" in message, message
    if position is not None:
        assert f"position {position}" in message, message
    for word in words:
        assert word in message, message


@pytest_twisted.ensureDeferred
async def test_a_pattern_that_backtracks_exponentially_is_400_and_the_service_goes_on(stack: Stack) -> None:
    # Each character matches three ways: 3**n attempts before the missing digit
    # rules a comment of n characters out (minutes for 20), where it used to
    # hold the reactor and with it every other request.
    reply = await stack.get("TimeEntries?" + encoded(r"matchesPattern(Comment,'^(.|.|.)*\d$')"))
    assert reply.code == 400, reply.body[:500]
    error = reply.json()["error"]
    assert error["code"] == "PatternTooCostly" and "matchesPattern" in error["message"], error
    assert (await stack.get("TimeEntries?$top=1&" + encoded(r"matchesPattern(Comment,'^\w')"))).code == 200


@pytest_twisted.ensureDeferred
async def test_a_long_or_list_of_chosen_values_as_power_bi_sends_it(stack: Stack) -> None:
    # Over 16 KB: parsed in a worker thread, evaluated as one set lookup.
    entries = stack.company.time_entries
    chosen = sorted({e.JobID for e in entries[::7]})
    unknown = [f"no-such-job-{i:04d}" for i in range(700)]
    filter_text = " or ".join(f"JobID eq '{job}'" for job in chosen + unknown)
    assert len(encoded(filter_text)) > 16 * 1024
    expected = [e.ID for e in entries if e.JobID in chosen]
    assert 0 < len(expected) < len(entries)
    assert await filtered_ids(stack, "TimeEntries", encoded(filter_text)) == (expected, len(expected))


@pytest_twisted.ensureDeferred
async def test_twelve_hundred_conditions_joined_by_and(stack: Stack) -> None:
    # The provider's plan split them recursively: a 500 (RecursionError) before.
    filter_text = " and ".join(["TimeEntries/any(t: t/Hours gt 0)"] * 1200)
    reply = await stack.get(f"Timesheets?$select=ID&{encoded(filter_text)}")
    assert reply.code == 200, reply.body[:300]
    entries = stack.company.time_entries
    with_hours = {
        sheet.ID
        for sheet in stack.company.timesheets
        if any(e.UserID == sheet.UserID and sheet.StartDate <= e.Date <= sheet.EndDate and e.Hours > 0 for e in entries)
    }
    assert 0 < len(with_hours) < len(stack.company.timesheets)
    assert {row["ID"] for row in reply.json()["value"]} == with_hours
