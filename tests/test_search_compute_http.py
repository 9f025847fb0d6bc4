"""$search and $compute over HTTP, checked against the simulator's records."""

from __future__ import annotations

from decimal import Decimal
from typing import AsyncIterator
from urllib.parse import quote

import pytest_twisted  # type: ignore[import-untyped]  # no py.typed marker, no stubs

from harness import Stack, start_stack
from odata_klein_plugins.clicktime.simulator import Client, TimeEntry


@pytest_twisted.async_yield_fixture(scope="module")
async def stack() -> AsyncIterator[Stack]:
    running = await start_stack(page_size=1000)
    yield running
    await running.stop()


def q(text: str) -> str:
    return quote(text, safe="?$=&(),'/")


def _text(record: Client | TimeEntry) -> str:
    values = [v for k, v in record._asdict().items() if isinstance(v, str)]
    values += [v for v in (record.CustomFields or {}).values() if isinstance(v, str)]
    return "\0".join(values).casefold()


@pytest_twisted.ensureDeferred
async def test_search_terms_phrases_and_operators(stack: Stack) -> None:
    clients = stack.company.clients
    word = clients[0].Name.split()[0]
    expected = [c.ID for c in clients if word.casefold() in _text(c)]
    body = (await stack.get(q(f"Clients?$search={word}&$count=true"))).json()
    assert [row["ID"] for row in body["value"]] == expected and body["@odata.count"] == len(expected)

    phrase = clients[1].Name
    expected = [c.ID for c in clients if phrase.casefold() in _text(c)]
    body = (await stack.get(q(f'Clients?$search="{phrase}"'))).json()
    assert [row["ID"] for row in body["value"]] == expected and expected

    a, b = clients[0].Name.split()[0], clients[2].Name.split()[0]
    expected = [c.ID for c in clients if (a.casefold() in _text(c) or b.casefold() in _text(c))]
    body = (await stack.get(q(f"Clients?$search={a} OR {b}"))).json()
    assert [row["ID"] for row in body["value"]] == expected

    expected = [c.ID for c in clients if a.casefold() not in _text(c)]
    body = (await stack.get(q(f"Clients?$search=NOT {a}"))).json()
    assert [row["ID"] for row in body["value"]] == expected


@pytest_twisted.ensureDeferred
async def test_search_pages_and_counts_over_time_entries(stack: Stack) -> None:
    expected = [e.ID for e in stack.company.time_entries if "sprint" in _text(e)]
    assert len(expected) > 5
    reply = await stack.get(q("TimeEntries/$count?$search=sprint"))
    assert reply.body == str(len(expected)).encode()
    body = (await stack.get(q("TimeEntries?$search=sprint&$top=5"))).json()
    assert [row["ID"] for row in body["value"]] == expected[:5]


@pytest_twisted.ensureDeferred
async def test_compute_in_select_and_filter(stack: Stack) -> None:
    url = q("TimeEntries?$compute=Hours add BreakTime as Total&$select=ID,Total&$filter=Total gt 9")
    body = (await stack.get(url)).json()
    expected = [
        (e.ID, Decimal(str(e.Hours)) + Decimal(str(e.BreakTime)))
        for e in stack.company.time_entries
        if Decimal(str(e.Hours)) + Decimal(str(e.BreakTime)) > 9
    ]
    assert [(row["ID"], Decimal(str(row["Total"]))) for row in body["value"]] == expected[:1000]
    assert body["@odata.context"].endswith("$metadata#TimeEntries(ID,Total)")
    assert set(body["value"][0]) == {"ID", "Total"}


@pytest_twisted.ensureDeferred
async def test_compute_errors(stack: Stack) -> None:
    for url in ("TimeEntries?$compute=Hours add 1 as Hours", "TimeEntries?$compute=Nope add 1 as X"):
        reply = await stack.get(q(url))
        assert reply.code == 400 and reply.json()["error"]["target"] == "$compute"


def doubling(levels: int) -> str:
    """$compute aliases each twice the one before: A0 is Comment twice, A1 four times..."""
    items = ["concat(Comment,Comment) as A0"] + [f"concat(A{i - 1},A{i - 1}) as A{i}" for i in range(1, levels)]
    return ",".join(items)


@pytest_twisted.ensureDeferred
async def test_computed_properties_may_build_on_each_other(stack: Stack) -> None:
    entry = next(e for e in stack.company.time_entries if e.Comment)
    url = q(f"TimeEntries('{entry.ID}')?$compute={doubling(4)}&$select=A3")
    reply = await stack.get(url)
    assert reply.code == 200, reply.body[:300]
    assert reply.json()["A3"] == entry.Comment * 16


@pytest_twisted.ensureDeferred
async def test_computed_properties_that_double_thirty_times_are_refused(stack: Stack) -> None:
    # Two to the thirtieth copies of a comment per row: the service would run out of memory.
    reply = await stack.get(q(f"TimeEntries?$top=1&$compute={doubling(30)}&$select=ID,A29"))
    assert reply.code == 400, reply.body[:300]
    error = reply.json()["error"]
    assert error["target"] == "$compute" and "10,000 terms" in error["message"], error
