"""
ClickTime's ``limit``/``offset`` paging, with one page fetched ahead.

`iterate_pages` knows when to stop (``page.count``, ``page.links.next``, an
empty page, the caller's ``max_rows``) and keeps exactly one request in flight
while the consumer works on the page it was given, so that the upstream's
latency overlaps the consumer's processing without buffering more than one
page.  It does not know about HTTP: it calls a ``fetch(offset, limit)``
coroutine function that returns ClickTime's envelope.

A request handed to Twisted only leaves when the reactor next runs, and the
consumer of a page computes without giving it a turn.  So after starting the
next request `iterate_pages` awaits ``reactor_turn()`` once before handing
over the page: without it the "prefetched" request went out only when the
consumer came back for it, and every page waited for ClickTime's full
latency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncGenerator, Awaitable, Callable, Coroutine, Mapping, Optional

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
) -> AsyncGenerator[Page, None]:
    """
    Every page from ``offset`` on, at most ``max_rows`` rows in all (None: no
    limit), each request asking for at most ``page_limit`` rows.

    The request for the next page starts, and the reactor gets a turn to send
    it, before the current page is yielded.
    When the consumer stops early (``aclose``, an exception thrown in, or the
    generator being collected) that request is cancelled and its outcome
    consumed, so no "Unhandled error in Deferred" is logged for it.
    """
    if page_limit < 1:
        raise ValueError("page_limit must be at least 1")
    remaining = max_rows

    def request(at: int) -> tuple["Deferred[Envelope]", int]:
        limit = page_limit if remaining is None else min(page_limit, remaining)
        return ensureDeferred(fetch(at, limit)), limit

    if remaining is not None and remaining <= 0:
        return
    pending: Optional[Deferred[Envelope]]
    pending, limit = request(offset)
    try:
        while pending is not None:
            current, pending = pending, None
            envelope = await current
            page, more = read_page(envelope, offset, limit)
            if remaining is not None:
                if len(page.rows) > remaining:
                    page = Page(page.rows[:remaining], page.offset, page.count)
                remaining -= len(page.rows)
                more = more and remaining > 0
            if more:
                offset += len(page.rows)
                pending, limit = request(offset)
                await reactor_turn()
            yield page
    finally:
        # Synchronous on purpose: this also runs when the generator is closed
        # by garbage collection, where awaiting is impossible.
        if pending is not None:
            pending.cancel()
            pending.addErrback(lambda _: None)

