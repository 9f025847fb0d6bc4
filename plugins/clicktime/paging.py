"""
ClickTime's ``limit``/``offset`` paging, with pages fetched ahead.

`iterate_pages` knows when to stop (``page.count``, ``page.links.next``, an
empty page, the caller's ``max_rows``) and keeps up to ``ahead`` requests in
flight while the consumer works on the page it was given, so that the
upstream's latency overlaps the consumer's processing and, over the
Internet, is paid about once per ``ahead`` pages.  It does not know about
HTTP: it calls a ``fetch(offset, limit)`` coroutine function that returns
ClickTime's envelope.

A request handed to Twisted only leaves when the reactor next runs, and the
consumer of a page computes without giving it a turn.  So after starting the
next request `iterate_pages` awaits ``reactor_turn()`` once before handing
over the page: without it the "prefetched" request went out only when the
consumer came back for it, and every page waited for ClickTime's full
latency.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import Any, AsyncGenerator, Awaitable, Callable, Coroutine, Deque, Mapping, Optional

from twisted.internet.defer import Deferred, ensureDeferred

from odata_klein.errors import BadGateway

Envelope = Mapping[str, Any]
Fetch = Callable[[int, int], Coroutine[Any, Any, Envelope]]


@dataclass(frozen=True)
class Page:
    """Rows of one upstream page; ``offset`` is the position of ``rows[0]``."""

    rows: list[dict[str, Any]]
    offset: int
    count: Optional[int]
    # No rows follow it in this iteration (set by `iterate_pages`).
    last: bool = False


def page_count(envelope: Envelope) -> Optional[int]:
    """``page.count``: how many rows the whole list has, when ClickTime tells."""
    paging = envelope.get("page")
    count = paging.get("count") if isinstance(paging, Mapping) else None
    return count if isinstance(count, int) and not isinstance(count, bool) else None


def read_page(envelope: Envelope, offset: int, limit: int) -> tuple[Page, bool]:
    """
    The page in ``envelope`` (asked for with ``offset`` and ``limit``) and
    whether ClickTime has rows after it.

    Without a ``page`` object the answer is not paged: nothing follows.  The
    end is known from ``links.next`` when ClickTime sends links, from
    ``count`` when it sends a count, and otherwise from a short page.
    """
    rows = envelope.get("data")
    if not isinstance(rows, list):
        raise BadGateway("ClickTime answered a list request without a list in 'data'")
    paging = envelope.get("page")
    if not isinstance(paging, Mapping):
        return Page(rows, offset, None), False
    count = page_count(envelope)
    following = offset + len(rows)
    more = bool(rows) and (count is None or following < count)
    links = paging.get("links")
    if isinstance(links, Mapping) and "next" in links:
        more = more and bool(links["next"])
    elif count is None:
        more = more and len(rows) >= limit
    return Page(rows, offset, count), more


async def iterate_pages(
    fetch: Fetch,
    *,
    offset: int,
    page_limit: int,
    max_rows: Optional[int],
    reactor_turn: Callable[[], Awaitable[object]],
    ahead: int = 1,
) -> AsyncGenerator[Page, None]:
    """
    Every page from ``offset`` on, at most ``max_rows`` rows in all (None: no
    limit), each request asking for at most ``page_limit`` rows.

    Up to ``ahead`` requests for the following pages are in flight while the
    consumer holds a page, and the reactor gets a turn to send new ones
    before the page is handed over.  Pages beyond the first are requested
    ahead only within ClickTime's ``page.count``; without a count, one at a
    time.  A page shorter than asked for though rows follow (ClickTime caps
    its pages lower, or the list changed meanwhile) drops the requests made
    ahead, whose offsets assumed full pages, and goes on from where that page
    ended, asking for pages of the size it got: no row is skipped or repeated
    on account of reading ahead.

    When the consumer stops early (``aclose``, an exception thrown in, or the
    generator being collected) the requests in flight are cancelled and their
    outcomes consumed, so no "Unhandled error in Deferred" is logged for them.
    """
    if page_limit < 1 or ahead < 1:
        raise ValueError("page_limit and ahead must be at least 1")
    if max_rows is not None and max_rows <= 0:
        return
    end = None if max_rows is None else offset + max_rows
    in_flight: Deque[tuple[Deferred[Envelope], int, int]] = deque()

    def request(at: int) -> int:
        """Request the page at ``at``; the offset after it."""
        limit = page_limit if end is None else min(page_limit, end - at)
        in_flight.append((ensureDeferred(fetch(at, limit)), at, limit))
        return at + limit

    def drop_in_flight() -> None:
        # Synchronous on purpose: this also runs when the generator is closed
        # by garbage collection, where awaiting is impossible.
        while in_flight:
            pending = in_flight.popleft()[0]
            pending.cancel()
            pending.addErrback(lambda _: None)

    unrequested = request(offset)
    try:
        while in_flight:
            current, at, limit = in_flight.popleft()
            page, more = read_page(await current, at, limit)
            following = at + len(page.rows)
            if end is not None and following > end:
                page = Page(page.rows[: end - at], page.offset, page.count)
                following = end
            more = more and (end is None or following < end)
            next_asked = in_flight[0][1] if in_flight else unrequested
            if not more or next_asked != following:
                drop_in_flight()
                unrequested = following
            if more and 0 < len(page.rows) < limit:
                # ClickTime caps its pages below what was asked: ask for that many from now on.
                page_limit = len(page.rows)
            if more:
                # Without a count, a page ahead might lie past the end.
                room = ahead if page.count is not None else 1
                requested = len(in_flight)
                while (
                    len(in_flight) < room
                    and (end is None or unrequested < end)
                    and (page.count is None or unrequested < page.count)
                ):
                    unrequested = request(unrequested)
                if len(in_flight) > requested:
                    await reactor_turn()
            yield replace(page, last=not more)
    finally:
        drop_in_flight()
