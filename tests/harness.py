"""
The real stack for tests: the ClickTime simulator and the OData service, each
listening on a loopback port, talked to over HTTP with treq.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, cast

import treq
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort
from twisted.logger import ILogObserver, globalLogPublisher, formatEvent
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request
from zope.interface import implementer

from odata_klein.service import ODataService
from odata_klein_plugins.clicktime.client import ClickTimeClient
from odata_klein_plugins.clicktime.provider import ClickTimeProvider
from odata_klein_plugins.clicktime.simulator import Company, generate_company, start_simulator

ADMIN_TOKEN = "test-admin-token-0123456789"
STANDARD_TOKEN = "test-standard-token-9876543210"

POWER_BI_HEADERS = {
    "User-Agent": "Microsoft.Data.Mashup (https://go.microsoft.com/fwlink/?LinkID=304225)",
    "Accept-Encoding": "gzip, deflate",
    "OData-MaxVersion": "4.0",
    "MaxDataServiceVersion": "3.0",
    "Accept": (
        "application/json;odata.metadata=minimal;q=1.0, application/json;odata=minimalmetadata;q=0.9, "
        "application/atomsvc+xml;q=0.8, application/atom+xml;q=0.8, application/xml;q=0.7, text/plain;q=0.7"
    ),
}


# Entity set -> the Company attribute holding its records.
RECORDS = {
    "TimeEntries": "time_entries",
    "Users": "users",
    "Jobs": "jobs",
    "Clients": "clients",
    "Tasks": "tasks",
    "Divisions": "divisions",
    "Timesheets": "timesheets",
}


# Headers for treq, named: a dict literal given straight to treq's headers=
# does not type-check (mypy cannot choose among the dict types treq takes),
# and neither does a dict[str, str] (dict keys are invariant).
TreqHeaders = dict[str | bytes, str | bytes]


def records_of(company: Company, entity_set: str) -> list:
    """The simulator's records of an entity set, in ClickTime's order."""
    return list(getattr(company, RECORDS[entity_set]))


def small_company(entries: int = 2500) -> Company:
    return generate_company(entries=entries, seed=7, admin_token=ADMIN_TOKEN, standard_token=STANDARD_TOKEN)


def basic(token: str, user: str = "clicktime") -> str:
    return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()


@dataclass
class Reply:
    code: int
    headers: Mapping[bytes, list[bytes]]
    body: bytes

    def header(self, name: str) -> Optional[str]:
        values = self.headers.get(name.lower().encode())
        return values[0].decode() if values else None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Stack:
    company: Company
    simulator: Any
    provider: ClickTimeProvider
    port: IListeningPort
    url: str
    service: ODataService

    async def get(
        self,
        path_or_url: str,
        token: Optional[str] = ADMIN_TOKEN,
        headers: Optional[Mapping[str, str]] = None,
        method: str = "GET",
    ) -> Reply:
        url = path_or_url if path_or_url.startswith("http") else self.url + path_or_url.lstrip("/")
        sent: TreqHeaders = dict((headers or {}).items())  # from the pairs: a Mapping[str, str] is no TreqHeaders
        if token is not None and "Authorization" not in sent:
            sent["Authorization"] = basic(token)
        response = await treq.request(method, url.encode("ascii"), headers=sent, unbuffered=True)
        body = await treq.content(response)
        raw = {name.lower(): values for name, values in response.headers.getAllRawHeaders()}
        return Reply(response.code, raw, body)

    async def stop(self) -> None:
        await cast(Deferred[None], self.port.stopListening())  # a listening TCP port's is a Deferred
        self.service.close()
        await self.provider.close()
        await self.simulator.stop()


async def start_stack(
    company: Optional[Company] = None,
    *,
    page_size: int = 1000,
    timeout: float = 2.0,
    deadline: float = 6.0,
    pushdown: bool = True,
    read_ahead_pages: int = 8,
    page_seconds: Optional[float] = None,
) -> Stack:
    company = company or small_company()
    simulator = await start_simulator(reactor, company)
    client = ClickTimeClient(
        reactor,
        simulator.base_url,
        timeout=timeout,
        deadline=deadline,
        max_attempts=3,
        backoff=lambda attempt: 0.01,
    )
    provider = ClickTimeProvider(reactor, client, pushdown=pushdown)
    # No time limit on pages unless asked: a slow test machine must not cut pages short.
    service = ODataService(provider, page_size=page_size, read_ahead_pages=read_ahead_pages, page_seconds=page_seconds)
    # Twisted wants ServerFactory[_ProtoWithFactory], which no Site is: the type parameter is invariant.
    port = reactor.listenTCP(0, service.site(), interface="127.0.0.1")  # type: ignore[arg-type]
    url = f"http://127.0.0.1:{cast(IPv4Address, port.getHost()).port}/"
    return Stack(company, simulator, provider, port, url, service)


@dataclass
class Arrival:
    token: str
    params: dict[str, list[str]]


class Observed(Resource):
    """
    The simulator's resource, watched from the server side: every request as
    it arrives, how many are in flight per token, and requests whose client
    went away before the answer.
    """

    isLeaf = True

    def __init__(self, inner: IResource) -> None:
        super().__init__()
        self._inner = inner
        self.arrivals: list[Arrival] = []
        self.abandoned: list[Arrival] = []
        self.in_flight: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self._waiters: list[tuple[Callable[[], bool], Deferred[None]]] = []

    def render(self, request: Request) -> Any:
        authorization = (request.getHeader("authorization") or "").partition(" ")[2]
        assert request.args is not None  # None only until the request is received
        arrival = Arrival(
            authorization, {k.decode(): [v.decode() for v in vs] for k, vs in request.args.items()}
        )
        self.arrivals.append(arrival)
        self.in_flight[arrival.token] = self.in_flight.get(arrival.token, 0) + 1
        self.peak[arrival.token] = max(self.peak.get(arrival.token, 0), self.in_flight[arrival.token])
        request.notifyFinish().addBoth(self._finished, arrival)
        self._notify()
        return self._inner.render(request)

    def _finished(self, result: object, arrival: Arrival) -> None:
        self.in_flight[arrival.token] -= 1
        if isinstance(result, Failure):
            self.abandoned.append(arrival)
        self._notify()

    def until(self, condition: Callable[[], bool], seconds: float = 5.0) -> Deferred[None]:
        """Fires once ``condition()`` holds (checked as requests come and go); fails after ``seconds``."""
        waiter: Deferred[None] = Deferred()
        self._waiters.append((condition, waiter))
        self._notify()
        return waiter.addTimeout(seconds, reactor)

    def _notify(self) -> None:
        for entry in list(self._waiters):
            condition, waiter = entry
            if waiter.called:
                self._waiters.remove(entry)
            elif condition():
                self._waiters.remove(entry)
                waiter.callback(None)


@implementer(ILogObserver)
@dataclass
class LogCapture:
    """Every log event while active, formatted as text (tracebacks included)."""

    lines: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self.lines.append(formatEvent(event) or "")
        failure = event.get("log_failure")
        if failure is not None:
            self.lines.append(failure.getTraceback())

    def __enter__(self) -> "LogCapture":
        globalLogPublisher.addObserver(self)
        return self

    def __exit__(self, *exc: object) -> None:
        globalLogPublisher.removeObserver(self)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)
