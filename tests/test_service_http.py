"""
The service end to end: real HTTP over loopback to the Klein app, which talks
HTTP to the ClickTime simulator.
"""

from __future__ import annotations

import gzip
import json
import socket
from typing import Any, AsyncIterator, Mapping, Optional, cast
from urllib.parse import parse_qsl, urlsplit

import pytest
import pytest_twisted  # type: ignore[import-untyped]  # no py.typed marker, no stubs
import treq
from twisted.internet import reactor, threads
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.web.client import Agent
from twisted.web.http_headers import Headers

from odata_klein.service import ODataService
from odata_klein.site import MAX_REQUEST_HEAD, ODataSite
from odata_klein_console import console_resource
from csdl_validation import validate_json, validate_xml_40, validate_xml_401
from odata_klein_plugins.clicktime.simulator import FaultRule
from harness import ADMIN_TOKEN, POWER_BI_HEADERS, STANDARD_TOKEN, LogCapture, Stack, basic, records_of, start_stack

ENTITY_SETS = ("TimeEntries", "Users", "Jobs", "Clients", "Tasks", "Divisions", "Timesheets")


@pytest_twisted.async_yield_fixture(scope="module")
async def stack() -> AsyncIterator[Stack]:
    running = await start_stack(page_size=1000)
    yield running
    await running.stop()


async def read_all(
    stack: Stack, url: str, headers: Optional[Mapping[str, str]] = None, token: Optional[str] = ADMIN_TOKEN
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Follow nextLinks as Power BI does; return the rows and every page's body."""
    rows: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    next_url: Optional[str] = url
    while next_url is not None:
        reply = await stack.get(next_url, token=token, headers=headers)
        assert reply.code == 200, reply.body
        assert reply.headers[b"odata-version"] == [b"4.0"]
        body = reply.json()
        pages.append(body)
        rows.extend(body["value"])
        next_url = body.get("@odata.nextLink")
        if next_url is not None:
            assert next_url.startswith(stack.url), next_url
    return rows, pages


@pytest_twisted.ensureDeferred
async def test_service_document(stack: Stack) -> None:
    reply = await stack.get("", headers=POWER_BI_HEADERS)
    assert reply.code == 200
    body = reply.json()
    assert body["@odata.context"] == stack.url + "$metadata"
    assert [entry["name"] for entry in body["value"]] == list(ENTITY_SETS)
    assert all(entry["kind"] == "EntitySet" for entry in body["value"])


async def raw_exchange(stack: Stack, request: bytes) -> bytes:
    """Everything the service answers to ``request`` on a connection of its own (in a thread: the socket blocks)."""
    port = cast(IPv4Address, stack.port.getHost()).port

    def exchange() -> bytes:
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.sendall(request)
            chunks = []
            while chunk := connection.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)

    answer: bytes = await threads.deferToThread(exchange)
    return answer


@pytest_twisted.ensureDeferred
async def test_exactly_one_odata_version_header_spelled_right(stack: Stack) -> None:
    """Power BI reads the raw header: one OData-Version, spelled as the spec spells it."""
    request = (
        b"GET /$metadata HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        + f"Authorization: {basic(ADMIN_TOKEN)}\r\n\r\n".encode()
    )
    head = (await raw_exchange(stack, request)).split(b"\r\n\r\n")[0]
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    version_lines = [line for line in lines if line.lower().startswith(b"odata-version")]
    assert version_lines == [b"OData-Version: 4.0"]


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(
    "head, status, code",
    [
        (b"GET /TimeEntries?$filter=" + b"x" * MAX_REQUEST_HEAD, b"414 URI Too Long", "URITooLong"),
        (b"GET /TimeEntries HTTP/1.1\r\nX-Big: " + b"y" * MAX_REQUEST_HEAD, b"431 Request Header Fields Too Large",
         "RequestHeaderFieldsTooLarge"),
        # Headers each under the limit, over it together.
        (b"GET /TimeEntries HTTP/1.1\r\n" + b"".join(b"X-Part-%d: " % n + b"z" * 200_000 + b"\r\n" for n in range(6))
         + b"X-Last: z", b"431 Request Header Fields Too Large", "RequestHeaderFieldsTooLarge"),
        # What is not HTTP at all.
        (b"GET /TimeEntries\r\nHost: x", b"400 Bad Request", "BadRequest"),
        (b"GET /TimeEntries HTTP/1.1\r\nNo colon here", b"400 Bad Request", "BadRequest"),
    ],
)
async def test_a_request_head_over_the_limit_or_unreadable_gets_an_odata_error(
    stack: Stack, head: bytes, status: bytes, code: str
) -> None:
    # The client is still sending when the answer comes: it must not be lost to a reset.
    with LogCapture() as log:
        answer = await raw_exchange(stack, head + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    # The log tells an administrator, without a byte of the head.
    [line] = [line for line in log.lines if "request head refused" in line]
    assert f" {status.split()[0].decode()} from 127.0.0.1:" in line and len(line) < 300
    response_head, _, body = answer.partition(b"\r\n\r\n")
    assert response_head.split(b"\r\n")[0] == b"HTTP/1.1 " + status
    assert b"OData-Version: 4.0" in response_head.split(b"\r\n")
    assert json.loads(body)["error"]["code"] == code
    assert (await stack.get("Divisions")).code == 200


@pytest_twisted.ensureDeferred
async def test_a_request_head_that_trickles_in_gets_408_in_its_time(stack: Stack) -> None:
    site = ODataSite(stack.service.resource(), head_seconds=0.2)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[arg-type]  # Twisted: listenTCP's ServerFactory is invariant in its protocol
    try:
        slow = Stack(stack.company, stack.simulator, stack.provider, port, "", stack.service)
        # A whole request is answered; the next, never finished, is refused.
        health = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        answer = await raw_exchange(slow, health + b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        first, second = answer.split(b"HTTP/1.1 408 Request Timeout\r\n")
        assert first.startswith(b"HTTP/1.1 200 OK") and b'{"status":"ok"}' in first
        head, _, body = second.partition(b"\r\n\r\n")
        assert b"OData-Version: 4.0" in head.split(b"\r\n")
        assert json.loads(body)["error"] == {
            "code": "RequestTimeout", "message": "the request head took longer than 0.2 seconds",
            "target": None, "details": [],
        }
        # A request line that never ends is a head too.
        answer = await raw_exchange(slow, b"GET /hea")
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        # A head sent while an earlier request is answered (here for longer
        # than a head may take) has its time from when the answer is done.
        stack.simulator.faults.add(FaultRule("slow", path="/v2/TimeEntries", delay=1.0))
        request = f"GET /TimeEntries?$top=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {basic(ADMIN_TOKEN)}\r\n\r\n"
        answer = await raw_exchange(slow, request.encode() + b"GET /health HTTP/1.1\r\n")
        first, second = answer.split(b"HTTP/1.1 408 Request Timeout\r\n")
        # The whole answer, to its last chunk, came first.
        assert first.startswith(b"HTTP/1.1 200 OK\r\n") and first.endswith(b"]}\r\n0\r\n\r\n")
    finally:
        await cast(Deferred[None], port.stopListening())


@pytest_twisted.ensureDeferred
async def test_metadata_is_valid_csdl_xml_for_power_bi(stack: Stack) -> None:
    reply = await stack.get("$metadata", headers=POWER_BI_HEADERS)
    assert reply.code == 200
    content_type = reply.header("content-type")
    assert content_type is not None
    assert content_type.startswith("application/xml")
    validate_xml_40(reply.body)
    validate_xml_401(reply.body)
    assert b'Name="CustomField_' in reply.body


@pytest_twisted.ensureDeferred
async def test_metadata_json_when_asked_unambiguously(stack: Stack) -> None:
    reply = await stack.get("$metadata?$format=json")
    content_type = reply.header("content-type")
    assert content_type is not None
    assert reply.code == 200 and content_type.startswith("application/json")
    validate_json(reply.json())
    content_type = (await stack.get("$metadata", headers={"Accept": "application/json"})).header("content-type")
    assert content_type is not None
    assert content_type.startswith("application/json")


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("entity_set", ENTITY_SETS)
async def test_power_bi_reads_every_row(stack: Stack, entity_set: str) -> None:
    rows, pages = await read_all(stack, entity_set, headers=POWER_BI_HEADERS)
    expected = records_of(stack.company, entity_set)
    assert [row["ID"] for row in rows] == [record.ID for record in expected]
    assert all(page["@odata.context"] == f"{stack.url}$metadata#{entity_set}" for page in pages)
    if len(expected) > 1000:
        assert len(pages) == -(-len(expected) // 1000)


@pytest_twisted.ensureDeferred
async def test_values_are_typed_and_complete(stack: Stack) -> None:
    rows, _ = await read_all(stack, "TimeEntries")
    by_id = {row["ID"]: row for row in rows}
    for record in stack.company.time_entries[:200]:
        row = by_id[record.ID]
        assert row["Date"] == record.Date
        assert float(row["Hours"]) == record.Hours
        assert row["StartTime"] == (record.StartTime + ":00" if record.StartTime else None)
        assert row["Comment"] == record.Comment
        assert (row["JobID"], row["TaskID"], row["UserID"]) == (record.JobID, record.TaskID, record.UserID)
        assert row["CustomFields"] == (record.CustomFields or None)
        assert json.loads(row["CustomFieldsStr"] or "null") == (record.CustomFields or None)
    clients, _ = await read_all(stack, "Clients")
    assert all(c["CreatedDate"].endswith("Z") or c["CreatedDate"][-6] in "+-" for c in clients)


@pytest_twisted.ensureDeferred
async def test_max_page_size_preference(stack: Stack) -> None:
    headers = {**POWER_BI_HEADERS, "Prefer": "odata.maxpagesize=100"}
    first = await stack.get("Jobs", headers=headers)
    assert first.header("preference-applied") == "odata.maxpagesize=100"
    rows, pages = await read_all(stack, "Jobs", headers=headers)
    assert [row["ID"] for row in rows] == [job.ID for job in stack.company.jobs]
    assert all(len(page["value"]) == 100 for page in pages[:-1])


@pytest_twisted.ensureDeferred
async def test_tableau_style_top_and_skip(stack: Stack) -> None:
    expected = [entry.ID for entry in stack.company.time_entries]
    collected: list[str] = []
    for skip in range(0, len(expected), 700):
        reply = await stack.get(f"TimeEntries?$top=700&$skip={skip}")
        body = reply.json()
        assert "@odata.nextLink" not in body
        collected.extend(row["ID"] for row in body["value"])
    assert collected == expected


@pytest_twisted.ensureDeferred
async def test_top_larger_than_a_page_pages_with_the_remainder(stack: Stack) -> None:
    rows, pages = await read_all(stack, "TimeEntries?$top=2100&$select=ID,Hours")
    assert len(rows) == 2100 and len(pages) == 3
    assert set(rows[0]) == {"ID", "Hours"}
    assert pages[0]["@odata.context"] == f"{stack.url}$metadata#TimeEntries(ID,Hours)"
    assert dict(parse_qsl(urlsplit(pages[1]["@odata.nextLink"]).query))["$top"] == "100"


@pytest_twisted.ensureDeferred
async def test_count(stack: Stack) -> None:
    total = len(stack.company.time_entries)
    reply = await stack.get("TimeEntries/$count", headers=POWER_BI_HEADERS)
    assert reply.code == 200 and reply.body == str(total).encode()
    content_type = reply.header("content-type")
    assert content_type is not None
    assert content_type.startswith("text/plain")
    body = (await stack.get("TimeEntries?$count=true&$top=0")).json()
    assert body["@odata.count"] == total and body["value"] == []


@pytest_twisted.ensureDeferred
async def test_count_of_a_pushed_down_filter_is_one_upstream_request(stack: Stack) -> None:
    user = stack.company.time_entries[0].UserID
    expected = sum(1 for e in stack.company.time_entries if e.UserID == user)
    with LogCapture() as log:
        reply = await stack.get(f"TimeEntries/$count?$filter=UserID eq '{user}'".replace(" ", "%20"))
    assert reply.body == str(expected).encode()
    access = [e["access"] for e in log.events if "access" in e]
    assert access[-1].upstream_requests == 1


@pytest_twisted.ensureDeferred
async def test_entity_property_value_and_navigation(stack: Stack) -> None:
    entry = next(e for e in stack.company.time_entries if e.Comment)
    reply = await stack.get(f"TimeEntries('{entry.ID}')")
    body = reply.json()
    assert body["@odata.context"] == f"{stack.url}$metadata#TimeEntries/$entity"
    assert body["ID"] == entry.ID and body["Comment"] == entry.Comment

    as_segment = (await stack.get(f"TimeEntries/{entry.ID}")).json()
    assert as_segment["ID"] == entry.ID

    comment = (await stack.get(f"TimeEntries('{entry.ID}')/Comment")).json()
    assert comment == {
        "@odata.context": f"{stack.url}$metadata#TimeEntries('{entry.ID}')/Comment",
        "value": entry.Comment,
    }
    raw = await stack.get(f"TimeEntries('{entry.ID}')/Comment/$value")
    content_type = raw.header("content-type")
    assert content_type is not None
    assert raw.body.decode() == entry.Comment and content_type.startswith("text/plain")

    job = (await stack.get(f"TimeEntries('{entry.ID}')/Job")).json()
    assert job["ID"] == entry.JobID and job["@odata.context"] == f"{stack.url}$metadata#Jobs/$entity"
    client_name = (await stack.get(f"TimeEntries('{entry.ID}')/Job/Client/Name")).json()["value"]
    job_record = next(j for j in stack.company.jobs if j.ID == entry.JobID)
    assert client_name == next(c.Name for c in stack.company.clients if c.ID == job_record.ClientID)


@pytest_twisted.ensureDeferred
async def test_timesheet_entries(stack: Stack) -> None:
    sheet = next(
        s
        for s in stack.company.timesheets
        if any(
            e.UserID == s.UserID and s.StartDate <= e.Date <= s.EndDate for e in stack.company.time_entries
        )
    )
    expected = {
        e.ID
        for e in stack.company.time_entries
        if e.UserID == sheet.UserID and sheet.StartDate <= e.Date <= sheet.EndDate
    }
    body = (await stack.get(f"Timesheets('{sheet.ID}')/TimeEntries")).json()
    assert {row["ID"] for row in body["value"]} == expected
    assert body["@odata.context"] == f"{stack.url}$metadata#TimeEntries"
    assert (await stack.get(f"Timesheets('{sheet.ID}')")).json()["UserID"] == sheet.UserID


@pytest_twisted.ensureDeferred
async def test_standard_user_sees_own_records_and_no_rates(stack: Stack) -> None:
    me = stack.company.tokens[STANDARD_TOKEN]
    metadata = await stack.get("$metadata", token=STANDARD_TOKEN)
    assert b'Name="BillingRate"' not in metadata.body and b'Name="CostRate"' not in metadata.body
    rows, _ = await read_all(stack, "TimeEntries", token=STANDARD_TOKEN)
    assert rows and {row["UserID"] for row in rows} == {me}
    assert len(rows) == sum(1 for e in stack.company.time_entries if e.UserID == me)
    for entity_set in ENTITY_SETS:
        reply = await stack.get(entity_set, token=STANDARD_TOKEN)
        assert reply.code == 200, (entity_set, reply.body)
        assert b'"BillingRate":' not in reply.body and b'"CostRate":' not in reply.body


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(
    "authorization",
    [None, basic("not-a-token"), basic(ADMIN_TOKEN, user="admin"), "Bearer not-a-token", "Basic ???"],
)
async def test_missing_or_rejected_credentials_get_the_basic_challenge(stack: Stack, authorization: Optional[str]) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    reply = await stack.get("TimeEntries", token=None, headers=headers)
    assert reply.code == 401
    challenge = reply.header("www-authenticate")
    assert challenge is not None
    assert challenge.startswith('Basic realm="ClickTime OData"')
    assert set(reply.json()["error"]) == {"code", "message", "target", "details"}


@pytest_twisted.ensureDeferred
async def test_bearer_and_case_insensitive_user(stack: Stack) -> None:
    assert (
        await stack.get("Divisions", token=None, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    ).code == 200
    assert (
        await stack.get("Divisions", token=None, headers={"Authorization": basic(ADMIN_TOKEN, "ClickTime")})
    ).code == 200


@pytest_twisted.ensureDeferred
async def test_health_needs_no_credentials(stack: Stack) -> None:
    reply = await stack.get("health", token=None)
    assert reply.code == 200 and reply.json() == {"status": "ok"}


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(
    "path, status",
    [
        ("Nonsense", 404),
        ("TimeEntries('no-such-id')", 404),
        ("TimeEntries('x')/NoSuchProperty", 404),
        ("TimeEntries(42)", 400),
        ("TimeEntries('unterminated", 400),
        ("TimeEntries?$top=-1", 400),
        ("TimeEntries?$top=abc", 400),
        ("TimeEntries?$filter=Hours eq", 400),
        ("TimeEntries?$skiptoken=garbage", 400),
        ("TimeEntries?$expand=Job/$ref", 501),
        ("TimeEntries?$apply=aggregate(Hours with sum as Total)", 501),
        ("TimeEntries?$orderby=Hours&$skiptoken=abc", 400),
        ("TimeEntries?$format=xml", 406),
    ],
)
async def test_client_errors_are_odata_errors(stack: Stack, path: str, status: int) -> None:
    reply = await stack.get(path.replace(" ", "%20"))
    assert reply.code == status, reply.body
    error = reply.json()["error"]
    assert set(error) == {"code", "message", "target", "details"}
    assert error["message"]
    assert reply.headers[b"odata-version"] == [b"4.0"]


@pytest_twisted.ensureDeferred
async def test_writes_are_not_allowed(stack: Stack) -> None:
    reply = await stack.get("TimeEntries", method="POST")
    assert reply.code == 405
    assert reply.header("allow") == "GET, HEAD"


@pytest_twisted.ensureDeferred
async def test_old_clients_are_refused(stack: Stack) -> None:
    reply = await stack.get("TimeEntries", headers={"OData-MaxVersion": "3.0"})
    assert reply.code == 406


@pytest_twisted.ensureDeferred
async def test_gzip(stack: Stack) -> None:
    # A plain Agent: treq would decode gzip itself and hide the header.
    response = await Agent(reactor).request(
        b"GET",
        (stack.url + "Jobs").encode(),
        Headers({"Accept-Encoding": ["gzip, deflate"], "Authorization": [basic(ADMIN_TOKEN)]}),
    )
    assert response.headers.getRawHeaders("content-encoding") == ["gzip"]
    body = json.loads(gzip.decompress(await treq.content(response)))
    assert len(body["value"]) == len(stack.company.jobs)


@pytest_twisted.ensureDeferred
async def test_gzip_of_a_file_with_a_length(stack: Stack) -> None:
    # Static files set Content-Length for their plain bytes: a gzip answer must not keep it.
    service = ODataService(stack.provider, console=console_resource(basic_user="clicktime", realm="ClickTime OData"))
    port = reactor.listenTCP(0, service.site(), interface="127.0.0.1")  # type: ignore[arg-type]  # Twisted: listenTCP's ServerFactory is invariant in its protocol
    try:
        response = await Agent(reactor).request(
            b"GET",
            b"http://127.0.0.1:%d/console/static/console.js" % cast(IPv4Address, port.getHost()).port,
            Headers({"Accept-Encoding": ["gzip"]}),
        )
        body = await treq.content(response)
    finally:
        await cast(Deferred[None], port.stopListening())
        service.close()
    assert response.headers.getRawHeaders("content-encoding") == ["gzip"]
    assert response.headers.getRawHeaders("content-length") in (None, [str(len(body))])
    assert b"function" in gzip.decompress(body)


@pytest_twisted.ensureDeferred
async def test_metadata_levels(stack: Stack) -> None:
    full = (await stack.get("Divisions", headers={"Accept": "application/json;odata.metadata=full"})).json()
    first = full["value"][0]
    assert first["@odata.type"] == "#ClickTime.Division"
    assert first["@odata.id"] == f"{stack.url}Divisions('{first['ID']}')"
    none = (await stack.get("Divisions?$format=application/json;odata.metadata=none")).json()
    assert "@odata.context" not in none and "@odata.type" not in none["value"][0]


@pytest_twisted.ensureDeferred
async def test_next_link_works_on_another_instance(stack: Stack) -> None:
    """Nothing is kept between requests: a second instance serves the first one's nextLink."""
    first = (await stack.get("TimeEntries")).json()
    other = await start_stack(stack.company, page_size=1000)
    try:
        moved = first["@odata.nextLink"].replace(stack.url, other.url)
        second_here = (await stack.get(first["@odata.nextLink"])).json()
        second_there = (await other.get(moved)).json()
        assert second_here["value"] == second_there["value"]
        assert second_there["@odata.nextLink"].startswith(other.url)
    finally:
        await other.stop()


@pytest_twisted.ensureDeferred
async def test_token_never_in_logs_or_links(stack: Stack) -> None:
    with LogCapture() as log:
        rows, pages = await read_all(stack, "TimeEntries", headers=POWER_BI_HEADERS)
        await stack.get("TimeEntries('nope')")
        await stack.get("Divisions", token="wrong-token-secret")
    assert ADMIN_TOKEN not in log.text and "wrong-token-secret" not in log.text
    assert ADMIN_TOKEN not in json.dumps(pages)
    access = [event["access"] for event in log.events if "access" in event]
    assert len(access) == len(pages) + 2
    assert access[-2].status == 404 and access[-1].status == 401
    assert access[0].upstream_requests >= 2 and access[0].bytes_sent > 0
