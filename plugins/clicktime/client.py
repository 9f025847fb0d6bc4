"""
The ClickTime provider's only way to the upstream: GETs over treq, with a
persistent connection pool, a bound on concurrent requests per token, retries
of what is worth retrying within a deadline, and ClickTime's failures turned
into `odata_klein.errors`.

How upstream failures surface to OData clients:

- 429 still after the retries (or a Retry-After beyond the deadline): 503
  with Retry-After, so the client knows when to come back.
- 5xx after the retries, a connection that cannot be opened or that breaks
  before the body is complete, malformed JSON, JSON that is not ClickTime's
  envelope, a redirect: 502.  An unreachable upstream is a gateway failure
  (RFC 9110, 15.6.3); 503 would claim this service itself is overloaded.
- No answer in time on the last attempt: 504.
- 401: Unauthorized; 403: Forbidden and 404: NotFound, with ClickTime's
  message when it sends one.
- 400 and any other 4xx: 502 with ClickTime's messages in the details.  The
  facade builds every upstream query itself from input it has validated, so
  a refusal means the facade and ClickTime disagree, not that the caller
  erred.

Malformed JSON in a complete answer is not retried: ClickTime answered, and
would answer the same again.  A body cut short is (it fails as a broken
connection).

The token travels only in the Authorization header: it is never part of a
URL, a log event, a `Trace` or an error message (upstream messages are
scrubbed of it in case ClickTime echoes it).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from decimal import Decimal
from http.cookiejar import DefaultCookiePolicy
from typing import Any, AsyncGenerator, Callable, Optional, Sequence, TypeVar, Union

from treq.client import HTTPClient
from treq.cookies import IndexableCookieJar
from twisted.internet import error as network
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredSemaphore,
    TimeoutError as AttemptTimedOut,
    ensureDeferred,
    succeed,
)
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    RequestNotSent,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from odata_klein.errors import (
    BadGateway,
    ErrorDetail,
    Forbidden,
    GatewayTimeout,
    NotFound,
    ODataError,
    ServiceUnavailable,
    Unauthorized,
)
from odata_klein.interfaces import Trace, UpstreamCall
from odata_klein.slicing import reactor_turns

from .paging import Page, iterate_pages, page_count

Params = Sequence[tuple[str, str]]
_T = TypeVar("_T")

# Failures of the connection rather than answers from ClickTime: worth another
# attempt, since a GET can be repeated safely.
_BROKEN_CONNECTION = (
    network.ConnectError,
    network.DNSLookupError,
    network.ConnectionClosed,
    RequestNotSent,
    RequestTransmissionFailed,
    ResponseNeverReceived,
    ResponseFailed,
)


# Requests one token may have in flight at ClickTime, and pages a read asks for
# ahead of the one being served.  With eight rather than four, a full read of
# 20,000 entries ran 1.5 times as fast when ClickTime answered each request
# 100 ms late (benchmarks/upstream_latency.py), and one of 200,000 from the
# loopback simulator about 3% faster (benchmarks/service_throughput.py).
DEFAULT_CONCURRENCY_PER_TOKEN = 8
DEFAULT_PAGES_AHEAD = 8


def exponential_backoff(attempt: int) -> float:
    """Seconds to wait before ``attempt`` (2, 3, ...): 0.5, 1, 2, 4, then 8 at most."""
    return min(0.5 * 2 ** (attempt - 2), 8.0)


class ClickTimeClient:
    """
    GETs against ClickTime's REST API at ``base_url`` (such as
    ``https://api.clicktime.com/v2``).

    ``timeout`` bounds one attempt, from asking for a connection to the last
    byte of the body; ``deadline`` bounds a logical request from its first
    attempt on, retries and waits included (not the wait for a free slot of
    the per-token bound, which other requests' deadlines bound already);
    ``backoff(n)`` is the wait in seconds before attempt ``n`` (unless
    ClickTime sent Retry-After).  When ``pool`` is given, its owner
    configures and closes it.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        base_url: str,
        *,
        pool: Optional[HTTPConnectionPool] = None,
        max_concurrent_per_token: int = DEFAULT_CONCURRENCY_PER_TOKEN,
        pages_ahead: int = DEFAULT_PAGES_AHEAD,
        timeout: float = 60.0,
        deadline: float = 300.0,
        max_attempts: int = 5,
        backoff: Optional[Callable[[int], float]] = None,
    ) -> None:
        if max_concurrent_per_token < 1 or pages_ahead < 1 or max_attempts < 1:
            raise ValueError("max_concurrent_per_token, pages_ahead and max_attempts must be at least 1")
        if timeout <= 0 or deadline <= 0:
            raise ValueError("timeout and deadline must be positive")
        self._reactor = reactor
        self._base_url = base_url.rstrip("/")
        self._owns_pool = pool is None
        if pool is None:
            pool = HTTPConnectionPool(reactor, persistent=True)
            # Room for a few tokens paging at full concurrency at once;
            # connections beyond it still work, they are closed after use.
            pool.maxPersistentPerHost = 4 * max_concurrent_per_token
        self._pool = pool
        self._http = HTTPClient(
            Agent(reactor, pool=pool),
            # Cookies would be shared by every token using this client.
            cookiejar=IndexableCookieJar(DefaultCookiePolicy(allowed_domains=[])),
        )
        self._max_concurrent = max_concurrent_per_token
        self._pages_ahead = pages_ahead
        self._timeout = timeout
        self._deadline = deadline
        self._max_attempts = max_attempts
        self._backoff = backoff or exponential_backoff
        # Keyed by a digest so that tokens are not kept in memory longer than
        # their requests; entries go away when their token has nothing in flight.
        self._slots: dict[bytes, DeferredSemaphore] = {}

    async def get(
        self, token: str, path: str, params: Params = (), trace: Optional[Trace] = None
    ) -> dict[str, Any]:
        """
        ClickTime's envelope for ``GET base_url + path`` with ``params``
        (repeated keys kept, in order).  JSON numbers with a fraction or an
        exponent become `Decimal`.  Raises an `ODataError` on failure.
        """
        if not path.startswith("/") or "?" in path:
            raise ValueError("path must start with '/' and carry no query")
        authorization = _authorization(token)
        call = UpstreamCall("GET", self._base_url + path, list(params))
        if trace is not None:
            trace.record(call)
        started = self._reactor.seconds()
        key = hashlib.sha256(authorization).digest()
        try:
            slots = await self._acquire(key)
            try:
                envelope = await self._get_with_retries(call, authorization, token)
            finally:
                self._release(key, slots)
        finally:
            call.seconds = self._reactor.seconds() - started
        data = envelope["data"]
        if isinstance(data, list):
            call.rows = len(data)
        call.total = page_count(envelope)
        return envelope

    async def get_one(self, token: str, path: str, trace: Optional[Trace] = None) -> dict[str, Any]:
        """The ``data`` object of a single-entity GET such as ``/TimeEntries/{id}``."""
        data = (await self.get(token, path, (), trace))["data"]
        if not isinstance(data, dict):
            raise BadGateway("ClickTime answered a single-entity request without an object in 'data'")
        return data

    def pages(
        self,
        token: str,
        path: str,
        params: Params = (),
        *,
        offset: int = 0,
        page_limit: int,
        max_rows: Optional[int] = None,
        trace: Optional[Trace] = None,
    ) -> AsyncGenerator[Page, None]:
        """
        The pages of a list endpoint from ``offset`` on (``params`` must not
        hold ``limit`` or ``offset``), the next ``pages_ahead`` ones requested
        while the consumer works on the current one, so that ClickTime's
        latency is paid about once per ``pages_ahead`` pages rather than once
        per page.  Close the iterator (``aclose``) when stopping early.
        """

        async def fetch(at: int, limit: int) -> dict[str, Any]:
            paged = [*params, ("limit", str(limit)), ("offset", str(at))]
            return await self.get(token, path, paged, trace)

        return iterate_pages(
            fetch,
            offset=offset,
            page_limit=page_limit,
            max_rows=max_rows,
            # Requests written before the turn have left when it ends.
            reactor_turn=reactor_turns(self._reactor),
            ahead=self._pages_ahead,
        )

    def close(self) -> "Deferred[None]":
        """Close the idle persistent connections of the pool this client created."""
        if self._owns_pool:
            return self._pool.closeCachedConnections()
        return succeed(None)

    async def _acquire(self, key: bytes) -> DeferredSemaphore:
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = DeferredSemaphore(self._max_concurrent)
        await slots.acquire()
        return slots

    def _release(self, key: bytes, slots: DeferredSemaphore) -> None:
        slots.release()
        # All tokens back means nobody holds or waits for this semaphore.
        if slots.tokens == slots.limit and self._slots.get(key) is slots:
            del self._slots[key]

    async def _get_with_retries(self, call: UpstreamCall, authorization: bytes, token: str) -> dict[str, Any]:
        headers = Headers({b"Authorization": [authorization], b"Accept": [b"application/json"]})
        give_up_at = self._reactor.seconds() + self._deadline
        setback: Optional[_Setback] = None
        for attempt in range(1, self._max_attempts + 1):
            if setback is not None:
                if setback.retry_after is not None:
                    delay = setback.retry_after
                else:
                    delay = self._backoff(attempt)
                if self._reactor.seconds() + delay >= give_up_at:
                    break
                self.log.warn(
                    "ClickTime GET {path} failed ({problem}); attempt {attempt} of {most} in {delay}s",
                    path=call.url,
                    problem=setback.problem,
                    attempt=attempt,
                    most=self._max_attempts,
                    delay=round(delay, 3),
                )
                if delay > 0:
                    await deferLater(self._reactor, delay, lambda: None)
            time_left = give_up_at - self._reactor.seconds()
            if time_left <= 0:  # the wait above ended late
                break
            call.attempts = attempt
            try:
                answer = await self._attempt(call.url, call.params, headers, min(self._timeout, time_left))
            except AttemptTimedOut:
                setback = _Setback("no complete answer in time", GatewayTimeout("ClickTime did not answer in time"))
            except _BROKEN_CONNECTION as broken:
                setback = _Setback(type(broken).__name__, _connection_failure(broken))
            else:
                call.status = answer.status
                verdict = _judge(answer, token)
                if not isinstance(verdict, _Setback):
                    return verdict
                setback = verdict
        assert setback is not None, "the first attempt always runs"
        raise setback.error

    def _attempt(self, url: str, params: Params, headers: Headers, timeout: float) -> "Deferred[_Answer]":
        exchange = ensureDeferred(self._exchange(url, params, headers))
        exchange.addTimeout(timeout, self._reactor, onTimeoutCancel=_timed_out)
        return _cancelled_when_cancelled(exchange)

    async def _exchange(self, url: str, params: Params, headers: Headers) -> _Answer:
        response = await self._http.get(
            url,
            params=list(params),
            headers=headers,
            # A redirect would send the token elsewhere; ClickTime does not redirect API calls.
            allow_redirects=False,
            unbuffered=True,
            # treq types this as a private union of reactor interfaces.
            reactor=self._reactor,  # type: ignore[arg-type]
        )
        body = await _read_body(response)
        return _Answer(response.code, response.headers, body)


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: Headers
    body: bytes


@dataclass(frozen=True)
class _Setback:
    """An attempt that failed in a way another attempt may not: what to say, what to raise last."""

    problem: str
    error: ODataError
    retry_after: Optional[float] = None


def _authorization(token: str) -> bytes:
    # Checked here so that no encoding or header error can quote the token.
    if not token or not token.isascii() or not token.isprintable():
        raise Unauthorized("The ClickTime token is malformed")
    return b"Token " + token.encode("ascii")


def _cancelled_when_cancelled(work: "Deferred[_T]") -> "Deferred[_T]":
    """
    ``work``, except that cancelling fails it with CancelledError.  A
    cancelled HTTP request fails with whatever the interrupted step raises,
    often ResponseNeverReceived, which must not pass for a broken connection
    worth another attempt.
    """
    cancelled = False

    def cancel(_: "Deferred[_T]") -> None:
        nonlocal cancelled
        cancelled = True
        work.cancel()

    outcome: "Deferred[_T]" = Deferred(cancel)

    def relay(result: Union[_T, Failure]) -> None:
        if outcome.called:  # cancelled, and already failed with CancelledError
            return
        if not isinstance(result, Failure):
            outcome.callback(result)
        elif cancelled:
            outcome.errback(CancelledError())
        else:
            outcome.errback(result)

    work.addBoth(relay)
    return outcome


def _timed_out(result: object, timeout: float) -> object:
    # Cancelling an attempt fails it with whatever the interrupted step
    # raises (CancelledError, ConnectingCancelledError, ...): all mean "too slow".
    if isinstance(result, Failure):
        raise AttemptTimedOut(timeout, "ClickTime attempt")
    return result


def _connection_failure(broken: Exception) -> BadGateway:
    if isinstance(broken, (network.ConnectError, network.DNSLookupError)):
        return BadGateway("Could not connect to ClickTime")
    return BadGateway("The connection to ClickTime broke before its answer was complete")


def _judge(answer: _Answer, token: str) -> Union[dict[str, Any], _Setback]:
    """The envelope of a usable answer, or why to try again; raises when trying again is pointless."""
    status = answer.status
    if 200 <= status < 300:
        return _envelope(answer.body)
    if status == 429:
        retry_after = _retry_after(answer.headers)
        return _Setback("429", _throttled(retry_after), retry_after)
    if status >= 500:
        return _Setback(
            str(status),
            BadGateway(f"ClickTime failed with status {status}"),
            _retry_after(answer.headers),
        )
    raise _refusal(status, _upstream_errors(answer.body, token))


class _Decimals(dict[str, Decimal]):
    """
    The `Decimal` of each number text of one answer, made once: a page
    repeats a few dozen hours and rates, and a hit is a lookup in C where
    making a `Decimal` is a call.
    """

    def __missing__(self, text: str) -> Decimal:
        number = self[text] = Decimal(text)
        return number


def _envelope(body: bytes) -> dict[str, Any]:
    try:
        envelope = json.loads(body, parse_float=_Decimals().__getitem__)
    except (ValueError, RecursionError):
        raise BadGateway("ClickTime answered with malformed JSON") from None
    if not isinstance(envelope, dict) or "data" not in envelope:
        raise BadGateway("ClickTime answered with JSON that is not its response envelope")
    return envelope


def _retry_after(headers: Headers) -> Optional[float]:
    """Retry-After in seconds; ClickTime sends no HTTP dates, so those count as absent."""
    values = headers.getRawHeaders(b"Retry-After")
    if not values:
        return None
    try:
        seconds = float(values[-1])
    except ValueError:
        return None
    return seconds if 0 <= seconds < math.inf else None


def _throttled(retry_after: Optional[float]) -> ServiceUnavailable:
    message = "ClickTime is throttling requests for this token"
    if retry_after is None:
        return ServiceUnavailable(message)
    return ServiceUnavailable(message, retry_after=math.ceil(retry_after))


def _upstream_errors(body: bytes, token: str) -> list[ErrorDetail]:
    """ClickTime's ``errors`` of an error answer, if its body has any."""
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):
        return []
    errors = envelope.get("errors") if isinstance(envelope, dict) else None
    if not isinstance(errors, list):
        return []
    details = []
    for error in errors:
        if isinstance(error, dict) and isinstance(error.get("Message"), str):
            field = error.get("Field")
            details.append(
                ErrorDetail(
                    code="ClickTime",
                    message=_scrubbed(error["Message"], token),
                    target=_scrubbed(field, token) if isinstance(field, str) and field else None,
                )
            )
    return details


def _scrubbed(text: str, token: str) -> str:
    return text.replace(token, "***")


def _refusal(status: int, details: list[ErrorDetail]) -> ODataError:
    said = details[0].message if details else None
    if status == 401:
        return Unauthorized("ClickTime rejected the token")
    if status == 403:
        return Forbidden(said or "ClickTime does not allow this to the token's user", details=details)
    if status == 404:
        return NotFound(said or "ClickTime has no such resource", details=details)
    return BadGateway(f"ClickTime answered the facade's request with status {status}", details=details)


class _BodyReader(Protocol):
    """Collects a response body; a cancelled read drops the connection, the only way to abandon a body."""

    def __init__(self, finished: "Deferred[bytes]") -> None:
        self._finished = finished
        self._chunks: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self._chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._finished.called:
            return
        # PotentialDataLoss: a body delimited by closing the connection; the
        # JSON parser tells whether it is complete.
        if reason.check(ResponseDone, PotentialDataLoss):
            self._finished.callback(b"".join(self._chunks))
        else:
            self._finished.errback(reason)


def _read_body(response: IResponse) -> "Deferred[bytes]":
    def abandon(_: "Deferred[bytes]") -> None:
        if reader.transport is not None:
            reader.transport.loseConnection()

    finished: "Deferred[bytes]" = Deferred(abandon)
    reader = _BodyReader(finished)
    response.deliverBody(reader)
    return finished
