"""
The entities of one response page, as JSON text.

`page_chunks` reads (row, cursor) batches, skips and counts rows, attaches
expanded entities and encodes them: the part of a collection response that
grows with the result.  It writes nothing and closes nothing itself, so that
the service can stream it straight to the client or read a next page ahead
(`odata_klein.readahead`), going on with the same rows where the page ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Coroutine, Optional

from .interfaces import Cursor, Row

Batch = Optional[list[tuple[Row, Cursor]]]
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
    rest: list[tuple[Row, Cursor]] = field(default_factory=list)


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
) -> AsyncIterator[bytes]:
    """
    UTF-8 chunks of the page's entities, comma-separated (every chunk after
    the first starts with a comma): ``skip`` rows dropped, then ``take`` rows
    at most (None: all).  ``end`` is filled in as rows go.  ``guard`` wraps
    every wait for rows.  ``encode`` None: the rows come written already.
    """
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
        if not batch:
            continue
        kept = [row for row, _ in batch]
        first = end.emitted == 0
        end.emitted += len(kept)
        end.last_cursor = batch[-1][1]
        if attach_related is not None:
            await guard(attach_related(kept))
        # Row by row: one row with text beyond Latin-1 would make a joined
        # page wide, and encoding it to UTF-8 costs ten times as much.
        if encode is None:
            encoded = [row.encode("utf-8") for row in kept]
        else:
            encoded = [encode(row).encode("utf-8") for row in kept]
        if not first:
            encoded.insert(0, b"")  # the comma after the previous batch
        yield b",".join(encoded)


def resumed(rest: list[tuple[Row, Cursor]], next_batch: Callable[[], Coroutine[Any, Any, Batch]]) -> Callable[[], Coroutine[Any, Any, Batch]]:
    """``next_batch`` after ``rest``, the rows a previous page read past its end."""
    waiting = [rest] if rest else []

    async def following() -> Batch:
        if waiting:
            return waiting.pop()
        return await next_batch()

    return following
