"""
Pages that end on time: a page the service fills by filtering out most rows
ends after its time with the rows it has and resumes after the last row
scanned, first with a fake clock, then through the real stack, where
following every nextLink must give exactly the rows of an unlimited read.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Optional
from urllib.parse import quote

import pytest_twisted  # type: ignore[import-untyped]  # no py.typed marker, no stubs
import treq
from twisted.internet.task import Clock

from harness import ADMIN_TOKEN, STANDARD_TOKEN, TreqHeaders, basic, records_of, small_company, start_stack
from odata_klein.pagetext import Batch, PageEnd, TimeLimit, page_chunks


class Scan:
    """
    Upstream batches of ``size`` rows numbered from 1 (a row's cursor is
    its number), of which only the multiples of ``keep_every`` are kept;
    every batch takes ``seconds`` on ``clock``.
    """

    def __init__(self, clock: Clock, *, rows: int, size: int, keep_every: int, seconds: float) -> None:
        self.clock = clock
        self.rows, self.size, self.keep_every, self.seconds = rows, size, keep_every, seconds
        self.scanned: Optional[int] = None

    async def next_batch(self) -> Batch:
        start = 1 if self.scanned is None else self.scanned + 1
        if start > self.rows:
            return None
        numbers = range(start, min(start + self.size, self.rows + 1))
        self.clock.advance(self.seconds)
        self.scanned = numbers[-1]
        return [(str(n), n) for n in numbers if n % self.keep_every == 0]


async def read_page(scan: Scan, *, seconds: Optional[float], skip: int = 0, take: Optional[int] = None) -> tuple[list[int], PageEnd]:
    end = PageEnd()
    limit = TimeLimit(scan.clock, seconds, lambda: scan.scanned) if seconds is not None else None
    chunks = [
        chunk
        async for chunk in page_chunks(
            scan.next_batch, skip=skip, take=take, encode=None, attach_related=None, end=end, time_limit=limit
        )
    ]
    text = b"".join(chunks).decode()
    return ([int(n) for n in text.split(",")] if text else []), end


@pytest_twisted.ensureDeferred
async def test_a_page_ends_after_the_batch_during_which_its_time_ran_out() -> None:
    scan = Scan(Clock(), rows=100, size=10, keep_every=7, seconds=10)
    rows, end = await read_page(scan, seconds=25, take=1000)
    # Batches end at 10, 20 and 30 seconds: the third is the last.
    assert rows == [7, 14, 21, 28]
    assert (end.more, end.last_cursor, end.emitted, end.rest) == (True, 30, 4, [])


@pytest_twisted.ensureDeferred
async def test_a_page_that_found_nothing_in_its_time_resumes_after_what_it_scanned() -> None:
    scan = Scan(Clock(), rows=100, size=10, keep_every=1000, seconds=10)
    rows, end = await read_page(scan, seconds=0, take=1000)
    assert rows == [] and (end.more, end.last_cursor) == (True, 10)


@pytest_twisted.ensureDeferred
async def test_a_page_ending_on_time_while_skipping_tells_how_many_rows_are_left_to_skip() -> None:
    scan = Scan(Clock(), rows=100, size=10, keep_every=7, seconds=10)
    rows, end = await read_page(scan, seconds=0, skip=5, take=1000)
    # 7 is skipped in the first batch; 14, 21, 28 and 35 are still to skip.
    assert rows == [] and (end.more, end.last_cursor, end.skip_left) == (True, 10, 4)
    rows, end = await read_page(Scan(Clock(), rows=100, size=10, keep_every=7, seconds=10), seconds=25, skip=3)
    assert rows == [28] and (end.more, end.last_cursor, end.skip_left) == (True, 30, 0)


@pytest_twisted.ensureDeferred
async def test_a_page_that_fills_in_time_ends_as_without_a_limit() -> None:
    scan = Scan(Clock(), rows=100, size=10, keep_every=2, seconds=1)
    rows, end = await read_page(scan, seconds=25, take=8)
    assert rows == [2, 4, 6, 8, 10, 12, 14, 16]
    assert (end.more, end.last_cursor, [cursor for _, cursor in end.rest]) == (True, 16, [18, 20])
    whole, unlimited = await read_page(Scan(Clock(), rows=100, size=10, keep_every=2, seconds=100), seconds=None)
    assert whole == list(range(2, 101, 2)) and not unlimited.more


# --- through the service -----------------------------------------------------------------------------


async def pages_of(url: str, *, token: str = ADMIN_TOKEN, page_size: Optional[int] = None) -> list[dict[str, Any]]:
    """Every page from ``url`` on, following nextLinks."""
    headers: TreqHeaders = {"Authorization": basic(token)}
    if page_size is not None:
        headers["Prefer"] = f"odata.maxpagesize={page_size}"
    pages: list[dict[str, Any]] = []
    next_url: Optional[str] = url
    while next_url is not None:
        response = await treq.get(next_url, headers=headers)
        page: dict[str, Any] = await response.json()
        assert response.code == 200, page
        pages.append(page)
        next_url = page.get("@odata.nextLink")
    return pages


async def read_all(url: str, page_size: Optional[int] = None) -> tuple[list[str], list[int]]:
    """The IDs of every page from ``url`` on, and each page's size."""
    pages = await pages_of(url, page_size=page_size)
    return [row["ID"] for page in pages for row in page["value"]], [len(page["value"]) for page in pages]


@pytest_twisted.ensureDeferred
async def test_pages_ending_on_time_together_hold_exactly_the_matching_rows() -> None:
    company = small_company(entries=2500)
    # No time at all: every page ends after one upstream page of 500 entries.
    stack = await start_stack(company, page_size=1000, page_seconds=0)
    try:
        # The service evaluates this filter itself: ClickTime has no such filter.
        matching = [entry.ID for entry in records_of(company, "TimeEntries") if entry.Hours > Decimal(6)]
        assert 0 < len(matching) < 500
        ids, sizes = await read_all(stack.url + "TimeEntries?$select=ID&$filter=" + quote("Hours gt 6"))
        assert ids == matching
        # One page per ClickTime page, and none after the last: ClickTime said nothing follows.
        assert len(sizes) == 5 and max(sizes) < len(matching)
        # $top counts across pages, and what is left of $skip goes on in the nextLink.
        skip = len(matching) // 2
        url = stack.url + f"TimeEntries?$select=ID&$top=100&$skip={skip}&$filter=" + quote("Hours gt 6")
        ids, sizes = await read_all(url)
        assert ids == matching[skip : skip + 100]
        assert sizes[0] == 0
        # Without a filter ClickTime skips, by its offset: nothing is left to skip on time.
        ids, sizes = await read_all(stack.url + "TimeEntries?$select=ID&$skip=1200&$top=100")
        assert ids == [entry.ID for entry in records_of(company, "TimeEntries")][1200:1300]
        assert sizes == [100]
        # Pages that end on their size leave rows for the next, read ahead:
        # those come first, and the page after them ends on time.
        everything = [entry.ID for entry in records_of(company, "TimeEntries") if entry.Hours >= 0]
        ids, sizes = await read_all(
            stack.url + "TimeEntries?$select=ID&$filter=" + quote("Hours ge 0") + "&$top=2400", page_size=200
        )
        assert ids == everything[:2400]
        assert sizes[:6] == [200, 200, 100, 200, 200, 100]
    finally:
        await stack.stop()


async def every_row(url: str, token: str) -> tuple[list[dict[str, Any]], Optional[int]]:
    """Every row from ``url`` on, in pages of 700, and the first page's @odata.count."""
    pages = await pages_of(url, token=token, page_size=700)
    return [row for page in pages for row in page["value"]], pages[0].get("@odata.count")


@pytest_twisted.ensureDeferred
async def test_ending_pages_on_time_changes_where_pages_end_never_the_rows() -> None:
    company = small_company(entries=2500)
    on_time = await start_stack(company, page_size=1000, page_seconds=0)
    whole = await start_stack(company, page_size=1000)
    try:
        for query in (
            "TimeEntries?$filter=Hours gt 6&$expand=Job($select=Name),User($select=Name)&$select=ID,Hours",
            "TimeEntries?$search=review OR meeting&$select=ID,Comment&$count=true",
            "TimeEntries?$compute=Hours mul 2 as Double&$filter=Double gt 13&$select=ID,Double&$skip=30&$top=200",
            "TimeEntries?$orderby=Date desc&$filter=Hours lt 1&$select=ID,Date",
            "TimeEntries?$filter=CustomField_Overtime eq true&$select=ID,CustomFieldsStr&$count=true",
            "Timesheets?$filter=Status eq 'Approved' and StartDate ge 2026-01-01&$select=ID,UserID",
            "Jobs?$filter=contains(Name,'a')&$select=ID,Name&$skip=3",
        ):
            url = quote(query, safe="?$=&(),'/:@*;")
            for token in (ADMIN_TOKEN, STANDARD_TOKEN):
                ended, count = await every_row(on_time.url + url, token)
                assert ended or token == STANDARD_TOKEN, query  # each query finds rows for the admin
                assert (ended, count) == await every_row(whole.url + url, token), (query, token)
    finally:
        await on_time.stop()
        await whole.stop()
