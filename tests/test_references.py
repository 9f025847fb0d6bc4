"""
Reference-set copies: the per-token cache, conditions through navigation
properties turned into foreign-key conditions, and both end to end over the
simulator (rows as the engine alone would give them, fewer rows fetched).
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, AsyncIterator, Callable, Iterable, Optional, cast
from urllib.parse import quote

import pytest
import pytest_twisted  # type: ignore[import-untyped]  # no py.typed marker, no stubs
import treq
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.internet.task import Clock
from zope.interface import implementer

from harness import ADMIN_TOKEN, STANDARD_TOKEN, Stack, TreqHeaders, small_company
from odata_klein.binder import Binder
from odata_klein.bound import BoundExpr, BoundIn, BoundLiteral, BoundProperty, BoundUnary, conjuncts
from odata_klein.errors import BadGateway
from odata_klein.evaluate import compile_predicate
from odata_klein.interfaces import Credentials, IProvider, IProviderSession, Row, Trace
from odata_klein.parser import QueryParser
from odata_klein.service import ODataService
from odata_klein_plugins.clicktime.client import ClickTimeClient
from odata_klein_plugins.clicktime.provider import ClickTimeProvider
from odata_klein_plugins.clicktime.pushdown import MAX_PUSHED_VALUES, plan_pushdown
from odata_klein_plugins.clicktime.references import (
    ExpiringCache,
    resolve_navigation,
    uses_navigation,
)
from odata_klein_plugins.clicktime.schema import build_model
from odata_klein_plugins.clicktime.simulator import Company, FaultRule, generate_company, start_simulator

MODEL = build_model([], sees_rates=True)
PARSER = QueryParser()
S = "Edm.String"


def bind(entity_set: str, text: str) -> BoundExpr:
    entity_type = MODEL.type_of(MODEL.entity_set(entity_set))
    return Binder(MODEL).bind_filter(PARSER.parse_filter(text), entity_type)


def ids(*values: str) -> tuple[BoundLiteral, ...]:
    return tuple(BoundLiteral(v, S) for v in values)


# --- ExpiringCache ------------------------------------------------------------------------------


@dataclass
class Loads:
    """Loads that finish when the test says so."""

    pending: list[Deferred[Any]] = field(default_factory=list)

    def __call__(self) -> Any:
        finished: Deferred[Any] = Deferred()
        self.pending.append(finished)

        async def load() -> Any:
            return await finished

        return load()


def results(deferred: Deferred[Any]) -> list[Any]:
    found: list[Any] = []
    deferred.addBoth(found.append)
    return found


def test_concurrent_gets_share_one_load_and_values_expire() -> None:
    clock, loads = Clock(), Loads()
    cache: ExpiringCache[str, str] = ExpiringCache(clock, 60, 10)
    first, second = results(cache.get("k", loads)), results(cache.get("k", loads))
    assert len(loads.pending) == 1 and first == second == []
    loads.pending[0].callback("v")
    assert first == second == ["v"]
    clock.advance(59)
    assert results(cache.get("k", loads)) == ["v"] and len(loads.pending) == 1
    clock.advance(1)
    assert results(cache.get("k", loads)) == [] and len(loads.pending) == 2


def test_failures_are_not_kept() -> None:
    clock, loads = Clock(), Loads()
    cache: ExpiringCache[str, str] = ExpiringCache(clock, 60, 10)
    first, second = results(cache.get("k", loads)), results(cache.get("k", loads))
    loads.pending[0].errback(BadGateway("down"))
    assert [r.check(BadGateway) for r in first + second] == [BadGateway, BadGateway]
    third = results(cache.get("k", loads))
    assert len(loads.pending) == 2
    loads.pending[1].callback("v")
    assert third == ["v"]


def test_capacity_and_usability() -> None:
    clock, loads = Clock(), Loads()
    cache: ExpiringCache[str, str] = ExpiringCache(clock, 60, 2)
    for key in ("a", "b", "c"):
        cache.get(key, loads)
        loads.pending[-1].callback(key)
    assert results(cache.get("c", loads)) == ["c"] and len(loads.pending) == 3
    # "a", the oldest, made room for "c".
    cache.get("a", loads)
    assert len(loads.pending) == 4
    loads.pending[-1].callback("a")
    assert results(cache.get("a", loads, lambda value: value != "a")) == [] and len(loads.pending) == 5


# --- Navigation conditions as foreign-key conditions ---------------------------------------------


CLIENTS: list[Row] = [{"ID": "c1", "Name": "Acme"}, {"ID": "c2", "Name": "Globex"}]
JOBS: list[Row] = [
    {"ID": "j1", "Name": "Website", "ClientID": "c1", "IsBillable": True, "ProjectManagerID": "u2"},
    {"ID": "j2", "Name": "Website", "ClientID": "c2", "IsBillable": False, "ProjectManagerID": None},
    {"ID": "j3", "Name": "Audit", "ClientID": "c1", "IsBillable": True, "ProjectManagerID": "u1"},
    {"ID": "j4", "Name": "Orphan", "ClientID": None, "IsBillable": False, "ProjectManagerID": "u1"},
]
DIVISIONS: list[Row] = [{"ID": "d1", "Name": "Engineering"}, {"ID": "d2", "Name": "Design"}]
USERS: list[Row] = [{"ID": "u1", "DivisionID": "d1", "Name": "Ann"}, {"ID": "u2", "DivisionID": "d2", "Name": "Ben"}]
TASKS: list[Row] = [{"ID": "t1", "IsBillable": True}, {"ID": "t2", "IsBillable": False}]
CACHED: dict[str, list[Row]] = {"Clients": CLIENTS, "Jobs": JOBS, "Divisions": DIVISIONS, "Users": USERS, "Tasks": TASKS}
ENTRIES = [
    {"ID": f"e{n}", "JobID": job, "TaskID": task, "UserID": user, "Hours": Decimal(n), "Comment": comment}
    for n, (job, task, user, comment) in enumerate(
        [
            ("j1", "t1", "u1", "Website"),
            ("j2", "t2", "u2", None),
            ("j3", "t1", "u2", "x"),
            ("j4", "t2", "u1", "Orphan"),
            (None, None, None, None),
            ("gone", "gone", "gone", None),  # refers to rows no copy has
        ]
    )
]


def joined(row: dict, entity_set: str) -> dict:
    """``row`` with its related rows (null where there is none), as an engine expanding them would see it."""
    entity_set_model = MODEL.entity_set(entity_set)
    entity_type = MODEL.type_of(entity_set_model)
    result = dict(row)
    for nav in entity_type.navigation_properties:
        if nav.collection:
            continue
        target = entity_set_model.navigation_bindings[nav.name]
        key = row.get(nav.constraints[0].property)
        related = next((r for r in CACHED[target] if r["ID"] == key), None)
        result[nav.name] = None if related is None else joined(related, target)
    return result


async def resolve(
    entity_set: str, text: str, unavailable: frozenset[str] = frozenset()
) -> tuple[Optional[BoundExpr], list[str]]:
    async def rows_of(name: str) -> Optional[list[Row]]:
        return None if name in unavailable else CACHED[name]

    return await resolve_navigation(MODEL, entity_set, bind(entity_set, text), rows_of)


@pytest_twisted.ensureDeferred
async def test_a_path_to_a_key_becomes_a_foreign_key_list() -> None:
    filter_, notes = await resolve("TimeEntries", "Job/Client/ID eq 'c1' and Hours gt 2")
    first, second = conjuncts(filter_)
    assert first == BoundIn(BoundProperty(("JobID",), S), ids("j1", "j3"))
    assert second == bind("TimeEntries", "Hours gt 2")
    assert len(notes) == 1 and "JobID" in notes[0]
    assert (await resolve("TimeEntries", "User/Division/Name eq 'Engineering'"))[0] == BoundIn(
        BoundProperty(("UserID",), S), ids("u1")
    )
    assert (await resolve("TimeEntries", "Task/IsBillable"))[0] == BoundIn(BoundProperty(("TaskID",), S), ids("t1"))
    assert (await resolve("Jobs", "Client/Name eq 'Globex'"))[0] == BoundIn(BoundProperty(("ClientID",), S), ids("c2"))


@pytest_twisted.ensureDeferred
async def test_conditions_true_for_no_related_entity_name_the_excluded_keys() -> None:
    filter_, _ = await resolve("TimeEntries", "Job/Client/Name ne 'Acme'")
    assert filter_ == BoundUnary("not", BoundIn(BoundProperty(("JobID",), S), ids("j1", "j3")), "Edm.Boolean")
    assert (await resolve("TimeEntries", "Job ne null or Hours gt 1"))[0] == bind(
        "TimeEntries", "Job ne null or Hours gt 1"
    )
    # Every job, and no job, satisfies it: it holds for every entry.
    assert (await resolve("TimeEntries", "Job/Name ne 'nothing'"))[0] == BoundLiteral(True, "Edm.Boolean")


@pytest_twisted.ensureDeferred
async def test_nothing_matching_matches_no_row() -> None:
    filter_, _ = await resolve("TimeEntries", "Job/Name eq 'Nothing like it'")
    assert filter_ == BoundIn(BoundProperty(("JobID",), S), ())
    assert plan_pushdown("TimeEntries", filter_, own_scope=False).matches_nothing


@pytest_twisted.ensureDeferred
async def test_what_stays_for_the_engine() -> None:
    for text in (
        "Job/Name eq Comment",  # reads the entry itself too
        "Job/Name eq 'Website' or Task/IsBillable",  # two navigation properties
        "Job/Client/Name eq 'Acme'",  # Clients unavailable below
        "Job/ProjectManager/ID eq User/ID",  # two navigation properties
    ):
        filter_, notes = await resolve("TimeEntries", text, unavailable=frozenset({"Clients"}))
        assert filter_ == bind("TimeEntries", text) and notes == []
    lambda_ = "TimeEntries/any(t: t/Job/Name eq 'Website')"
    assert (await resolve("Timesheets", lambda_))[0] == bind("Timesheets", lambda_)


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(
    "text",
    [
        "Job/Client/ID eq 'c1'",
        "Job/Name eq 'Website' and Hours ge 1",
        "Job/Client/Name ne 'Acme'",
        "Job/ProjectManager/Division/Name eq 'Engineering'",
        "not (Job/IsBillable)",
        "Job/IsBillable eq false",
        "Job eq null",
        "Job ne null",
        "Job/Client eq null",
        "Task/IsBillable",
        "User/Division/Name in ('Engineering', 'Design')",
        "startswith(User/Name, 'A') or User/Name eq null",
        "Job/Name eq 'Website' or Job/Name eq 'Audit'",
    ],
)
async def test_foreign_key_conditions_hold_exactly_when_the_original_does(text: str) -> None:
    original = compile_predicate(bind("TimeEntries", text))
    resolved, _ = await resolve("TimeEntries", text)
    assert resolved is not None  # no condition here resolves to nothing
    rewritten = compile_predicate(resolved)
    expected = [row["ID"] for row in ENTRIES if original(joined(row, "TimeEntries"))]
    assert [row["ID"] for row in ENTRIES if rewritten(row)] == expected
    assert not uses_navigation(MODEL, resolved)


def test_uses_navigation() -> None:
    assert uses_navigation(MODEL, bind("Jobs", "Client eq null"))
    assert uses_navigation(MODEL, bind("Jobs", "Client/Name eq 'x'"))
    assert uses_navigation(MODEL, bind("Timesheets", "TimeEntries/any()"))
    assert not uses_navigation(MODEL, bind("Jobs", "Name eq 'x' and CustomFields/Budget gt 1"))
    assert not uses_navigation(MODEL, None)


# --- End to end --------------------------------------------------------------------------------


@implementer(IProvider)
class TracedProvider:
    """The provider, keeping each request's Trace so that tests can count the rows fetched."""

    realm = ClickTimeProvider.realm

    def __init__(self, inner: ClickTimeProvider) -> None:
        self.inner = inner
        self.traces: list[Trace] = []

    def open_session(self, credentials: Optional[Credentials], trace: Trace) -> IProviderSession:
        self.traces.append(trace)
        return self.inner.open_session(credentials, trace)

    def close(self) -> Deferred[None]:
        return self.inner.close()

    def rows_fetched(self) -> int:
        return sum(call.rows or 0 for trace in self.traces for call in trace.calls)


@dataclass
class Traced:
    stack: Stack
    provider: TracedProvider
    clock: Any = reactor

    def upstream(self, path: str = "") -> int:
        """How many requests the simulator received, for paths ending in ``path``."""
        return sum(1 for request in self.stack.simulator.requests if request.path.endswith(path))

    async def rows(self, url: str, token: str = ADMIN_TOKEN) -> tuple[list[dict], int]:
        """Every row (following nextLinks) and how many rows the provider fetched upstream for them."""
        self.provider.traces.clear()
        rows, next_url = [], url.replace(" ", "%20")
        while next_url is not None:
            reply = await self.stack.get(next_url, token=token)
            assert reply.code == 200, reply.body
            body = reply.json()
            rows.extend(body["value"])
            next_url = body.get("@odata.nextLink")
        return rows, self.provider.rows_fetched()


async def start_traced(company: Company, clock: Any = reactor, **options: Any) -> Traced:
    simulator = await start_simulator(reactor, company)
    client = ClickTimeClient(
        reactor, simulator.base_url, timeout=2.0, deadline=6.0, max_attempts=3, backoff=lambda attempt: 0.01
    )
    provider = TracedProvider(ClickTimeProvider(clock, client, **options))
    service = ODataService(provider, page_size=1000)
    port = reactor.listenTCP(0, service.site(), interface="127.0.0.1")  # type: ignore[arg-type]  # Twisted: listenTCP's ServerFactory is invariant in its protocol
    stack = Stack(company, simulator, provider, port, f"http://127.0.0.1:{cast(IPv4Address, port.getHost()).port}/", service)
    return Traced(stack, provider, clock)


@pytest.fixture(scope="module")
def company() -> Company:
    return small_company()


@pytest_twisted.async_yield_fixture(scope="module")
async def pushed(company: Company) -> AsyncIterator[Traced]:
    traced = await start_traced(company)
    yield traced
    await traced.stack.stop()


@pytest_twisted.async_yield_fixture(scope="module")
async def unpushed(company: Company) -> AsyncIterator[Traced]:
    traced = await start_traced(company, pushdown=False)
    yield traced
    await traced.stack.stop()


@pytest_twisted.async_yield_fixture
async def fresh(company: Company) -> AsyncIterator[Traced]:
    """A service of its own, with a clock the test moves."""
    traced = await start_traced(company, Clock())
    yield traced
    await traced.stack.stop()


def quoted(values: Iterable[str]) -> str:
    return ", ".join(f"'{value}'" for value in values) or "'none'"


def navigation_cases(company: Company) -> list[tuple[str, str, list[str]]]:
    """(filter through navigation, the same filter on foreign keys, the entries it selects)."""
    client = company.clients[3]
    client_jobs = [job.ID for job in company.jobs if job.ClientID == client.ID]
    name = company.jobs[7].Name
    named_jobs = [job.ID for job in company.jobs if job.Name == name]
    unbillable = [task.ID for task in company.tasks if not task.IsBillable]
    division = next(d for d in company.divisions if d.Name == "Engineering")
    engineers = [user.ID for user in company.users if user.DivisionID == division.ID]
    entries = company.time_entries
    return [
        (
            f"Job/Client/ID eq '{client.ID}'",
            f"JobID in ({quoted(client_jobs)})",
            [e.ID for e in entries if e.JobID in client_jobs],
        ),
        (f"Job/Name eq '{name}'", f"JobID in ({quoted(named_jobs)})", [e.ID for e in entries if e.JobID in named_jobs]),
        (
            "Task/IsBillable eq false",
            f"TaskID in ({quoted(unbillable)})",
            [e.ID for e in entries if e.TaskID in unbillable],
        ),
        (
            "User/Division/Name eq 'Engineering'",
            f"UserID in ({quoted(engineers)})",
            [e.ID for e in entries if e.UserID in engineers],
        ),
        (
            f"Job/Client/ID eq '{client.ID}' and Hours gt 4",
            f"JobID in ({quoted(client_jobs)}) and Hours gt 4",
            [e.ID for e in entries if e.JobID in client_jobs and e.Hours > 4],
        ),
    ]


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("case", range(5), ids=["client-key", "job-name", "task-flag", "user-division", "and-hours"])
async def test_navigation_filters_give_the_engines_rows_for_fewer_fetched(
    company: Company, pushed: Traced, unpushed: Traced, case: int
) -> None:
    through_navigation, on_foreign_keys, expected = navigation_cases(company)[case]
    assert expected
    rows, fetched = await pushed.rows(f"TimeEntries?$filter={through_navigation}&$select=ID")
    engine_rows, engine_fetched = await unpushed.rows(f"TimeEntries?$filter={on_foreign_keys}&$select=ID")
    assert [row["ID"] for row in rows] == [row["ID"] for row in engine_rows] == expected
    assert fetched < engine_fetched


def timesheet_cases(company: Company) -> list[tuple[str, Callable[[Any], bool]]]:
    # Any: each check is given a Timesheet with its dates as datetime.date, a type of no name.
    day = datetime.date.fromisoformat(company.timesheets[len(company.timesheets) // 2].StartDate)
    later = day + datetime.timedelta(days=14)
    return [
        (f"StartDate ge {day} and StartDate lt {later}", lambda s: day <= s.StartDate and s.StartDate < later),
        (f"EndDate ge {day} and EndDate le {later}", lambda s: day <= s.EndDate <= later),
        (f"StartDate le {day} and EndDate ge {day}", lambda s: s.StartDate <= day <= s.EndDate),
        (
            f"StartDate ge {day}T00:00:00-05:00 and EndDate lt {later}T10:00:00Z",
            lambda s: day <= s.StartDate and s.EndDate <= later,
        ),
        (f"EndDate ge {day} and Status eq 'Approved'", lambda s: day <= s.EndDate and s.Status == "Approved"),
    ]


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("case", range(5), ids=["starts", "ends", "covers", "offsets", "and-status"])
async def test_timesheet_date_ranges_give_the_engines_rows_for_fewer_fetched(
    company: Company, pushed: Traced, unpushed: Traced, case: int
) -> None:
    text, selects = timesheet_cases(company)[case]
    expected = [
        sheet.ID
        for sheet in company.timesheets
        if selects(
            sheet._replace(
                StartDate=datetime.date.fromisoformat(sheet.StartDate), EndDate=datetime.date.fromisoformat(sheet.EndDate)
            )
        )
    ]
    assert expected
    url = f"Timesheets?$filter={quote(text, safe=' =()/')}&$select=ID"
    rows, fetched = await pushed.rows(url)
    engine_rows, engine_fetched = await unpushed.rows(url)
    assert [row["ID"] for row in rows] == [row["ID"] for row in engine_rows] == expected
    assert fetched < engine_fetched


@pytest_twisted.ensureDeferred
async def test_too_many_foreign_keys_stay_for_the_engine(company: Company, pushed: Traced) -> None:
    active = {job.ID for job in company.jobs if job.IsActive}
    assert len(active) > MAX_PUSHED_VALUES
    rows, _ = await pushed.rows("TimeEntries?$filter=Job/IsActive eq true and Hours ge 8&$select=ID")
    assert [row["ID"] for row in rows] == [e.ID for e in company.time_entries if e.JobID in active and e.Hours >= 8]
    asked = [dict(r.params) for r in pushed.stack.simulator.requests if r.path.endswith("/TimeEntries")]
    assert "JobID" not in asked[-1]


@pytest_twisted.ensureDeferred
async def test_a_standard_user_filters_own_entries_through_navigation(company: Company, pushed: Traced) -> None:
    me = next(user for user in company.users if user.ID == company.tokens[STANDARD_TOKEN])
    division = next(d.Name for d in company.divisions if d.ID == me.DivisionID)
    other = next(d.Name for d in company.divisions if d.ID != me.DivisionID)
    mine = [e.ID for e in company.time_entries if e.UserID == me.ID]
    rows, _ = await pushed.rows(f"TimeEntries?$filter=User/Division/Name eq '{division}'&$select=ID", STANDARD_TOKEN)
    assert [row["ID"] for row in rows] == mine
    before = pushed.upstream("TimeEntries")
    rows, _ = await pushed.rows(f"TimeEntries?$filter=User/Division/Name eq '{other}'", STANDARD_TOKEN)
    assert rows == [] and pushed.upstream("TimeEntries") == before


@pytest_twisted.ensureDeferred
async def test_filtered_reads_of_a_reference_set_come_from_the_copy(company: Company, fresh: Traced) -> None:
    active = [job.ID for job in company.jobs if job.IsActive]
    rows, _ = await fresh.rows("Jobs?$filter=IsActive eq true&$select=ID")
    assert [row["ID"] for row in rows] == active
    assert fresh.upstream("/Jobs") == 1
    before = fresh.upstream()
    rows, _ = await fresh.rows("Jobs?$filter=IsActive eq false&$select=ID")
    assert [row["ID"] for row in rows] == [job.ID for job in company.jobs if not job.IsActive]
    count = await fresh.stack.get("Jobs/$count?$filter=IsActive eq true".replace(" ", "%20"))
    assert count.body == str(len(active)).encode()
    job = company.jobs[5]
    single = (await fresh.stack.get(f"Jobs('{job.ID}')")).json()
    assert single["ID"] == job.ID and single["Name"] == job.Name
    assert fresh.upstream() == before
    # Navigation reads the related set's copy: loaded once, then used.
    for sample in company.jobs[:5]:
        assert (await fresh.stack.get(f"Jobs('{sample.ID}')/Client")).json()["ID"] == sample.ClientID
    assert fresh.upstream() == before + 1 and fresh.upstream("/Clients") == 1


@pytest_twisted.ensureDeferred
async def test_lookups_in_batches_load_a_set_once(company: Company, fresh: Traced) -> None:
    """As $expand asks for related rows: one load, then every batch from the copy."""
    users = [user.ID for user in company.users]
    for start in range(0, len(users), 10):
        batch = users[start : start + 10]
        rows, _ = await fresh.rows(f"Users?$filter=ID in ({quoted(batch)})&$select=ID")
        assert [row["ID"] for row in rows] == batch
    assert fresh.upstream("/Users") == 1


@pytest_twisted.ensureDeferred
async def test_plain_reads_are_fresh(company: Company, fresh: Traced) -> None:
    await fresh.rows("Tasks?$filter=IsActive eq true")
    rows, fetched = await fresh.rows("Tasks")
    assert [row["ID"] for row in rows] == [task.ID for task in company.tasks]
    assert fresh.upstream("/Tasks") == 2 and fetched == len(company.tasks)


@pytest_twisted.ensureDeferred
async def test_copies_expire(fresh: Traced) -> None:
    clock = fresh.clock
    await fresh.rows("Divisions?$filter=IsActive eq true")
    clock.advance(59)
    await fresh.rows("Divisions?$filter=IsActive eq true")
    assert fresh.upstream("/Divisions") == 1
    clock.advance(1)
    await fresh.rows("Divisions?$filter=IsActive eq true")
    assert fresh.upstream("/Divisions") == 2


@pytest_twisted.ensureDeferred
async def test_tokens_never_share_copies(company: Company, fresh: Traced) -> None:
    url = "Users?$filter=IsActive eq true".replace(" ", "%20")
    admin = await fresh.stack.get(url, token=ADMIN_TOKEN)
    assert b'"BillingRate":' in admin.body
    standard = await fresh.stack.get(url, token=STANDARD_TOKEN)
    assert standard.code == 200 and b'"BillingRate":' not in standard.body and b'"CostRate":' not in standard.body
    assert [row["ID"] for row in standard.json()["value"]] == [row["ID"] for row in admin.json()["value"]]
    loads = [request.user_id for request in fresh.stack.simulator.requests if request.path.endswith("/Users")]
    assert loads == [company.tokens[ADMIN_TOKEN], company.tokens[STANDARD_TOKEN]]


@pytest_twisted.ensureDeferred
async def test_concurrent_requests_share_one_load(fresh: Traced) -> None:
    url = "Clients?$filter=IsActive eq true".replace(" ", "%20")
    replies = await DeferredList([ensureDeferred(fresh.stack.get(url)) for _ in range(3)], fireOnOneErrback=True)
    assert [reply.code for _, reply in replies] == [200, 200, 200]
    assert fresh.upstream("/Clients") == 1


@pytest_twisted.ensureDeferred
async def test_a_failed_load_is_not_kept(fresh: Traced) -> None:
    fresh.stack.simulator.faults.add(FaultRule("malformed", path="/v2/Clients", times=1))
    url = "Clients?$filter=IsActive eq true".replace(" ", "%20")
    assert (await fresh.stack.get(url)).code == 502
    assert (await fresh.stack.get(url)).code == 200
    assert fresh.upstream("/Clients") == 2


@pytest_twisted.ensureDeferred
async def test_an_id_the_copy_lacks_is_asked_for() -> None:
    """A job created after the copy was read is found by its ID at once."""
    traced = await start_traced(generate_company(entries=50, seed=3, admin_token=ADMIN_TOKEN))
    try:
        await traced.rows("Jobs?$filter=IsActive eq true")
        headers: TreqHeaders = {"Authorization": f"Token {ADMIN_TOKEN}", "Content-Type": "application/json"}
        response = await treq.post(
            (traced.stack.simulator.base_url + "/Jobs").encode(),
            data=json.dumps({"Name": "Brand new", "ClientID": traced.stack.company.clients[0].ID}).encode(),
            headers=headers,
        )
        assert response.code == 201, await treq.content(response)
        created = (await treq.json_content(response))["data"]["ID"]
        reply = await traced.stack.get(f"Jobs('{created}')")
        assert reply.code == 200 and reply.json()["Name"] == "Brand new"
        # A filter on other properties reads the copy, which is older than the job.
        rows, _ = await traced.rows("Jobs?$filter=Name eq 'Brand new'")
        assert rows == []
    finally:
        await traced.stack.stop()


@pytest_twisted.ensureDeferred
async def test_sets_too_large_to_copy_are_asked_for(company: Company) -> None:
    traced = await start_traced(company, Clock(), reference_max_rows=50)
    try:
        active = [job.ID for job in company.jobs if job.IsActive]
        for _ in range(2):
            rows, _ = await traced.rows("Jobs?$filter=IsActive eq true&$select=ID")
            assert [row["ID"] for row in rows] == active
        asked = [dict(r.params) for r in traced.stack.simulator.requests if r.path.endswith("/Jobs")]
        # One look at the set's size, then ClickTime filters each time.
        assert [params.get("IsActive") for params in asked] == [None, "true", "true"]
        assert int(asked[0]["limit"]) <= 51
    finally:
        await traced.stack.stop()
