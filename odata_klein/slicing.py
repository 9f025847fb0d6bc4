"""
Checking rows without holding the reactor.

A filter costs microseconds per row, but a URL may carry a megabyte of one
(Power BI folds a list of chosen values into an or-list), and then checking
one upstream page of 500 rows can take seconds, while every other request,
/health included, waits.  `kept` lets the reactor run whenever checking has
taken `SLICE_SECONDS` since it last did: an expensive filter slows its own
response, not the others.  The clock is read after every item rather than
every so many: the cost of rows can change from one to the next (an or-list
stops at its first true term), and a slice sized from cheap rows would hold
the reactor for many costly ones.
"""

from __future__ import annotations

import time
from typing import Awaitable, Callable, Iterable, Optional, TypeVar

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

_T = TypeVar("_T")

SLICE_SECONDS = 0.01


async def kept(
    items: Iterable[_T],
    test: Callable[[_T], bool],
    turn: Callable[[], Awaitable[object]],
    clock: Callable[[], float] = time.perf_counter,
) -> list[_T]:
    """The items that pass ``test``, in order; ``turn()`` gives the reactor a turn."""
    result: list[_T] = []
    keep = result.append
    until = clock() + SLICE_SECONDS
    for item in items:
        if test(item):
            keep(item)
        if clock() > until:
            await turn()
            until = clock() + SLICE_SECONDS
    return result


def reactor_turns(reactor: IReactorTime) -> Callable[[], Awaitable[None]]:
    """
    The ``turn`` for `kept`: a call that returns once ``reactor`` has polled
    for I/O, so that other connections have been read and written since.
    One zero-delay call is not enough: when it is scheduled from an I/O
    callback it runs before the next poll.
    """

    async def turn() -> None:
        for _ in range(2):
            await deferLater(reactor, 0, lambda: None)

    return turn


async def kept_giving_turns(
    items: Iterable[_T], test: Callable[[_T], bool], reactor: Optional[IReactorTime]
) -> list[_T]:
    """`kept`, giving ``reactor`` its turns; without a reactor, in one go."""
    if reactor is None:
        return [item for item in items if test(item)]
    return await kept(items, test, reactor_turns(reactor))


__all__ = ["SLICE_SECONDS", "kept", "kept_giving_turns", "reactor_turns"]
