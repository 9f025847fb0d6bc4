"""
`iterate_pages` alone, over an in-memory list: reading pages ahead never
asks past the end or past ``max_rows``, never skips or repeats a row when
ClickTime answers with fewer rows than asked for, and without a count reads
one page at a time.
"""

from __future__ import annotations

from typing import Any, Optional

import pytest
import pytest_twisted  # type: ignore[import-untyped]  # no py.typed marker, no stubs
from twisted.internet.defer import Deferred

from odata_klein_plugins.clicktime.paging import Envelope, Page, iterate_pages


class Listing:
    """
    A paged list like ClickTime's: at most ``cap`` rows per answer, a count
    unless ``counted`` is false.  Answers wait until `answer` is called, so
    that what is in flight at each step can be seen.
    """

    def __init__(self, size: int, *, cap: int = 1000, counted: bool = True) -> None:
        self.rows = [{"ID": str(n)} for n in range(size)]
        self.cap = cap
        self.counted = counted
        self.asked: list[tuple[int, int]] = []
        self.waiting: list[tuple[int, int, Deferred[Envelope]]] = []
        self.answered_at_once: list[int] = []

    async def fetch(self, offset: int, limit: int) -> Envelope:
        self.asked.append((offset, limit))
        answer: Deferred[Envelope] = Deferred()
        self.waiting.append((offset, limit, answer))
        return await answer

    def answer(self) -> None:
        """Answer every request waiting, in the order they were made."""
        self.answered_at_once.append(len(self.waiting))
        waiting, self.waiting = self.waiting, []
        for offset, limit, answer in waiting:
            rows = self.rows[offset : offset + min(limit, self.cap)]
            page: dict[str, Any] = {"count": len(self.rows)} if self.counted else {}
            answer.callback({"data": rows, "page": page})


async def no_turn() -> None:
    return None


async def answered(listing: Listing, pages: Any) -> Any:
    """The pages of ``pages``, answering whatever is in flight whenever the reader waits."""
    while True:
        step = Deferred.fromCoroutine(pages.__anext__())
        listing.answer()
        try:
            yield await step
        except StopAsyncIteration:
            return


async def first_page(listing: Listing, ahead: int) -> tuple[Any, Page]:
    """Pages of 100 rows from the start of ``listing``, and the first of them, answered."""
    pages = iterate_pages(listing.fetch, offset=0, page_limit=100, max_rows=None, reactor_turn=no_turn, ahead=ahead)
    first = Deferred.fromCoroutine(pages.__anext__())
    listing.answer()
    return pages, await first


async def read_all(listing: Listing, *, ahead: int, page_limit: int, max_rows: Optional[int] = None) -> list[Any]:
    """Every row, answering whatever is in flight whenever the reader waits."""
    pages = iterate_pages(
        listing.fetch, offset=0, page_limit=page_limit, max_rows=max_rows, reactor_turn=no_turn, ahead=ahead
    )
    return [row["ID"] async for page in answered(listing, pages) for row in page.rows]


@pytest_twisted.ensureDeferred
async def test_pages_ahead_stay_within_the_count() -> None:
    listing = Listing(950)
    rows = await read_all(listing, ahead=3, page_limit=100)
    assert rows == [str(n) for n in range(950)]
    assert listing.asked == [(offset, 100) for offset in range(0, 1000, 100)]


@pytest_twisted.ensureDeferred
async def test_pages_ahead_stay_within_max_rows() -> None:
    listing = Listing(950)
    rows = await read_all(listing, ahead=3, page_limit=100, max_rows=250)
    assert rows == [str(n) for n in range(250)]
    assert listing.asked == [(0, 100), (100, 100), (200, 50)]


@pytest.mark.parametrize(("max_rows", "pages"), [(None, 10), (250, 3)])
@pytest_twisted.ensureDeferred
async def test_only_the_last_page_says_it_is_last(max_rows: Optional[int], pages: int) -> None:
    listing = Listing(950)
    iterated = iterate_pages(listing.fetch, offset=0, page_limit=100, max_rows=max_rows, reactor_turn=no_turn, ahead=3)
    lasts = [page.last async for page in answered(listing, iterated)]
    assert lasts == [False] * (pages - 1) + [True]


@pytest.mark.parametrize("ahead", [1, 2, 4])
@pytest_twisted.ensureDeferred
async def test_answers_shorter_than_asked_skip_and_repeat_nothing(ahead: int) -> None:
    # ClickTime caps pages below what was asked: pages go on from where each
    # answer really ended, in pages of the size ClickTime gives.
    listing = Listing(230, cap=40)
    rows = await read_all(listing, ahead=ahead, page_limit=100)
    assert rows == [str(n) for n in range(230)]
    assert listing.asked == [(0, 100), *((offset, 40) for offset in range(40, 230, 40))]


@pytest_twisted.ensureDeferred
async def test_a_list_that_changes_while_pages_are_asked_ahead_is_read_as_answered() -> None:
    # Rows 150-159 go away, and one comes, after three pages were asked
    # ahead and before they are answered: every row the list then holds
    # arrives once, in order, and the shorter count ends the read.
    listing = Listing(400)
    pages, first = await first_page(listing, ahead=3)
    rows = [row["ID"] for row in first.rows]
    assert len(listing.waiting) == 3
    del listing.rows[150:160]
    listing.rows.append({"ID": "late"})
    async for page in answered(listing, pages):
        rows.extend(row["ID"] for row in page.rows)
    assert rows == [row["ID"] for row in listing.rows]


@pytest_twisted.ensureDeferred
async def test_without_a_count_one_page_at_a_time() -> None:
    listing = Listing(250, counted=False)
    rows = await read_all(listing, ahead=4, page_limit=100)
    assert rows == [str(n) for n in range(250)]
    assert listing.answered_at_once == [1, 1, 1, 0]
    assert listing.asked == [(0, 100), (100, 100), (200, 100)]


@pytest_twisted.ensureDeferred
async def test_closing_cancels_every_page_in_flight() -> None:
    listing = Listing(1000)
    pages, first = await first_page(listing, ahead=3)
    assert first.offset == 0
    in_flight = [answer for _, _, answer in listing.waiting]
    assert len(in_flight) == 3
    await pages.aclose()
    assert all(answer.called for answer in in_flight)


@pytest_twisted.ensureDeferred
async def test_ahead_must_be_at_least_one() -> None:
    pages = iterate_pages(Listing(1).fetch, offset=0, page_limit=10, max_rows=None, reactor_turn=no_turn, ahead=0)
    with pytest.raises(ValueError):
        await pages.__anext__()
