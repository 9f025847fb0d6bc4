"""$expand, $orderby and navigation in $filter over HTTP, against the simulator's records."""

from __future__ import annotations

from decimal import Decimal
from typing import AsyncIterator
from urllib.parse import quote

import pytest
import pytest_twisted  # type: ignore[import-untyped]  # no py.typed marker, no stubs

from harness import Stack, small_company, start_stack


@pytest_twisted.async_yield_fixture(scope="module")
async def stacks() -> AsyncIterator[tuple[Stack, Stack]]:
    company = small_company()
    with_pushdown = await start_stack(company, page_size=1000)
    without = await start_stack(company, page_size=1000, pushdown=False)
    yield with_pushdown, without
    await with_pushdown.stop()
    await without.stop()


@pytest.fixture
def stack(stacks: tuple[Stack, Stack]) -> Stack:
    return stacks[0]


def q(text: str) -> str:
    return quote(text, safe="?$=&(),'/:@*;")


async def all_rows(stack: Stack, url: str) -> list[dict]:
    rows: list[dict] = []
    next_url = q(url)
    while next_url:
        reply = await stack.get(next_url)
        assert reply.code == 200, reply.body
        body = reply.json()
        rows += body["value"]
        next_url = body.get("@odata.nextLink")
    return rows


@pytest_twisted.ensureDeferred
async def test_power_bi_style_expand(stack: Stack) -> None:
    jobs = {job.ID: job for job in stack.company.jobs}
    reply = await stack.get(q("TimeEntries?$select=ID,Hours,Job&$expand=Job($select=Name,ClientID)&$top=300"))
    body = reply.json()
    assert body["@odata.context"] == f"{stack.url}$metadata#TimeEntries(ID,Hours,Job,Job(Name,ClientID))"
    for row, entry in zip(body["value"], stack.company.time_entries):
        assert row["ID"] == entry.ID
        assert row["Job"] == {"Name": jobs[entry.JobID].Name, "ClientID": jobs[entry.JobID].ClientID}


@pytest_twisted.ensureDeferred
async def test_nested_expand_and_single_entity(stack: Stack) -> None:
    entry = stack.company.time_entries[0]
    job = next(j for j in stack.company.jobs if j.ID == entry.JobID)
    client = next(c for c in stack.company.clients if c.ID == job.ClientID)
    body = (await stack.get(q(f"TimeEntries('{entry.ID}')?$expand=Job($expand=Client($select=Name)),User($select=Name)"))).json()
    assert body["Job"]["Client"] == {"Name": client.Name}
    assert body["User"]["Name"] == next(u.Name for u in stack.company.users if u.ID == entry.UserID)


@pytest_twisted.ensureDeferred
async def test_orderby_sorts_the_whole_result(stack: Stack) -> None:
    rows = await all_rows(stack, "TimeEntries?$orderby=Hours desc,Date,ID&$select=ID")
    expected = sorted(stack.company.time_entries, key=lambda e: (-Decimal(str(e.Hours)), e.Date, e.ID))
    assert [row["ID"] for row in rows] == [e.ID for e in expected]
    body = (await stack.get(q("TimeEntries?$orderby=Comment&$top=5&$skip=3&$select=ID,Comment"))).json()
    # OData sorts null first in ascending order, strings by code point.
    by_comment = sorted(stack.company.time_entries, key=lambda e: (e.Comment is not None, e.Comment or ""))
    assert [row["ID"] for row in body["value"]] == [e.ID for e in by_comment[3:8]]
    assert "@odata.nextLink" not in body


@pytest_twisted.ensureDeferred
async def test_orderby_of_more_than_32_items_is_400(stack: Stack) -> None:
    items = ["Hours desc", "Date", "ID"] * 10 + ["Comment", "JobID"]
    assert (await stack.get(q("TimeEntries?$top=1&$orderby=" + ",".join(items)))).code == 200
    reply = await stack.get(q("TimeEntries?$top=1&$orderby=" + ",".join(items + ["TaskID"])))
    assert reply.code == 400
    error = reply.json()["error"]
    assert error["target"] == "$orderby" and "$orderby may name at most 32 items, not 33" in error["message"]
    nested = ",".join(items + ["TaskID"])
    reply = await stack.get(q(f"Timesheets?$top=1&$expand=TimeEntries($orderby={nested})"))
    assert reply.code == 400 and "at most 32 items" in reply.json()["error"]["message"]


@pytest_twisted.ensureDeferred
async def test_orderby_through_navigation(stack: Stack) -> None:
    jobs = {job.ID: job.Name for job in stack.company.jobs}
    rows = await all_rows(stack, "TimeEntries?$orderby=Job/Name,ID&$select=ID,JobID")
    expected = sorted(stack.company.time_entries, key=lambda e: (jobs[e.JobID], e.ID))
    assert [row["ID"] for row in rows] == [e.ID for e in expected]


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("pushdown", [True, False], ids=["pushdown", "engine"])
async def test_filter_through_navigation(stacks: tuple[Stack, Stack], pushdown: bool) -> None:
    stack = stacks[0] if pushdown else stacks[1]
    company = stack.company
    client = company.clients[3]
    jobs = {job.ID: job for job in company.jobs}
    expected = [e.ID for e in company.time_entries if jobs[e.JobID].ClientID == client.ID]
    rows = await all_rows(stack, f"TimeEntries?$filter=Job/Client/Name eq '{client.Name.replace(chr(39), chr(39) * 2)}'&$select=ID")
    assert [row["ID"] for row in rows] == expected
    count = await stack.get(q(f"TimeEntries/$count?$filter=Job/ClientID eq '{client.ID}'"))
    assert count.body == str(len(expected)).encode()


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("pushdown", [True, False], ids=["pushdown", "engine"])
async def test_lambda_over_collection_navigation(stacks: tuple[Stack, Stack], pushdown: bool) -> None:
    stack = stacks[0] if pushdown else stacks[1]
    company = stack.company
    entries_of = {
        sheet.ID: [e for e in company.time_entries if e.UserID == sheet.UserID and sheet.StartDate <= e.Date <= sheet.EndDate]
        for sheet in company.timesheets[:60]
    }
    ids = ",".join(f"'{sheet_id}'" for sheet_id in entries_of)
    rows = await all_rows(stack, f"Timesheets?$filter=ID in ({ids}) and TimeEntries/any(t: t/Hours gt 8)&$select=ID")
    expected = [s.ID for s in company.timesheets if s.ID in entries_of and any(e.Hours > 8 for e in entries_of[s.ID])]
    assert [row["ID"] for row in rows] == expected


@pytest_twisted.ensureDeferred
async def test_select_members_of_custom_fields(stack: Stack) -> None:
    entries = [e for e in stack.company.time_entries if e.CustomFields][:50]
    field_name = next(iter(entries[0].CustomFields))
    ids = ",".join(f"'{e.ID}'" for e in entries)
    for select in (f"ID,CustomFields/{field_name}", f"ID,CustomFields($select={field_name})"):
        body = (await stack.get(q(f"TimeEntries?$filter=ID in ({ids})&$select={select}"))).json()
        assert body["@odata.context"] == f"{stack.url}$metadata#TimeEntries(ID,CustomFields/{field_name})"
        for row, entry in zip(body["value"], entries):
            assert row == {"ID": entry.ID, "CustomFields": {field_name: entry.CustomFields[field_name]}}
    whole = (await stack.get(q(f"TimeEntries?$filter=ID in ({ids})&$select=CustomFields,CustomFields/{field_name}"))).json()
    assert whole["value"][0]["CustomFields"] == entries[0].CustomFields
    for bad in ("Hours/Foo", "CustomFields($filter=Phase eq 'x')"):
        assert (await stack.get(q(f"TimeEntries?$select={bad}"))).code == 400


@pytest_twisted.ensureDeferred
async def test_root_paths_in_filters(stack: Stack) -> None:
    pivot = stack.company.time_entries[10]
    expected = [e.ID for e in stack.company.time_entries if e.Hours > pivot.Hours and e.UserID == pivot.UserID]
    rows = await all_rows(
        stack,
        f"TimeEntries?$filter=Hours gt $root/TimeEntries('{pivot.ID}')/Hours and "
        f"UserID eq $root/TimeEntries('{pivot.ID}')/UserID&$select=ID",
    )
    assert [row["ID"] for row in rows] == expected
    missing = await stack.get(q("TimeEntries?$filter=Hours gt $root/TimeEntries('nope')/Hours"))
    assert missing.code == 404
    entity = await stack.get(q(f"TimeEntries?$filter=Job eq $root/TimeEntries('{pivot.ID}')"))
    assert entity.code == 400 and entity.json()["error"]["target"] == "$filter"


@pytest_twisted.ensureDeferred
async def test_explanation_on_request(stack: Stack) -> None:
    """The console asks for OdataKlein.explain: what ClickTime applied and what the service evaluated."""
    entry = stack.company.time_entries[0]
    url = q(f"TimeEntries?$filter=UserID eq '{entry.UserID}' and Hours gt 2&$search=the&$select=ID")
    plain = (await stack.get(url)).json()
    assert "@OdataKlein.explain" not in plain
    reply = await stack.get(url, headers={"Prefer": 'odata.include-annotations="OdataKlein.explain"'})
    assert reply.header("preference-applied") == 'odata.include-annotations="OdataKlein.explain"'
    explain = reply.json()["@OdataKlein.explain"]
    assert any("UserID" in note for note in explain["pushedDown"])
    assert any("Hours gt 2" in note for note in explain["evaluatedByService"])
    assert "$search on every text property" in explain["evaluatedByService"]
    time_entry_calls = [call for call in explain["upstreamRequests"] if call["url"].endswith("/TimeEntries")]
    assert time_entry_calls and ["UserID", entry.UserID] in time_entry_calls[0]["params"]
    assert explain["rowsWritten"] == len(reply.json()["value"])
    assert "test-admin-token" not in reply.body.decode()


EXPLAIN = {"Prefer": 'odata.include-annotations="OdataKlein.explain"'}


async def explained(stack: Stack, url: str, headers: dict[str, str] = EXPLAIN) -> tuple[list[str], list[dict]]:
    """The IDs of one page, and its requests for TimeEntries pages as ClickTime got them."""
    body = (await stack.get(q(url), headers=headers)).json()
    calls = [call for call in body["@OdataKlein.explain"]["upstreamRequests"] if call["url"].endswith("/TimeEntries")]
    return [row["ID"] for row in body["value"]], [dict(call["params"]) for call in calls]


@pytest_twisted.ensureDeferred
async def test_skip_is_clicktimes_offset_when_it_applies_the_whole_filter(stack: Stack) -> None:
    entries = stack.company.time_entries
    ids, calls = await explained(stack, "TimeEntries?$skip=1200&$top=100&$select=ID")
    assert ids == [e.ID for e in entries[1200:1300]]
    assert [(call["offset"], call["limit"]) for call in calls] == [("1200", "101")]
    user = entries[0].UserID
    mine = [e.ID for e in entries if e.UserID == user]
    ids, calls = await explained(stack, f"TimeEntries?$filter=UserID eq '{user}'&$skip=20&$top=10&$select=ID")
    assert ids == mine[20:30] and calls[0]["offset"] == "20"
    # A filter the service evaluates: it skips the matching rows itself.
    long_days = [e.ID for e in entries if e.Hours > 6]
    ids, calls = await explained(stack, "TimeEntries?$filter=Hours gt 6&$skip=20&$top=10&$select=ID")
    assert ids == long_days[20:30] and calls[0]["offset"] == "0"
    # The service's copy of a reference set skips as well.
    jobs = [job.ID for job in stack.company.jobs if job.IsActive]
    rows = await all_rows(stack, "Jobs?$filter=IsActive eq true&$skip=3&$select=ID")
    assert [row["ID"] for row in rows] == jobs[3:]
    # $skip beside a $skiptoken: after the token's rows, also for a page that is read on.
    pages = {"Prefer": "odata.maxpagesize=100"}
    first = (await stack.get(q("TimeEntries?$select=ID&$top=200"), headers=pages)).json()
    second = (await stack.get(first["@odata.nextLink"] + "&$skip=50", headers=pages)).json()
    assert [row["ID"] for row in second["value"]] == [e.ID for e in entries[150:250]]
    assert "@odata.nextLink" not in second  # $top is used up


@pytest_twisted.ensureDeferred
async def test_the_order_clicktime_lists_in_needs_no_sorting_and_pages(stack: Stack) -> None:
    entries = stack.company.time_entries
    newest_first = sorted(entries, key=lambda e: e.Date, reverse=True)
    pages = {"Prefer": "odata.maxpagesize=1000"}
    body = (await stack.get(q("TimeEntries?$orderby=Date desc&$select=ID"), headers={**pages, **EXPLAIN})).json()
    assert not any("$orderby" in work for work in body["@OdataKlein.explain"]["evaluatedByService"])
    assert len(body["value"]) == 1000 and "$orderby=Date%20desc" in body["@odata.nextLink"]
    rows = await all_rows(stack, "TimeEntries?$orderby=Date desc&$select=ID,Date")
    assert [row["ID"] for row in rows] == [e.ID for e in newest_first]
    # Any other order is sorted, whole, in one response.
    oldest_first = await stack.get(q("TimeEntries?$orderby=Date&$select=ID"), headers=EXPLAIN)
    body = oldest_first.json()
    assert "@odata.nextLink" not in body and len(body["value"]) == len(entries)
    assert [row["ID"] for row in body["value"]] == [e.ID for e in sorted(entries, key=lambda e: e.Date)]
    assert any("$orderby" in work for work in body["@OdataKlein.explain"]["evaluatedByService"])
    # Through navigation the provider's order is not known: sorted there too.
    sheet = next(s for s in stack.company.timesheets if any(e.UserID == s.UserID for e in entries))
    nested = (await stack.get(q(f"Timesheets('{sheet.ID}')/TimeEntries?$orderby=Date desc&$select=Date"))).json()
    dates = [row["Date"] for row in nested["value"]]
    assert dates == sorted(dates, reverse=True)


@pytest_twisted.ensureDeferred
async def test_plus_as_a_plus_sign_and_form_encoded_spaces(stack: Stack) -> None:
    """'+' is a plus sign (offsets); a query that only parses with '+' as a space is read that way."""
    expected = [e.ID for e in stack.company.time_entries if e.Date >= "2026-02-03" and e.Hours > 9]
    literal = await all_rows(stack, "TimeEntries?$filter=Date ge 2026-02-03T00:00:00+01:00 and Hours gt 9&$select=ID")
    assert [row["ID"] for row in literal] == expected
    form = await stack.get("TimeEntries?$filter=Date+ge+2026-02-03T00:00:00%2B01:00+and+Hours+gt+9&$select=ID&$top=5000")
    assert form.code == 200 and [row["ID"] for row in form.json()["value"]] == expected
    still_wrong = await stack.get("TimeEntries?$filter=Hours+gt")
    assert still_wrong.code == 400 and "'+gt'" in still_wrong.json()["error"]["message"]


@pytest_twisted.ensureDeferred
async def test_ordered_top_and_count_only(stack: Stack) -> None:
    expected = sorted(stack.company.time_entries, key=lambda e: (-e.Hours, e.ID))
    body = (await stack.get(q("TimeEntries?$orderby=Hours desc,ID&$skip=10&$top=15&$select=ID"))).json()
    assert [row["ID"] for row in body["value"]] == [e.ID for e in expected[10:25]]
    empty = (await stack.get(q("TimeEntries?$orderby=Hours&$top=0&$count=true"))).json()
    assert empty["value"] == [] and empty["@odata.count"] == len(expected)
