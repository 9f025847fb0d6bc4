"""
Reading next pages ahead: the registry on its own (with a fake clock), then
through the real stack, where a read-ahead page must be byte for byte the
page computed afresh, and only ever reach the caller it was read for.
"""

from __future__ import annotations

import json
from typing import AsyncIterator, Mapping, Optional, TypeVar

import pytest
import pytest_twisted  # type: ignore[import-untyped]  # no py.typed marker, no stubs
import treq
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.web.client import ResponseFailed

from harness import ADMIN_TOKEN, STANDARD_TOKEN, LogCapture, Stack, TreqHeaders, basic, records_of, small_company, start_stack
from odata_klein.accesslog import AccessRecord
from odata_klein.errors import BadGateway
from odata_klein.interfaces import Credentials
from odata_klein.pagetext import unguarded
from odata_klein.readahead import ReadAhead, ReadAheads, caller_digest
from odata_klein_plugins.clicktime.simulator import FaultRule

_State = TypeVar("_State")


class Source:
    """Chunks b"0,", b"1,", ... as an async iterator that records how far it was read and whether it was closed."""

    def __init__(self, count: int, *, fail_at: Optional[int] = None, gates: Optional[list[Deferred[None]]] = None) -> None:
        self.count = count
        self.fail_at = fail_at
        self.gates = gates
        self.pulled = 0
        self.closed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            for number in range(self.count):
                if self.gates is not None:
                    await self.gates[number]
                if number == self.fail_at:
                    raise BadGateway("the upstream broke")
                self.pulled += 1
                yield f"{number},".encode()
        finally:
            self.closed = True


async def read(read_ahead: ReadAhead[_State]) -> bytes:
    return b"".join([chunk async for chunk in read_ahead.chunks(unguarded)])


@pytest_twisted.ensureDeferred
async def test_reads_ahead_up_to_its_byte_bound_then_hands_everything_over_in_order() -> None:
    source = Source(10)
    pages: ReadAheads[str] = ReadAheads(Clock(), max_bytes=6)
    pages.start("key", source.chunks(), "state")
    # Three chunks of two bytes fill the bound: nothing more is read until someone reads.
    assert source.pulled == 3
    taken = pages.take("key")
    assert taken is not None and taken.state == "state"
    assert await read(taken) == b"".join(f"{n},".encode() for n in range(10))
    assert source.closed and len(pages) == 0
    assert pages.take("key") is None, "a read-ahead is taken once"


@pytest_twisted.ensureDeferred
async def test_a_reader_waits_for_chunks_still_being_read() -> None:
    gates: list[Deferred[None]] = [Deferred() for _ in range(3)]
    source = Source(3, gates=gates)
    pages: ReadAheads[None] = ReadAheads(Clock())
    pages.start("key", source.chunks(), None)
    taken = pages.take("key")
    assert taken is not None
    reading = ensureDeferred(read(taken))
    assert not reading.called
    for gate in gates:
        gate.callback(None)
    assert await reading == b"0,1,2,"


def test_an_unclaimed_read_ahead_expires_and_stops_reading() -> None:
    clock = Clock()
    gates: list[Deferred[None]] = [Deferred() for _ in range(2)]
    source = Source(2, gates=gates)
    pages: ReadAheads[None] = ReadAheads(clock, expires_after=30)
    pages.start("key", source.chunks(), None)
    clock.advance(29)
    assert len(pages) == 1 and not source.closed
    clock.advance(1)
    assert len(pages) == 0 and source.closed
    assert pages.take("key") is None
    assert gates[0].called, "the wait it was in was cancelled"


def test_beyond_max_pages_the_oldest_is_cancelled() -> None:
    sources = [Source(2, gates=[Deferred(), Deferred()]) for _ in range(3)]
    pages: ReadAheads[None] = ReadAheads(Clock(), max_pages=2)
    for number, source in enumerate(sources):
        pages.start(number, source.chunks(), None)
    assert [source.closed for source in sources] == [True, False, False]
    assert pages.take(0) is None and pages.take(1) is not None and pages.take(2) is not None


def test_a_failed_read_ahead_is_not_handed_out() -> None:
    source = Source(5, fail_at=2)
    pages: ReadAheads[None] = ReadAheads(Clock())
    pages.start("key", source.chunks(), None)
    assert source.closed
    assert pages.take("key") is None, "the request computes its page afresh, and fails or not on its own"


@pytest_twisted.ensureDeferred
async def test_a_failure_after_it_was_taken_reaches_the_reader() -> None:
    gates: list[Deferred[None]] = [Deferred() for _ in range(3)]
    source = Source(3, fail_at=1, gates=gates)
    pages: ReadAheads[None] = ReadAheads(Clock())
    pages.start("key", source.chunks(), None)
    gates[0].callback(None)
    taken = pages.take("key")
    assert taken is not None
    gates[1].callback(None)
    with pytest.raises(BadGateway):
        await read(taken)


def test_caller_digest_tells_callers_apart_without_holding_the_secret() -> None:
    admin = caller_digest(Credentials("basic", "clicktime", ADMIN_TOKEN))
    assert admin == caller_digest(Credentials("basic", "clicktime", ADMIN_TOKEN))
    assert admin != caller_digest(Credentials("basic", "clicktime", STANDARD_TOKEN))
    assert admin != caller_digest(Credentials("bearer", None, ADMIN_TOKEN))
    assert ADMIN_TOKEN.encode() not in admin


# --- through the service -------------------------------------------------------------

PAGED = {"Prefer": "odata.maxpagesize=300"}


@pytest_twisted.async_yield_fixture(scope="module")
async def stacks() -> AsyncIterator[tuple[Stack, Stack]]:
    company = small_company()
    with_read_ahead = await start_stack(company, page_size=1000)
    without = await start_stack(company, page_size=1000, read_ahead_pages=0)
    yield with_read_ahead, without
    await with_read_ahead.stop()
    await without.stop()


async def pages_of(stack: Stack, url: str, token: str = ADMIN_TOKEN, headers: Mapping[str, str] = PAGED) -> list[bytes]:
    bodies: list[bytes] = []
    next_url: Optional[str] = url
    while next_url is not None:
        reply = await stack.get(next_url, token=token, headers=headers)
        assert reply.code == 200, reply.body
        bodies.append(reply.body)
        next_url = reply.json().get("@odata.nextLink")
    return bodies


def access_records(log: LogCapture) -> list[AccessRecord]:
    return [event["access"] for event in log.events if "access" in event]


@pytest_twisted.ensureDeferred
async def test_pages_read_ahead_are_the_pages_computed_afresh(stacks: tuple[Stack, Stack]) -> None:
    with_read_ahead, without = stacks
    # Who the caller is (two ClickTime requests) is known from here on.
    await with_read_ahead.get("Divisions")
    for url in (
        "TimeEntries",
        "TimeEntries?$select=ID,Hours,CustomFieldsStr&$expand=Job($select=Name)&$count=true",
        "TimeEntries?$filter=Hours gt 2&$top=1000",
    ):
        with LogCapture() as log:
            read_ahead = await pages_of(with_read_ahead, url)
        plain = await pages_of(without, url)
        # Only the port differs, inside the context URL and the nextLinks.
        assert [body.replace(with_read_ahead.url.encode(), b"/") for body in read_ahead] == [
            body.replace(without.url.encode(), b"/") for body in plain
        ], url
        records = access_records(log)
        assert len(records) >= 4, url
        # Every page after the first was read ahead.
        assert [record.read_ahead for record in records] == [False] + [True] * (len(records) - 1), url
        if url == "TimeEntries":
            # One stream reads on from the first page: each 500-row ClickTime page once, in
            # whichever request's log it falls (300-row pages need none of their own now and then).
            entries = len(records_of(with_read_ahead.company, "TimeEntries"))
            assert sum(len(json.loads(body)["value"]) for body in read_ahead) == entries
            assert sum(record.upstream_requests for record in records) == -(-entries // 500)


@pytest_twisted.ensureDeferred
async def test_a_page_read_ahead_goes_only_to_its_caller_asking_the_same_way(stacks: tuple[Stack, Stack]) -> None:
    stack, without = stacks
    first = (await stack.get("TimeEntries", headers=PAGED)).json()
    second = (await stack.get(first["@odata.nextLink"], headers=PAGED)).json()
    third_url = second["@odata.nextLink"]  # being read ahead for the admin now
    with LogCapture() as log:
        head = await stack.get(third_url, headers=PAGED, method="HEAD")
        full = await stack.get(third_url, headers={**PAGED, "Accept": "application/json;odata.metadata=full"})
        other = await stack.get(third_url, token=STANDARD_TOKEN, headers=PAGED)
        own = await stack.get(third_url, headers=PAGED)
    assert (head.code, full.code, other.code, own.code) == (200, 200, 200, 200)
    assert [record.read_ahead for record in access_records(log)] == [False, False, False, True]
    # The standard user's request was computed for the standard user (here: nothing that far on).
    expected = await without.get(third_url[len(stack.url):], token=STANDARD_TOKEN, headers=PAGED)
    assert other.json()["value"] == expected.json()["value"]
    assert len(own.json()["value"]) == 300 and own.json()["value"] != other.json()["value"]


@pytest_twisted.ensureDeferred
async def test_a_failure_while_reading_ahead_never_passes_for_a_page(stacks: tuple[Stack, Stack]) -> None:
    stack, _ = stacks
    # ClickTime pages are 500 entries.  The first request reads on from page
    # 1 (rows 0-299) and asks for 500-999 ahead; every request after that
    # fails.  So pages 2 and 3 are whole, and the read-ahead of page 4 (rows
    # 900-1199) has 100 rows when ClickTime fails it.
    stack.simulator.faults.add(FaultRule("status", path="TimeEntries", status=500, after=2, times=None))
    outcomes: list[str] = []
    try:
        url = stack.url + "TimeEntries"
        while True:
            headers: TreqHeaders = {"Authorization": basic(ADMIN_TOKEN)}
            headers.update(PAGED.items())  # from the pairs: a dict[str, str] is no TreqHeaders
            response = await treq.get(url.encode(), headers=headers, unbuffered=True)
            received: list[bytes] = []
            try:
                await treq.collect(response, received.append)
            except ResponseFailed:
                pass
            body = b"".join(received)
            if response.code != 200:
                assert response.code == 502 and set(json.loads(body)["error"]) == {"code", "message", "target", "details"}
                outcomes.append("502")
                break
            try:
                page = json.loads(body)
            except ValueError:
                # It failed after it started: cut off, so that no client takes it for a page.
                outcomes.append("cut off")
                break
            assert len(page["value"]) == 300
            outcomes.append("whole")
            url = page["@odata.nextLink"]
    finally:
        stack.simulator.faults.clear()
    assert outcomes[:3] == ["whole"] * 3 and outcomes[3] in ("502", "cut off") and len(outcomes) == 4
