"""
Upstream failures reach clients as clear statuses, never as a short or wrong
result: 502 for bad answers, 503 with Retry-After when throttled, 504 for
timeouts, and a dropped connection when the response had already started.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Iterator, TypedDict

import pytest
import pytest_twisted  # type: ignore[import-untyped]  # no py.typed marker, no stubs
import treq
from twisted.web.client import ResponseFailed

from harness import ADMIN_TOKEN, Reply, Stack, TreqHeaders, basic, small_company, start_stack
from odata_klein_plugins.clicktime.simulator import FaultRule


@pytest_twisted.async_yield_fixture(scope="module")
async def stack() -> AsyncIterator[Stack]:
    running = await start_stack(page_size=1000)
    # Let the service learn the caller (/Me, custom fields) before faults start.
    assert (await running.get("Divisions")).code == 200
    yield running
    await running.stop()


@pytest.fixture(autouse=True)
def clear_faults(stack: Stack) -> Iterator[None]:
    yield
    stack.simulator.faults.clear()


def error_of(reply: Reply) -> dict[str, Any]:
    body = reply.json()
    assert set(body["error"]) == {"code", "message", "target", "details"}
    return body["error"]


@pytest_twisted.ensureDeferred
async def test_throttling_then_success_is_retried(stack: Stack) -> None:
    stack.simulator.faults.add(FaultRule("status", path="TimeEntries", status=429, retry_after=0, times=2))
    reply = await stack.get("TimeEntries?$top=5")
    assert reply.code == 200 and len(reply.json()["value"]) == 5


@pytest_twisted.ensureDeferred
async def test_throttling_that_persists_is_503_with_retry_after(stack: Stack) -> None:
    stack.simulator.faults.add(FaultRule("status", path="TimeEntries", status=429, retry_after=0, times=None))
    reply = await stack.get("TimeEntries?$top=5")
    assert reply.code == 503
    retry_after = reply.header("retry-after")
    assert retry_after is not None and int(retry_after) >= 0
    error_of(reply)


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(
    "rule",
    [
        FaultRule("status", path="TimeEntries", status=500, times=None),
        FaultRule("status", path="TimeEntries", status=503, times=None),
        FaultRule("malformed", path="TimeEntries", times=None),
        FaultRule("truncated", path="TimeEntries", times=None),
        FaultRule("drop", path="TimeEntries", times=None),
    ],
    ids=["500", "503", "malformed", "truncated", "drop"],
)
async def test_bad_upstream_answers_are_502(stack: Stack, rule: FaultRule) -> None:
    stack.simulator.faults.add(rule)
    reply = await stack.get("TimeEntries?$top=5")
    assert reply.code == 502, reply.body
    error_of(reply)


@pytest_twisted.ensureDeferred
async def test_transient_failures_are_retried(stack: Stack) -> None:
    stack.simulator.faults.add(FaultRule("drop", path="TimeEntries", times=1))
    stack.simulator.faults.add(FaultRule("status", path="TimeEntries", status=502, times=1))
    reply = await stack.get("TimeEntries?$top=5")
    assert reply.code == 200


@pytest_twisted.ensureDeferred
async def test_upstream_refusal_is_403(stack: Stack) -> None:
    stack.simulator.faults.add(FaultRule("status", path="Jobs", status=403, times=None))
    reply = await stack.get("Jobs")
    assert reply.code == 403
    error_of(reply)


@pytest_twisted.ensureDeferred
async def test_failure_after_streaming_started_cuts_the_response(stack: Stack) -> None:
    # Upstream pages are 500 entries; the first two pass, every later one fails,
    # after the service has already sent the first rows.
    stack.simulator.faults.add(FaultRule("status", path="TimeEntries", status=500, after=2, times=None))
    headers: TreqHeaders = {"Authorization": basic(ADMIN_TOKEN), "Prefer": "odata.maxpagesize=2500"}
    response = await treq.get(
        (stack.url + "TimeEntries").encode(),
        headers=headers,
        unbuffered=True,
    )
    assert response.code == 200
    received: list[bytes] = []
    with pytest.raises(ResponseFailed):
        await treq.collect(response, received.append)
    body = b"".join(received)
    assert len(body) > 10_000
    with pytest.raises(ValueError):
        json.loads(body)


@pytest_twisted.async_yield_fixture(scope="module")
async def impatient_stack() -> AsyncIterator[Stack]:
    running = await start_stack(small_company(200), timeout=0.3, deadline=0.9)
    assert (await running.get("Divisions")).code == 200
    yield running
    await running.stop()


@pytest_twisted.ensureDeferred
async def test_slow_upstream_is_504(impatient_stack: Stack) -> None:
    impatient_stack.simulator.faults.add(FaultRule("slow", path="TimeEntries", delay=5, times=None))
    try:
        reply = await impatient_stack.get("TimeEntries?$top=5")
    finally:
        impatient_stack.simulator.faults.clear()
    assert reply.code == 504
    error_of(reply)


class _Leave(Exception):
    """Raised by a body collector to drop the connection (treq closes it then)."""


class _FirstChunk(TypedDict, total=False):
    """What a body collector saw when the first chunk came."""

    data: bytes
    held_back: int


@pytest_twisted.ensureDeferred
async def test_rows_stream_before_the_last_upstream_page(stack: Stack) -> None:
    # Upstream pages from the third of 5 on are held back for 30 s: rows that
    # arrive now went out before the last upstream page was answered.
    stack.simulator.faults.add(FaultRule("slow", path="TimeEntries", after=2, delay=30, times=None))
    headers: TreqHeaders = {"Authorization": basic(ADMIN_TOKEN), "Prefer": "odata.maxpagesize=2500"}
    response = await treq.get(
        (stack.url + "TimeEntries").encode(),
        headers=headers,
        unbuffered=True,
    )
    assert response.code == 200
    seen: _FirstChunk = {}

    def first_chunk(data: bytes) -> None:
        seen["data"] = data
        seen["held_back"] = len(stack.simulator.faults.fired)
        raise _Leave()

    with pytest.raises(_Leave):
        await treq.collect(response, first_chunk)
    assert b'"value":[{"ID":' in seen["data"]
    assert seen["held_back"] >= 1
