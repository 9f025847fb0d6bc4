"""
The ClickTime HTTP client against the real simulator over loopback: paging,
prefetch, cancellation, the per-token bound, retries of each fault, the
mapping of ClickTime's failures to OData errors, and that the token goes
nowhere but the Authorization header.
"""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, AsyncIterator, Iterator, Optional, cast

import pytest
import pytest_twisted  # type: ignore[import-untyped]  # no py.typed marker, no stubs
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IListeningPort
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.web.resource import Resource
from twisted.web.server import Site

from harness import Observed
from odata_klein.errors import (
    BadGateway,
    Forbidden,
    GatewayTimeout,
    NotFound,
    ODataError,
    ServiceUnavailable,
    Unauthorized,
)
from odata_klein.interfaces import Trace
from odata_klein_plugins.clicktime.client import ClickTimeClient, exponential_backoff
from odata_klein_plugins.clicktime.paging import Page, read_page
from odata_klein_plugins.clicktime.simulator import Company, FaultRule, Simulator, generate_company

ADMIN_TOKEN = "client-test-admin-token-5f0c2a"
STANDARD_TOKEN = "client-test-standard-token-9d41b7"
ENTRIES = 1234


@pytest.fixture(scope="module")
def company() -> Company:
    return generate_company(entries=ENTRIES, seed=11, admin_token=ADMIN_TOKEN, standard_token=STANDARD_TOKEN)


@dataclass
class Upstream:
    simulator: Simulator
    observed: Observed
    port: IListeningPort
    base_url: str
    clients: list[ClickTimeClient] = field(default_factory=list)

    def client(self, **options: Any) -> ClickTimeClient:
        settings: dict[str, Any] = {
            "timeout": 2.0,
            "deadline": 5.0,
            "max_attempts": 3,
            "backoff": lambda attempt: 0.0,
        }
        settings.update(options)
        client = ClickTimeClient(reactor, self.base_url, **settings)
        self.clients.append(client)
        return client

    def add_fault(self, kind: str, path: str = "", **rule: Any) -> None:
        self.simulator.faults.add(FaultRule(kind, path=path, **rule))


@pytest_twisted.async_yield_fixture
async def upstream(company: Company) -> AsyncIterator[Upstream]:
    simulator = Simulator(company, clock=reactor)
    observed = Observed(simulator.resource())
    port = reactor.listenTCP(0, Site(observed), interface="127.0.0.1")  # type: ignore[arg-type]  # Twisted: listenTCP's ServerFactory is invariant in its protocol
    running = Upstream(simulator, observed, port, f"http://127.0.0.1:{cast(IPv4Address, port.getHost()).port}/v2")
    yield running
    for client in running.clients:
        await client.close()
    await cast(Deferred[None], port.stopListening())


@pytest.fixture(autouse=True)
def log_lines() -> Iterator[list[str]]:
    """
    Everything logged during a test, as text; afterwards, checks that no
    token was logged and that no Deferred died with an unhandled error.
    """
    lines: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            text += "\n" + failure.getTraceback()
        lines.append(text)

    # Twisted calls any callable of an event an observer; only its type wants an ILogObserver.
    observer = cast(ILogObserver, observe)
    globalLogPublisher.addObserver(observer)
    try:
        yield lines
        gc.collect()  # unhandled errors of collected Deferreds are logged now
    finally:
        globalLogPublisher.removeObserver(observer)
    logged = "\n".join(lines)
    assert ADMIN_TOKEN not in logged and STANDARD_TOKEN not in logged
    assert "Unhandled error" not in logged


def assert_token_free(*things: object) -> None:
    for thing in things:
        texts = [str(thing), repr(thing)]
        if isinstance(thing, ODataError):
            texts += [json.dumps(thing.to_json()), repr(thing.headers)]
        for text in texts:
            assert ADMIN_TOKEN not in text and STANDARD_TOKEN not in text


async def failure_of(request: Any) -> ODataError:
    with pytest.raises(ODataError) as raised:
        await request
    assert_token_free(raised.value)
    return raised.value


async def all_pages(pages: AsyncIterator[Page]) -> list[Page]:
    return [page async for page in pages]


def entry_ids(pages: list[Page]) -> list[str]:
    return [row["ID"] for page in pages for row in page.rows]


# -- paging ------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_pages_read_every_entry_in_the_simulator_order(upstream: Upstream, company: Company) -> None:
    trace = Trace()
    pages = await all_pages(upstream.client().pages(ADMIN_TOKEN, "/TimeEntries", page_limit=100, trace=trace))

    assert entry_ids(pages) == [entry.ID for entry in company.time_entries]
    assert [page.offset for page in pages] == list(range(0, ENTRIES, 100))
    assert {page.count for page in pages} == {ENTRIES}
    # Exact decimals: the JSON number ClickTime sent, not a binary float.
    first_row, first_entry = pages[0].rows[0], company.time_entries[0]
    assert first_row["Hours"] == Decimal(repr(first_entry.Hours)) and isinstance(first_row["Hours"], Decimal)
    assert [(call.rows, call.total, call.status, call.attempts) for call in trace.calls] == [
        (100, ENTRIES, 200, 1)
    ] * 12 + [(34, ENTRIES, 200, 1)]
    assert trace.calls[0].url == upstream.base_url + "/TimeEntries"
    assert trace.calls[1].params == [("limit", "100"), ("offset", "100")]
    assert_token_free(trace)


@pytest_twisted.ensureDeferred
async def test_pages_start_at_an_offset_and_ask_only_for_max_rows(
    upstream: Upstream, company: Company
) -> None:
    pages = await all_pages(
        upstream.client().pages(ADMIN_TOKEN, "/TimeEntries", offset=250, page_limit=100, max_rows=230)
    )

    assert entry_ids(pages) == [entry.ID for entry in company.time_entries[250:480]]
    assert [(a.params["offset"], a.params["limit"]) for a in upstream.observed.arrivals] == [
        (["250"], ["100"]),
        (["350"], ["100"]),
        (["450"], ["30"]),
    ]


@pytest_twisted.ensureDeferred
async def test_repeated_params_keep_every_value(upstream: Upstream, company: Company) -> None:
    jobs = sorted({entry.JobID for entry in company.time_entries})[:2]
    params = [("JobID", jobs[0]), ("JobID", jobs[1])]
    pages = await all_pages(upstream.client().pages(ADMIN_TOKEN, "/TimeEntries", params, page_limit=500))

    expected = [entry.ID for entry in company.time_entries if entry.JobID in jobs]
    assert expected and entry_ids(pages) == expected
    assert upstream.observed.arrivals[0].params["JobID"] == jobs


@pytest.mark.parametrize("ahead", [1, 3])
@pytest_twisted.ensureDeferred
async def test_the_next_pages_are_requested_while_the_consumer_holds_the_current_one(
    upstream: Upstream, ahead: int
) -> None:
    observed = upstream.observed
    pages = upstream.client(pages_ahead=ahead).pages(ADMIN_TOKEN, "/TimeEntries", page_limit=300)
    held = 0
    async for page in pages:
        assert page.offset == 300 * held
        # The next ``ahead`` pages reach ClickTime without the consumer asking for them...
        in_sight = min(held + 1 + ahead, 5)
        await observed.until(lambda: len(observed.arrivals) == in_sight)
        # ...and nothing further, nor anything past the end of the list.
        assert len(observed.arrivals) == in_sight
        held += 1

    assert held == 5
    # Requests in flight together reach ClickTime in any order.
    assert sorted(int(arrival.params["offset"][0]) for arrival in observed.arrivals) == [0, 300, 600, 900, 1200]


@pytest.mark.parametrize("stop", ["aclose", "break"])
@pytest_twisted.ensureDeferred
async def test_stopping_early_cancels_the_pages_requested_ahead(upstream: Upstream, stop: str) -> None:
    # The pages after the first would take a minute: only cancelling ends them.
    upstream.add_fault("slow", r"offset=[1-9]", times=None, delay=60.0)
    observed = upstream.observed
    client = upstream.client(timeout=120.0, deadline=120.0, pages_ahead=3)
    trace = Trace()
    pages = client.pages(ADMIN_TOKEN, "/TimeEntries", page_limit=100, trace=trace)
    async for page in pages:
        assert page.offset == 0
        await observed.until(lambda: len(observed.arrivals) == 4)
        if stop == "aclose":
            await pages.aclose()
        break
    del pages  # with "break", closing is left to the garbage collector

    # Cancelled, not mistaken for broken connections and tried again.
    assert [(call.attempts, call.status) for call in trace.calls[1:]] == [(1, None)] * 3
    await observed.until(lambda: len(observed.abandoned) == 3)
    assert sorted(arrival.params["offset"][0] for arrival in observed.abandoned) == ["100", "200", "300"]
    # The client carries on as if nothing happened.
    assert (await client.get_one(ADMIN_TOKEN, "/Me"))["ID"]
    assert len(observed.arrivals) == 5 and observed.arrivals[-1].params.get("offset") is None


@pytest_twisted.ensureDeferred
async def test_a_list_that_fits_one_page_takes_one_request(upstream: Upstream) -> None:
    trace = Trace()
    pages = await all_pages(upstream.client().pages(ADMIN_TOKEN, "/Divisions", page_limit=1000, trace=trace))
    assert len(pages) == 1 and pages[0].rows and len(trace.calls) == 1


@pytest.mark.parametrize(
    ("paging", "more"),
    [
        (None, False),  # an unpaged answer
        ({"count": 7, "links": {"next": "https://next"}}, True),
        ({"count": 7, "links": {"next": None}}, False),  # links win over the count
        ({"count": 5, "links": {"next": ""}}, False),
        ({"count": 5}, False),  # offset + rows reached the count
        ({"count": 9}, True),
        ({}, True),  # nothing to go by but a full page
    ],
)
def test_where_paging_ends(paging: Optional[dict[str, Any]], more: bool) -> None:
    rows = [{"ID": str(n)} for n in range(3)]
    page, has_more = read_page({"data": rows, "page": paging}, offset=2, limit=3)
    assert (page.rows, page.offset, has_more) == (rows, 2, more)
    assert (
        read_page({"data": rows[:2], "page": {}}, offset=2, limit=3)[1] is False
    )  # a short page is the last
    assert read_page({"data": [], "page": {"count": 9}}, offset=2, limit=3)[1] is False


# -- concurrency -------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_concurrent_requests_are_bounded_per_token(upstream: Upstream) -> None:
    upstream.add_fault("slow", "/v2/Me", delay=0.2, times=None)
    client = upstream.client(max_concurrent_per_token=3)
    requests = [ensureDeferred(client.get_one(ADMIN_TOKEN, "/Me")) for _ in range(8)]
    requests += [ensureDeferred(client.get_one(STANDARD_TOKEN, "/Me")) for _ in range(3)]

    answers = [await request for request in requests]

    assert len({answer["ID"] for answer in answers}) == 2
    assert upstream.observed.peak == {ADMIN_TOKEN: 3, STANDARD_TOKEN: 3}
    assert client._slots == {}  # semaphores of idle tokens are not kept


# -- retries -----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_throttling_then_success(upstream: Upstream) -> None:
    upstream.add_fault("status", "/v2/Me", status=429, retry_after=0, times=2)
    trace = Trace()
    assert (await upstream.client().get_one(ADMIN_TOKEN, "/Me", trace))["ID"]
    assert (trace.calls[0].attempts, trace.calls[0].status, trace.upstream_requests) == (3, 200, 3)


@pytest_twisted.ensureDeferred
async def test_retry_after_is_waited_for(upstream: Upstream) -> None:
    upstream.add_fault("status", "/v2/Me", status=429, retry_after=1, times=1)
    started = reactor.seconds()
    assert (await upstream.client().get_one(ADMIN_TOKEN, "/Me"))["ID"]
    assert reactor.seconds() - started >= 1.0


@pytest_twisted.ensureDeferred
async def test_throttling_that_persists_is_503_with_retry_after(upstream: Upstream) -> None:
    upstream.add_fault("status", "/v2/Me", status=429, times=None)
    trace = Trace()
    error = await failure_of(upstream.client().get_one(ADMIN_TOKEN, "/Me", trace))
    assert isinstance(error, ServiceUnavailable) and error.status == 503
    assert int(error.headers["Retry-After"]) > 0
    assert (trace.calls[0].attempts, trace.calls[0].status) == (3, 429)


@pytest_twisted.ensureDeferred
async def test_a_retry_after_beyond_the_deadline_is_passed_on_at_once(upstream: Upstream) -> None:
    upstream.add_fault("status", "/v2/Me", status=429, retry_after=7, times=None)
    trace = Trace()
    started = reactor.seconds()
    error = await failure_of(upstream.client(deadline=2.0).get_one(ADMIN_TOKEN, "/Me", trace))
    assert isinstance(error, ServiceUnavailable) and error.headers["Retry-After"] == "7"
    assert trace.calls[0].attempts == 1
    assert reactor.seconds() - started < 2.0  # no waiting for a retry that could not happen in time


@pytest.mark.parametrize("kind", ["status", "truncated", "drop", "slow"])
@pytest_twisted.ensureDeferred
async def test_one_failed_attempt_is_retried(upstream: Upstream, kind: str) -> None:
    upstream.add_fault(kind, "/v2/Me", status=502, delay=30.0, times=1)
    trace = Trace()
    me = await upstream.client(timeout=0.3).get_one(ADMIN_TOKEN, "/Me", trace)
    assert me["ID"] and trace.calls[0].attempts == 2 and trace.calls[0].status == 200
    assert len(upstream.observed.arrivals) == 2


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "status", "status": 500},
        {"kind": "status", "status": 503},
        {"kind": "status", "status": 504},
        {"kind": "truncated"},
        {"kind": "drop"},
    ],
)
@pytest_twisted.ensureDeferred
async def test_failures_that_persist_are_502_after_every_attempt(
    upstream: Upstream, fault: dict[str, Any]
) -> None:
    upstream.add_fault(path="/v2/Me", times=None, **fault)
    trace = Trace()
    error = await failure_of(upstream.client(max_attempts=4).get_one(ADMIN_TOKEN, "/Me", trace))
    assert isinstance(error, BadGateway) and error.status == 502
    assert trace.calls[0].attempts == 4 and len(upstream.observed.arrivals) == 4


@pytest_twisted.ensureDeferred
async def test_malformed_json_is_502_without_retrying(upstream: Upstream) -> None:
    upstream.add_fault("malformed", "/v2/Me", times=None)
    trace = Trace()
    error = await failure_of(upstream.client().get_one(ADMIN_TOKEN, "/Me", trace))
    assert isinstance(error, BadGateway) and "malformed" in error.message
    assert (trace.calls[0].attempts, trace.calls[0].status) == (1, 200)


@pytest_twisted.ensureDeferred
async def test_answers_slower_than_the_deadline_are_504(upstream: Upstream) -> None:
    upstream.add_fault("slow", "/v2/Me", delay=30.0, times=None)
    trace = Trace()
    client = upstream.client(timeout=0.1, deadline=0.35, max_attempts=10)
    started = reactor.seconds()
    error = await failure_of(client.get_one(ADMIN_TOKEN, "/Me", trace))
    assert isinstance(error, GatewayTimeout) and error.status == 504
    assert reactor.seconds() - started >= 0.35
    # Each attempt gave up after its timeout, and the last one when the deadline came.
    assert 3 <= trace.calls[0].attempts <= 4 and trace.calls[0].status is None


@pytest_twisted.ensureDeferred
async def test_a_refused_connection_is_502_after_retrying(upstream: Upstream) -> None:
    port = reactor.listenTCP(0, Site(Resource()), interface="127.0.0.1")  # type: ignore[arg-type]  # Twisted: listenTCP's ServerFactory is invariant in its protocol
    closed_url = f"http://127.0.0.1:{cast(IPv4Address, port.getHost()).port}/v2"
    await cast(Deferred[None], port.stopListening())
    client = ClickTimeClient(reactor, closed_url, max_attempts=2, backoff=lambda attempt: 0.0)
    trace = Trace()
    error = await failure_of(client.get_one(ADMIN_TOKEN, "/Me", trace))
    assert isinstance(error, BadGateway) and trace.calls[0].attempts == 2
    await client.close()


# -- ClickTime's refusals ---------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_rejected_token_is_401(upstream: Upstream) -> None:
    error = await failure_of(upstream.client().get_one("not-a-token-of-this-company", "/Me"))
    assert isinstance(error, Unauthorized) and error.message == "ClickTime rejected the token"
    assert len(upstream.observed.arrivals) == 1


@pytest_twisted.ensureDeferred
async def test_a_forbidden_list_is_403_with_clicktime_s_message(upstream: Upstream) -> None:
    pages = upstream.client().pages(STANDARD_TOKEN, "/TimeEntries", page_limit=100)
    error = await failure_of(all_pages(pages))
    assert isinstance(error, Forbidden) and error.message == "This is not allowed for STANDARD users."
    assert len(upstream.observed.arrivals) == 1


@pytest_twisted.ensureDeferred
async def test_an_unknown_id_is_404(upstream: Upstream) -> None:
    error = await failure_of(upstream.client().get_one(ADMIN_TOKEN, "/TimeEntries/NoSuchEntry0000000000000"))
    assert isinstance(error, NotFound)
    assert len(upstream.observed.arrivals) == 1


@pytest_twisted.ensureDeferred
async def test_a_refused_query_is_502_with_clicktime_s_explanation(upstream: Upstream) -> None:
    error = await failure_of(upstream.client().get(ADMIN_TOKEN, "/TimeEntries", [("limit", "0")]))
    assert isinstance(error, BadGateway) and "400" in error.message
    assert [(detail.target, detail.message) for detail in error.details] == [
        ("limit", "limit must be at least 1.")
    ]
    assert len(upstream.observed.arrivals) == 1


@pytest_twisted.ensureDeferred
async def test_single_entities_come_from_data(upstream: Upstream, company: Company) -> None:
    entry = company.time_entries[5]
    found = await upstream.client().get_one(ADMIN_TOKEN, f"/TimeEntries/{entry.ID}")
    assert (found["ID"], found["JobID"], found["Date"]) == (entry.ID, entry.JobID, entry.Date)


@pytest_twisted.ensureDeferred
async def test_a_token_that_cannot_be_a_header_is_never_sent(upstream: Upstream) -> None:
    error = await failure_of(upstream.client().get_one(ADMIN_TOKEN + "\r\nX-Injected: 1", "/Me"))
    assert isinstance(error, Unauthorized) and upstream.observed.arrivals == []


@pytest_twisted.ensureDeferred
async def test_the_token_stays_out_of_urls_traces_errors_and_logs(
    upstream: Upstream, log_lines: list[str]
) -> None:
    upstream.add_fault("status", "/v2/Me", status=503, times=None)
    trace = Trace()
    client = upstream.client()
    error = await failure_of(client.get_one(ADMIN_TOKEN, "/Me", trace))
    assert isinstance(error, BadGateway)
    assert_token_free(trace, error, error.__cause__, error.__context__)
    assert [arrival.token for arrival in upstream.observed.arrivals] == [ADMIN_TOKEN] * 3
    assert all(ADMIN_TOKEN not in "".join(sum(a.params.values(), [])) for a in upstream.observed.arrivals)
    # The retries were logged (the autouse fixture checks that the token was not).
    assert sum("ClickTime GET" in line for line in log_lines) == 2


def test_default_backoff_is_exponential_and_capped() -> None:
    assert [exponential_backoff(attempt) for attempt in range(2, 9)] == [0.5, 1, 2, 4, 8, 8, 8]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        ClickTimeClient(reactor, "http://127.0.0.1:1/v2", max_attempts=0)
    with pytest.raises(ValueError):
        ClickTimeClient(reactor, "http://127.0.0.1:1/v2", deadline=0)
