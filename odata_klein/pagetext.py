"""
The entities of one response page, as JSON text.

`page_chunks` reads (row, cursor) batches, skips and counts rows, attaches
expanded entities and encodes them: the part of a collection response that
grows with the result.  It writes nothing and closes nothing itself, so that
the service can stream it straight to the client or read a next page ahead
(`odata_klein.readahead`), going on with the same rows where the page ended.

A page may also end on time (`TimeLimit`): when the service evaluates a
filter that few rows match, filling a page can mean scanning millions of
upstream rows, longer than clients wait (Power BI gives a request 600 s,
proxies often 60 s between bytes).  Such a page ends with the rows it has
and a nextLink resuming after the last row scanned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Coroutine, Optional, Union, cast

from twisted.internet.interfaces import IReactorTime

from .interfaces import Cursor, Row

# A row, or its JSON text when the provider's records come written already.
Entity = Union[Row, str]
Batch = Optional[list[tuple[Entity, Cursor]]]
# How long a page may take to fill before it ends with what it has: well
# inside Power BI's 600 s per request, and the 60 s between bytes after
# which proxies (nginx's default) give up on a response.
DEFAULT_PAGE_SECONDS = 30
Guard = Callable[[Coroutine[Any, Any, Any]], Awaitable[Any]]


@dataclass
class PageEnd:
    """How a page ended, known once its chunks are exhausted."""

    emitted: int = 0
    # Resumes right after the last row emitted.
    last_cursor: Cursor = None
    # Rows follow the last one emitted.
    more: bool = False
    # The rows read after the last one emitted (the next page's first).
    rest: list[tuple[Entity, Cursor]] = field(default_factory=list)
    # Rows still to skip after ``last_cursor``, when the page ended on time while skipping.
    skip_left: int = 0


@dataclass(frozen=True)
class TimeLimit:
    """
    End a page ``seconds`` after it starts, at the end of the batch then
    being read, resuming at ``scanned()``: the cursor after the last row
    read, kept or not (None: the page goes on).
    """

    clock: IReactorTime
    seconds: float
    scanned: Callable[[], Cursor]

    def started(self) -> Callable[[], Cursor]:
        """From now on: the cursor to end the page at, once the time is up (None until then)."""
        ends_at = self.clock.seconds() + self.seconds

        def resume_at() -> Cursor:
            return self.scanned() if self.clock.seconds() >= ends_at else None

        return resume_at


async def unguarded(work: Coroutine[Any, Any, Any]) -> Any:
    return await work


async def page_chunks(
    next_batch: Callable[[], Coroutine[Any, Any, Batch]],
    *,
    skip: int,
    take: Optional[int],
    encode: Optional[Callable[[Row], str]],
    attach_related: Optional[Callable[[list[Row]], Coroutine[Any, Any, None]]],
    end: PageEnd,
    guard: Guard = unguarded,
    time_limit: Optional[TimeLimit] = None,
) -> AsyncIterator[bytes]:
    """
    UTF-8 chunks of the page's entities, comma-separated (every chunk after
    the first starts with a comma): ``skip`` rows dropped, then ``take`` rows
    at most (None: all), ending early on ``time_limit``.  ``end`` is filled
    in as rows go.  ``guard`` wraps every wait for rows.  ``encode`` None:
    the rows come written already.
    """
    resume_at = time_limit.started() if time_limit is not None else None
    while not end.more and take != 0 and (batch := await guard(next_batch())) is not None:
        # Slices rather than a test per row: batches are whole upstream pages.
        if skip:
            dropped = min(skip, len(batch))
            skip -= dropped
            batch = batch[dropped:]
        if take is not None and len(batch) > take - end.emitted:
            end.more = True
            end.rest = batch[take - end.emitted :]
            batch = batch[: take - end.emitted]
        if batch:
            yield await _encoded(batch, encode, attach_related, end, guard)
        if resume_at is not None and not end.more and (cursor := resume_at()) is not None:
            end.more = True
            end.last_cursor = cursor
            end.skip_left = skip


async def _encoded(
    batch: list[tuple[Entity, Cursor]],
    encode: Optional[Callable[[Row], str]],
    attach_related: Optional[Callable[[list[Row]], Coroutine[Any, Any, None]]],
    end: PageEnd,
    guard: Guard,
) -> bytes:
    """The chunk of a batch's rows, counted in ``end``."""
    kept = [row for row, _ in batch]
    first = end.emitted == 0
    end.emitted += len(kept)
    end.last_cursor = batch[-1][1]
    if attach_related is not None:
        await guard(attach_related(cast(list[Row], kept)))
    # Row by row: one row with text beyond Latin-1 would make a joined
    # page wide, and encoding it to UTF-8 costs ten times as much.
    if encode is None:
        encoded = [cast(str, row).encode("utf-8") for row in kept]
    else:
        encoded = [encode(cast(Row, row)).encode("utf-8") for row in kept]
    if not first:
        encoded.insert(0, b"")  # the comma after the previous batch
    return b",".join(encoded)


def resumed(rest: list[tuple[Entity, Cursor]], next_batch: Callable[[], Coroutine[Any, Any, Batch]]) -> Callable[[], Coroutine[Any, Any, Batch]]:
    """``next_batch`` after ``rest``, the rows a previous page read past its end."""
    waiting = [rest] if rest else []

    async def following() -> Batch:
        if waiting:
            return waiting.pop()
        return await next_batch()

    return following
