"""
Write a response body in chunks, at the pace the client reads it.

`ResponseStream` registers itself as a streaming producer on the request, so
Twisted tells it when the transport's buffer is full; ``write`` then waits
until the client has caught up.  This keeps the server's memory flat however
large the result is.
"""

from __future__ import annotations

from typing import Any, Coroutine, Optional, TypeVar

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.interfaces import IPushProducer
from twisted.web.server import Request
from zope.interface import implementer

DEFAULT_CHUNK_SIZE = 256 * 1024

_T = TypeVar("_T")


class ClientGone(Exception):
    """The client closed the connection; stop producing."""


@implementer(IPushProducer)
class ResponseStream:
    def __init__(self, request: Request, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self._request = request
        self._chunk_size = chunk_size
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._paused: Optional[Deferred[None]] = None
        self._working: Optional[Deferred[Any]] = None
        self._gone = False
        self.started = False
        request.registerProducer(self, True)
        self._registered = True
        request.notifyFinish().addErrback(self._connection_lost)

    # IPushProducer: called by the transport.
    def pauseProducing(self) -> None:
        if self._paused is None:
            self._paused = Deferred()

    def resumeProducing(self) -> None:
        paused, self._paused = self._paused, None
        if paused is not None:
            paused.callback(None)

    def stopProducing(self) -> None:
        self._gone = True
        self.resumeProducing()
        if self._working is not None:
            self._working.cancel()

    def _connection_lost(self, reason: object) -> None:
        self.stopProducing()

    async def guarded(self, work: Coroutine[Any, Any, _T]) -> _T:
        """
        The result of ``work``, cancelled as soon as the client goes away, so
        that an abandoned response stops asking the upstream for more.  Once
        the body has started, what is ready is sent before waiting: chunks
        are large while rows flow, and nothing waits behind a slow upstream.
        """
        if self._gone:
            work.close()
            raise ClientGone()
        self._working = ensureDeferred(work)
        if not self._working.called and self.started:
            # About to wait: what is ready goes out now rather than with the next full chunk.
            self._send_pending()
        try:
            return await self._working
        except CancelledError:
            if self._gone:
                raise ClientGone()
            raise
        finally:
            self._working = None

    async def write(self, data: bytes) -> None:
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= self._chunk_size:
            await self.flush()

    async def flush(self) -> None:
        if self._gone:
            raise ClientGone()
        self._send_pending()
        if self._paused is not None:
            await self._paused
            if self._gone:
                raise ClientGone()

    def _send_pending(self) -> None:
        if self._pending:
            chunk = b"".join(self._pending)
            self._pending.clear()
            self._pending_size = 0
            self.started = True
            self._request.write(chunk)

    async def close(self) -> None:
        """Send what is left; the request can then be finished."""
        await self.flush()
        self.release()

    def release(self) -> None:
        """Stop being the request's producer (before it finishes, or once the client has gone)."""
        if self._registered:
            self._registered = False
            self._request.unregisterProducer()

    def abort(self) -> None:
        """
        Drop the connection mid-response, so that no client mistakes a cut-off
        body for a complete one (a chunked response then lacks its last chunk).
        """
        self._gone = True
        self.release()
        transport = getattr(self._request.channel, "transport", None)
        if transport is not None:
            transport.abortConnection()
