"""
Reading the next page of a result before the client asks for it.

A BI client reads a large result page by page: it asks for a page, parses
all of it, and only then follows its nextLink.  While it parses, the service
would sit idle, and then the client would wait while the service reads the
next page from its upstream.  A `ReadAhead` computes the body of that next
page meanwhile, keeping at most ``max_bytes`` of it ahead of its reader, and
the request for the nextLink takes it over instead of starting afresh.

Nothing depends on it: a nextLink still carries all it needs, and a request
that finds no read-ahead (another instance, another credential, a changed
header, an expired one) computes its page as usual.  `ReadAheads` keeps each
one under a key that includes a digest of the caller's credentials, so a
page is only ever handed to the caller it was read for; unclaimed ones
expire, and there are never more than ``max_pages`` at once.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, deque
from typing import Any, AsyncIterator, Awaitable, Callable, Coroutine, Generic, Hashable, Optional, TypeVar

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from .interfaces import Credentials

_State = TypeVar("_State")
_T = TypeVar("_T")

Guard = Callable[[Coroutine[Any, Any, Any]], Awaitable[Any]]


def caller_digest(credentials: Credentials) -> bytes:
    """Who is asking, as a key part that does not hold the secret itself."""
    identity = "\0".join((credentials.scheme, credentials.user or "", credentials.secret))
    return hashlib.sha256(identity.encode("utf-8")).digest()


class ReadAhead(Generic[_State]):
    """
    Chunks of ``source`` pulled as soon as they come, up to ``max_bytes``
    ahead of `chunks`.  ``state`` is whatever the source's producer records
    for the reader (how the page ended, which upstream requests it made).
    ``release`` frees what the source leaves open for its reader (a row
    stream to go on with) when nobody takes it over.
    """

    def __init__(
        self, source: AsyncIterator[bytes], state: _State, max_bytes: int, release: Callable[[], object]
    ) -> None:
        self.state = state
        self._release = release
        self._source = source
        self._max_bytes = max_bytes
        self._buffer: deque[bytes] = deque()
        self._buffered = 0
        self._finished = False
        self._failure: Optional[BaseException] = None
        self._chunk_arrived: Optional[Deferred[None]] = None
        self._room_made: Optional[Deferred[None]] = None
        self._filling: Deferred[None] = ensureDeferred(self._fill())
        # Failures are kept for the reader; cancelling is how an unclaimed one ends.
        self._filling.addErrback(lambda failure: failure.trap(CancelledError))

    @property
    def failed(self) -> bool:
        return self._failure is not None

    async def _fill(self) -> None:
        try:
            async for chunk in self._source:
                self._buffer.append(chunk)
                self._buffered += len(chunk)
                _fire(self._chunk_arrived)
                while self._buffered >= self._max_bytes:
                    self._room_made = Deferred()
                    await self._room_made
        except CancelledError:
            raise
        except Exception as error:
            self._failure = error
        finally:
            self._finished = True
            _fire(self._chunk_arrived)
            # Closing the source ends its upstream reads (a no-op when it is exhausted).
            await self._source.aclose()  # type: ignore[attr-defined]

    async def chunks(self, guard: Guard) -> AsyncIterator[bytes]:
        """
        The chunks, those already read first; raises what the source raised.
        ``guard`` wraps each wait (so that a reader whose client has gone
        stops waiting); call `stop` when done.  The reader owns what
        ``release`` would free.
        """
        while True:
            if self._buffer:
                chunk = self._buffer.popleft()
                self._buffered -= len(chunk)
                if self._buffered < self._max_bytes:
                    _fire(self._room_made)
                yield chunk
            elif self._finished:
                if self._failure is not None:
                    raise self._failure
                return
            else:
                self._chunk_arrived = Deferred()
                await guard(_wait(self._chunk_arrived))

    def stop(self) -> None:
        """Stop reading (and drop what was read); harmless once finished."""
        self._buffer.clear()
        self._buffered = 0
        self._filling.cancel()

    def discard(self) -> None:
        """Stop, and release what was left for a reader that never came."""
        self.stop()
        self._release()


def _fire(waiter: Optional[Deferred[None]]) -> None:
    if waiter is not None and not waiter.called:
        waiter.callback(None)


async def _wait(waiter: Deferred[_T]) -> _T:
    return await waiter


class ReadAheads(Generic[_State]):
    """
    The read-aheads waiting for their readers, each taken at most once.
    Starting one beyond ``max_pages`` cancels the oldest; one unclaimed for
    ``expires_after`` seconds is cancelled.
    """

    def __init__(
        self, clock: IReactorTime, *, max_pages: int = 8, max_bytes: int = 8 * 1024 * 1024, expires_after: float = 30.0
    ) -> None:
        self._clock = clock
        self._max_pages = max_pages
        self._max_bytes = max_bytes
        self._expires_after = expires_after
        self._waiting: OrderedDict[Hashable, tuple[ReadAhead[_State], IDelayedCall]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._waiting)

    def start(
        self, key: Hashable, source: AsyncIterator[bytes], state: _State, release: Callable[[], object] = lambda: None
    ) -> None:
        self._drop(key)
        while len(self._waiting) >= self._max_pages:
            self._drop(next(iter(self._waiting)))
        read_ahead = ReadAhead(source, state, self._max_bytes, release)
        expiry = self._clock.callLater(self._expires_after, self._drop, key)
        self._waiting[key] = (read_ahead, expiry)

    def take(self, key: Hashable) -> Optional[ReadAhead[_State]]:
        """The read-ahead for ``key``, unless there is none or it failed (then ask again)."""
        entry = self._waiting.pop(key, None)
        if entry is None:
            return None
        read_ahead, expiry = entry
        expiry.cancel()
        if read_ahead.failed:
            read_ahead.discard()
            return None
        return read_ahead

    def close(self) -> None:
        """Cancel every read-ahead (when the service stops)."""
        for key in list(self._waiting):
            self._drop(key)

    def _drop(self, key: Hashable) -> None:
        entry = self._waiting.pop(key, None)
        if entry is not None:
            read_ahead, expiry = entry
            if expiry.active():
                expiry.cancel()
            read_ahead.discard()
