"""
$expand and navigation in $filter: binding against a small fixture model,
context URL select lists, writing expanded entities, and fetching related
entities in batches — through an in-memory provider for the shapes ClickTime
does not have (collections with a partner, recursion), and through the real
ClickTime provider against the simulator, counting its upstream requests.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any, AsyncIterator, Optional

import pytest
import pytest_twisted  # type: ignore[import-untyped]  # no py.typed marker, no stubs
from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from harness import ADMIN_TOKEN, Stack, small_company, start_stack
from odata_klein.binder import Binder
from odata_klein.bound import BoundIn, BoundProperty
from odata_klein.context import select_expand_fragment
from odata_klein.errors import BadRequest, Forbidden, NotImplementedYet, ODataError
from odata_klein.executor import CollectionSource, Executor
from odata_klein.expansion import (
    CHUNK_SIZE,
    MAX_LEVELS,
    ExpandNode,
    attach,
    bind_expand,
    entity_encoder,
    navigation_needed,
    select_properties,
    split_filter,
)
from odata_klein.interfaces import (
    Credentials,
    IProviderSession,
    IQueryResult,
    ProviderQuery,
    Row,
    RowBatch,
    Trace,
)
from odata_klein.model import (
    EntitySet,
    EntityType,
    Model,
    NavigationProperty,
    Property,
    ReferentialConstraint,
)
from odata_klein.evaluate import compile_predicate
from odata_klein.negotiation import JsonFormat
from odata_klein.parser import QueryParser
from odata_klein.serializer import EntityEncoder
from odata_klein_plugins.clicktime.simulator import FaultRule

PARSER = QueryParser()

# --- The fixture model --------------------------------------------------------------------------

_S, _DEC, _B = "Edm.String", "Edm.Decimal", "Edm.Boolean"


def _key() -> Property:
    return Property("ID", _S, nullable=False)


CLIENT = EntityType(
    "Client",
    ("ID",),
    (_key(), Property("Name", _S)),
    # No entity set holds its targets: it cannot be expanded.
    (NavigationProperty("Parent", "Test.Client"),),
)
JOB = EntityType(
    "Job",
    ("ID",),
    (_key(), Property("Name", _S), Property("ClientID", _S), Property("IsActive", _B)),
    (
        NavigationProperty("Client", "Test.Client", constraints=(ReferentialConstraint("ClientID", "ID"),)),
        NavigationProperty("TimeEntries", "Test.TimeEntry", collection=True, partner="Job"),
    ),
)
TIME_ENTRY = EntityType(
    "TimeEntry",
    ("ID",),
    (_key(), Property("Hours", _DEC), Property("JobID", _S)),
    (NavigationProperty("Job", "Test.Job", partner="TimeEntries", constraints=(ReferentialConstraint("JobID", "ID"),)),),
)
EMPLOYEE = EntityType(
    "Employee",
    ("ID",),
    (_key(), Property("Name", _S), Property("ManagerID", _S)),
    (
        NavigationProperty("Manager", "Test.Employee", constraints=(ReferentialConstraint("ManagerID", "ID"),)),
        NavigationProperty("Reports", "Test.Employee", collection=True, partner="Manager"),
    ),
)
MODEL = Model(
    "Test",
    "Container",
    (CLIENT, JOB, TIME_ENTRY, EMPLOYEE),
    (
        EntitySet("Clients", "Test.Client"),
        EntitySet("Jobs", "Test.Job", {"Client": "Clients", "TimeEntries": "TimeEntries"}),
        EntitySet("TimeEntries", "Test.TimeEntry", {"Job": "Jobs"}),
        EntitySet("Employees", "Test.Employee", {"Manager": "Employees", "Reports": "Employees"}),
    ),
)


def expand(text: str, set_name: str = "TimeEntries", model: Model = MODEL) -> tuple[ExpandNode, ...]:
    entity_set = model.entity_set(set_name)
    assert entity_set is not None
    return bind_expand(PARSER.parse_expand(text), entity_set, model.type_of(entity_set), model, Binder(model), {})


def shape(nodes: tuple[ExpandNode, ...]) -> dict[str, Any]:
    """The tree of navigation property names."""
    return {node.name: shape(node.expand) for node in nodes}


def needs(filter_text: str, set_name: str = "Jobs") -> dict[str, Any]:
    entity_set = MODEL.entity_set(set_name)
    assert entity_set is not None
    return needs_of_expr(Binder(MODEL).bind_filter(PARSER.parse_filter(filter_text), MODEL.type_of(entity_set)), set_name)


def needs_of_expr(expr: Any, set_name: str) -> dict[str, Any]:
    entity_set = MODEL.entity_set(set_name)
    assert entity_set is not None
    return shape(navigation_needed(expr, entity_set, MODEL.type_of(entity_set), MODEL))


# --- Binding $expand ------------------------------------------------------------------------------


def test_a_plain_expansion_selects_every_property_of_the_target() -> None:
    (node,) = expand("Job")
    assert (node.name, node.target_set.name, node.target_type.name) == ("Job", "Jobs", "Job")
    assert node.selection.properties == JOB.properties and node.selection.listed is None
    assert (node.filter, node.navigation_filter, node.top, node.skip, node.count, node.expand) == (
        None, None, None, None, False, ()
    )


def test_nested_options_are_bound_against_the_target() -> None:
    (node,) = expand("TimeEntries($select=Hours,Job;$filter=Hours gt 2;$top=3;$skip=1;$count=true;$expand=Job)", "Jobs")
    assert [p.name for p in node.selection.properties] == ["Hours"]
    assert node.selection.listed == "Hours,Job"
    assert node.filter is not None and node.navigation_filter is None
    assert compile_predicate(node.filter)({"Hours": Decimal("2.5")})
    assert not compile_predicate(node.filter)({"Hours": Decimal("2")})
    assert (node.top, node.skip, node.count) == (3, 1, True)
    assert shape(node.expand) == {"Job": {}}


def test_nested_aliases_and_request_aliases_are_both_in_scope() -> None:
    items = PARSER.parse_expand("Job($filter=Name eq @name and IsActive eq @active;@name='Audit')")
    aliases = dict(PARSER.parse_query([("@active", "true")]).aliases)
    (node,) = bind_expand(items, MODEL.entity_set("TimeEntries"), TIME_ENTRY, MODEL, Binder(MODEL), aliases)  # type: ignore[arg-type]
    assert node.filter is not None
    matches = compile_predicate(node.filter)
    assert matches({"Name": "Audit", "IsActive": True})
    assert not matches({"Name": "Audit", "IsActive": False})


def test_a_nested_filter_through_navigation_is_kept_apart_with_what_it_reads() -> None:
    (node,) = expand("TimeEntries($filter=Hours gt 1 and Job/Client/Name eq 'Acme')", "Jobs")
    assert node.filter is not None and compile_predicate(node.filter)({"Hours": Decimal(2)})
    assert shape(node.reads) == {"Job": {"Client": {}}}
    assert node.predicate is not None and node.predicate({"Job": {"Client": {"Name": "Acme"}}})
    assert not node.predicate({"Job": None})


def test_nested_orderby_is_bound_and_what_it_reads_is_fetched_too() -> None:
    (node,) = expand("TimeEntries($orderby=Job/Name desc,Hours;$filter=Job/IsActive)", "Jobs")
    assert [descending for _, descending in node.orderby] == [True, False]
    assert shape(node.reads) == {"Job": {}}
    assert node.sort_key is not None
    rows = [{"Hours": 2, "Job": {"Name": "a"}}, {"Hours": 1, "Job": {"Name": "a"}}, {"Hours": 3, "Job": {"Name": "b"}}]
    assert [row["Hours"] for row in sorted(rows, key=node.sort_key)] == [3, 1, 2]


def test_star_expands_every_navigation_property_and_an_explicit_item_takes_its_place() -> None:
    assert shape(expand("*", "Employees")) == {"Manager": {}, "Reports": {}}
    nodes = expand("*,Reports($top=1)", "Employees")
    assert shape(nodes) == {"Manager": {}, "Reports": {}}
    assert [node.top for node in nodes] == [None, 1]


def test_star_with_levels_expands_the_targets_navigation_properties_too() -> None:
    assert shape(expand("*($levels=2)", "TimeEntries")) == {"Job": {"Client": {}, "TimeEntries": {}}}
    with pytest.raises(NotImplementedYet, match="'Parent' has no entity set"):
        expand("*($levels=3)", "TimeEntries")


def test_levels_repeat_a_recursive_navigation_property() -> None:
    (node,) = expand("Manager($levels=3;$select=Name)", "Employees")
    assert shape((node,)) == {"Manager": {"Manager": {"Manager": {}}}}
    assert [node.recursive, node.expand[0].recursive, node.expand[0].expand[0].recursive] == [True, True, False]
    assert node.expand[0].selection.listed == "Name"
    deepest = expand("Manager($levels=max)", "Employees")
    depth = 0
    while deepest:
        depth, deepest = depth + 1, deepest[0].expand
    assert depth == MAX_LEVELS


def test_levels_on_a_navigation_property_that_does_not_recur_expand_once() -> None:
    (node,) = expand("Job($levels=2)")
    assert shape((node,)) == {"Job": {}} and not node.recursive


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("Jobb", BadRequest, "TimeEntry has no navigation property 'Jobb'; did you mean 'Job'"),
        ("Hours", BadRequest, "'Hours' is a structural property of TimeEntry"),
        ("Job/Client", BadRequest, r"write Job\(\$expand=Client\)"),
        ("Test.Job/Job", BadRequest, "'Test.Job' is not derived from Test.TimeEntry"),
        ("Job,Job($select=Name)", BadRequest, "Job is expanded more than once"),
        ("Job($top=1)", BadRequest, r"\$top applies to collections, and Job is single-valued"),
        ("Job($count=true)", BadRequest, r"\$count applies to collections"),
        ("Job($select=Nope)", BadRequest, "'Nope' is not a property of Job"),
        ("Job($filter=Nope eq 1)", BadRequest, "'Nope' is not a property of Test.Job"),
        ("Job/*", BadRequest, r"'Job/\*': \* follows complex properties only"),
        ("*,*", BadRequest, r"\* is given more than once"),
        ("Job/$ref", NotImplementedYet, r"/\$ref"),
        ("Job/$count", NotImplementedYet, r"/\$count"),
        ("Job($search=x)", NotImplementedYet, r"\$search inside \$expand"),
        ("Job($orderby=Name)", BadRequest, r"\$orderby applies to collections"),
        ("Job($expand=TimeEntries($orderby=Job))", BadRequest, "needs a single primitive value"),
        (f"Job($levels={MAX_LEVELS + 1})", NotImplementedYet, r"\$levels above"),
    ],
)
def test_binding_errors_name_expand(text: str, error: type[ODataError], message: str) -> None:
    with pytest.raises(error, match=message) as caught:
        expand(text)
    assert caught.value.target == "$expand"
    assert "$expand" in caught.value.message


def test_a_navigation_property_without_an_entity_set_cannot_be_expanded() -> None:
    with pytest.raises(NotImplementedYet, match="'Parent' has no entity set"):
        expand("Parent", "Clients")


def test_a_type_cast_naming_the_types_themselves_is_accepted() -> None:
    assert shape(expand("Test.TimeEntry/Job/Test.Job")) == {"Job": {}}


def test_selection_lists_navigation_properties_without_writing_them() -> None:
    selection = select_properties(JOB, PARSER.parse_select("Name,Client,Name"))
    assert [p.name for p in selection.properties] == ["Name"]
    assert selection.listed == "Name,Client"
    assert select_properties(JOB, PARSER.parse_select("*")).listed == "*"
    assert select_properties(JOB, None).properties == JOB.properties


# --- Context URL select lists --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("select", "expand_text", "expected"),
    [
        (None, None, ""),
        ("Hours", None, "(Hours)"),
        (None, "Job", "(Job())"),
        ("Hours,Job", "Job($select=Name)", "(Hours,Job,Job(Name))"),
        ("Hours", "Job($select=Name;$expand=Client($select=Name))", "(Hours,Job(Name,Client(Name)))"),
        (None, "Job($expand=Client)", "(Job(Client()))"),
        ("*", "Job($filter=IsActive;$select=ID)", "(*,Job(ID))"),
        (None, "*", "(Job())"),
    ],
)
def test_select_expand_fragment(select: Optional[str], expand_text: Optional[str], expected: str) -> None:
    listed = select_properties(TIME_ENTRY, PARSER.parse_select(select)).listed if select else None
    nodes = expand(expand_text) if expand_text else ()
    assert select_expand_fragment(listed, nodes) == expected


def test_recursive_expansion_is_written_once_with_a_plus() -> None:
    listed = select_properties(EMPLOYEE, PARSER.parse_select("Reports")).listed
    nodes = expand("Reports($select=Name;$levels=4;$expand=Manager)", "Employees")
    assert select_expand_fragment(listed, nodes) == "(Reports,Reports+(Name,Manager()))"


# --- Navigation in filters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filter_text", "set_name", "expected"),
    [
        ("Name eq 'x' and IsActive", "Jobs", {}),
        ("Client/Name eq 'Acme'", "Jobs", {"Client": {}}),
        ("Client eq null", "Jobs", {"Client": {}}),
        ("Job/Client/Name eq 'Acme' or Job/IsActive", "TimeEntries", {"Job": {"Client": {}}}),
        ("TimeEntries/any()", "Jobs", {"TimeEntries": {}}),
        ("TimeEntries/$count gt 2", "Jobs", {"TimeEntries": {}}),
        ("TimeEntries/any(t: t/Hours gt 8)", "Jobs", {"TimeEntries": {}}),
        ("TimeEntries/all(t: t/Job/Client/Name eq 'Acme')", "Jobs", {"TimeEntries": {"Job": {"Client": {}}}}),
        (
            "Reports/any(r: r/Reports/any(s: s/Manager/Name eq $it/Name) and Manager/Name eq 'x')",
            "Employees",
            {"Reports": {"Reports": {"Manager": {}}}, "Manager": {}},
        ),
        ("contains(Job/Name, 'a')", "TimeEntries", {"Job": {}}),
        ("Job/Name in ('a', 'b')", "TimeEntries", {"Job": {}}),
        ("not (Job/IsActive)", "TimeEntries", {"Job": {}}),
    ],
)
def test_navigation_needed(filter_text: str, set_name: str, expected: dict[str, Any]) -> None:
    assert needs(filter_text, set_name) == expected


def test_split_filter_keeps_what_a_provider_can_apply_apart() -> None:
    entity_set = MODEL.entity_set("TimeEntries")
    assert entity_set is not None
    bound = Binder(MODEL).bind_filter(
        PARSER.parse_filter("Hours gt 1 and Job/Name eq 'A' and JobID ne 'x'"), TIME_ENTRY
    )
    plain, related = split_filter(bound, entity_set, TIME_ENTRY, MODEL)
    assert plain is not None and related is not None
    assert compile_predicate(plain)({"Hours": Decimal(2), "JobID": "y"})
    assert not compile_predicate(plain)({"Hours": Decimal(2), "JobID": "x"})
    assert needs_of_expr(related, "TimeEntries") == {"Job": {}}
    assert compile_predicate(related)({"Job": {"Name": "A"}}) and not compile_predicate(related)({"Job": None})
    assert split_filter(None, entity_set, TIME_ENTRY, MODEL) == (None, None)


# --- Writing ---------------------------------------------------------------------------------------


def _encoder(nodes: tuple[ExpandNode, ...], fmt: JsonFormat, select: str = "ID,Hours") -> EntityEncoder:
    entity_set = MODEL.entity_set("TimeEntries")
    assert entity_set is not None
    properties = select_properties(TIME_ENTRY, PARSER.parse_select(select)).properties

    def url_for(s: EntitySet, t: EntityType) -> Any:
        return lambda row: f"http://h/{s.name}('{row['ID']}')"

    return entity_encoder(MODEL, fmt, entity_set, TIME_ENTRY, properties, nodes, url_for)


ENTRY_ROW = {
    "ID": "e1",
    "Hours": Decimal("1.5"),
    "JobID": "j1",
    "Job": {"ID": "j1", "Name": "Audit", "ClientID": None, "IsActive": True, "Client": None},
}


def test_expanded_entities_are_written_with_their_own_selection() -> None:
    encoder = _encoder(expand("Job($select=Name;$expand=Client)"), JsonFormat())
    assert json.loads(encoder.encode(ENTRY_ROW)) == {
        "ID": "e1", "Hours": 1.5, "Job": {"Name": "Audit", "Client": None}
    }
    assert encoder.encode({**ENTRY_ROW, "Job": None}) == '{"ID":"e1","Hours":1.5,"Job":null}'


def test_a_selection_of_only_expansions_writes_valid_json() -> None:
    encoder = _encoder(expand("Job($select=Name)"), JsonFormat(), select="Job")
    assert encoder.encode(ENTRY_ROW) == '{"Job":{"Name":"Audit"}}'


def test_navigation_values_not_expanded_are_never_written() -> None:
    """Rows may carry related entities fetched for a filter: only expansions are written."""
    assert _encoder((), JsonFormat()).encode(ENTRY_ROW) == '{"ID":"e1","Hours":1.5}'
    nested_only = _encoder(expand("Job($select=ID)"), JsonFormat())
    assert nested_only.encode(ENTRY_ROW) == '{"ID":"e1","Hours":1.5,"Job":{"ID":"j1"}}'


def test_collections_are_written_with_their_count_first() -> None:
    jobs = MODEL.entity_set("Jobs")
    assert jobs is not None
    nodes = expand("TimeEntries($select=Hours;$count=true)", "Jobs")
    encoder = entity_encoder(MODEL, JsonFormat(), jobs, JOB, [], nodes, lambda s, t: None)
    row = {"ID": "j1", "TimeEntries": [{"Hours": Decimal(1)}, {"Hours": Decimal(2)}], "TimeEntries@odata.count": 5}
    assert encoder.encode(row) == '{"TimeEntries@odata.count":5,"TimeEntries":[{"Hours":1},{"Hours":2}]}'
    assert encoder.encode({"ID": "j2", "TimeEntries": [], "TimeEntries@odata.count": 0}) == (
        '{"TimeEntries@odata.count":0,"TimeEntries":[]}'
    )


def test_full_metadata_annotates_nested_entities_and_links_before_values() -> None:
    encoder = _encoder(expand("Job($select=Name)"), JsonFormat(metadata="full"))
    text = encoder.encode(ENTRY_ROW)
    body = json.loads(text)
    assert body["@odata.type"] == "#Test.TimeEntry"
    assert body["Job@odata.navigationLink"] == "http://h/TimeEntries('e1')/Job"
    assert text.index('"Job@odata.navigationLink"') < text.index('"Job":')
    assert body["Job"] == {
        "@odata.type": "#Test.Job",
        "@odata.id": "http://h/Jobs('j1')",
        "@odata.readLink": "http://h/Jobs('j1')",
        "Name": "Audit",
        "Client@odata.navigationLink": "http://h/Jobs('j1')/Client",
        "TimeEntries@odata.navigationLink": "http://h/Jobs('j1')/TimeEntries",
    }


# --- Fetching through an in-memory provider ------------------------------------------------------


@implementer(IQueryResult)
class _MemoryResult:
    # Declared, never set: an optional member of IQueryResult, read as 0 when absent.
    skipped: int

    def __init__(self, rows: list[Row], residual: Any) -> None:
        self._rows = rows
        self.residual = residual

    async def batches(self) -> AsyncIterator[RowBatch]:
        yield RowBatch(self._rows, range(1, len(self._rows) + 1))

    def count(self) -> Deferred[None]:
        return succeed(None)


@implementer(IProviderSession)
class MemorySession:
    """Every set as a list of rows; filters are left to the engine; queries are recorded."""

    def __init__(self, tables: dict[str, list[Row]]) -> None:
        self._tables = tables
        self.queries: list[ProviderQuery] = []

    def model(self) -> Deferred[Model]:
        return succeed(MODEL)

    def query(self, query: ProviderQuery) -> Deferred[_MemoryResult]:
        assert query.parent is None, "every navigation of the fixture model has constraints"
        self.queries.append(query)
        rows = [dict(row) for row in self._tables[query.entity_set]]
        return succeed(_MemoryResult(rows, query.filter))


def _jobs_and_entries(count: int) -> dict[str, list[Row]]:
    jobs = [{"ID": f"j{n}", "Name": f"Job {n}", "ClientID": None, "IsActive": n % 2 == 0} for n in range(count)]
    entries = [
        {"ID": f"e{n}-{k}", "Hours": Decimal(k), "JobID": f"j{n}"} for n in range(count) for k in range(n % 4)
    ]
    return {"Jobs": jobs, "TimeEntries": entries, "Clients": []}


@pytest_twisted.ensureDeferred
async def test_collections_through_the_partner_are_fetched_per_chunk_of_parents() -> None:
    tables = _jobs_and_entries(CHUNK_SIZE * 2 + 10)
    session = MemorySession(tables)
    jobs = [dict(row) for row in tables["Jobs"]]
    nodes = expand("TimeEntries($filter=Hours ge 1;$skip=1;$top=1;$count=true)", "Jobs")
    await attach(Executor(session, MODEL), jobs, MODEL.entity_set("Jobs"), JOB, nodes)  # type: ignore[arg-type]
    assert len(session.queries) == 3 and {q.entity_set for q in session.queries} == {"TimeEntries"}
    for job in jobs:
        n = int(job["ID"][1:])
        matching = [k for k in range(n % 4) if k >= 1]
        assert job["TimeEntries@odata.count"] == len(matching)
        assert [e["Hours"] for e in job["TimeEntries"]] == [Decimal(k) for k in matching[1:2]]


@pytest_twisted.ensureDeferred
async def test_nested_orderby_sorts_each_parents_collection_before_skip_and_top() -> None:
    tables = _jobs_and_entries(8)
    session = MemorySession(tables)
    jobs = [dict(row) for row in tables["Jobs"]]
    nodes = expand("TimeEntries($orderby=Job/IsActive desc,Hours desc;$top=2)", "Jobs")
    await attach(Executor(session, MODEL), jobs, MODEL.entity_set("Jobs"), JOB, nodes)  # type: ignore[arg-type]
    assert [q.entity_set for q in session.queries] == ["TimeEntries", "Jobs"]
    assert {job["ID"]: [e["Hours"] for e in job["TimeEntries"]] for job in jobs} == {
        "j0": [], "j1": [0], "j2": [1, 0], "j3": [2, 1], "j4": [], "j5": [0], "j6": [1, 0], "j7": [2, 1]
    }


@pytest_twisted.ensureDeferred
async def test_levels_fetch_each_level_once() -> None:
    employees: list[Row] = [
        {"ID": "boss", "Name": "Boss", "ManagerID": None},
        {"ID": "mid", "Name": "Mid", "ManagerID": "boss"},
        {"ID": "low", "Name": "Low", "ManagerID": "mid"},
        {"ID": "new", "Name": "New", "ManagerID": "low"},
    ]
    session = MemorySession({"Employees": employees})
    rows = [dict(employees[3]), dict(employees[1])]
    await attach(
        Executor(session, MODEL), rows, MODEL.entity_set("Employees"), EMPLOYEE,  # type: ignore[arg-type]
        expand("Manager($levels=2;$select=Name)", "Employees"),
    )
    assert len(session.queries) == 2
    assert rows[0]["Manager"]["Name"] == "Low" and rows[0]["Manager"]["Manager"]["Name"] == "Mid"
    assert "Manager" not in rows[0]["Manager"]["Manager"]
    assert rows[1]["Manager"]["Name"] == "Boss" and rows[1]["Manager"]["Manager"] is None


@pytest_twisted.ensureDeferred
async def test_a_nested_filter_through_navigation_fetches_what_it_reads() -> None:
    tables = _jobs_and_entries(6)
    session = MemorySession(tables)
    jobs = [dict(row) for row in tables["Jobs"]]
    nodes = expand("TimeEntries($filter=Job/IsActive and Hours ge 1)", "Jobs")
    await attach(Executor(session, MODEL), jobs, MODEL.entity_set("Jobs"), JOB, nodes)  # type: ignore[arg-type]
    assert [q.entity_set for q in session.queries] == ["TimeEntries", "Jobs"]
    # Only even jobs are active; job n has entries of 0 .. n % 4 - 1 hours.
    assert {job["ID"]: [e["ID"] for e in job["TimeEntries"]] for job in jobs} == {
        "j0": [], "j1": [], "j2": ["e2-1"], "j3": [], "j4": [], "j5": []
    }


# --- Fetching through ClickTime, against the simulator -------------------------------------------


@pytest_twisted.async_yield_fixture(scope="module")
async def stack() -> AsyncIterator[Stack]:
    running = await start_stack(small_company(1500))
    yield running
    await running.stop()


@implementer(IProviderSession)
class CountingSession:
    """A provider session that records the queries asked of it."""

    def __init__(self, session: IProviderSession) -> None:
        self._session = session
        self.queries: list[ProviderQuery] = []

    def model(self) -> Any:
        return self._session.model()

    def query(self, query: ProviderQuery) -> Any:
        self.queries.append(query)
        return self._session.query(query)


class Upstream:
    """
    A ClickTime session and an executor over the simulator.  `attach` counts
    from zero the provider queries and the simulator's requests.  The provider
    may answer lookups by ID from its copy of a reference set, so a provider
    query costs at most one upstream request here.
    """

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.session = CountingSession(
            stack.provider.open_session(Credentials("basic", "clicktime", ADMIN_TOKEN), Trace())
        )
        self.model: Model
        self.executor: Executor

    async def start(self) -> "Upstream":
        self.model = await self.session.model()
        self.executor = Executor(self.session, self.model)
        return self

    def entity(self, set_name: str) -> tuple[EntitySet, EntityType]:
        entity_set = self.model.entity_set(set_name)
        assert entity_set is not None
        return entity_set, self.model.type_of(entity_set)

    async def rows(self, set_name: str, filter_text: Optional[str] = None) -> list[Row]:
        entity_set, entity_type = self.entity(set_name)
        bound = Binder(self.model).bind_filter(PARSER.parse_filter(filter_text), entity_type) if filter_text else None
        stream = await self.executor.rows(CollectionSource(entity_set, entity_type, bound))
        found: list[Row] = []
        try:
            while (pairs := await stream.next()) is not None:
                found.extend(row for row, _ in pairs)
        finally:
            await stream.close()
        return found

    def expand(self, set_name: str, text: str) -> tuple[ExpandNode, ...]:
        entity_set, entity_type = self.entity(set_name)
        return bind_expand(PARSER.parse_expand(text), entity_set, entity_type, self.model, Binder(self.model), {})

    async def attach(self, set_name: str, rows: list[Row], nodes: tuple[ExpandNode, ...]) -> None:
        entity_set, entity_type = self.entity(set_name)
        self.stack.simulator.requests.clear()
        self.session.queries.clear()
        await attach(self.executor, rows, entity_set, entity_type, nodes)

    def requests_to(self, path_end: str) -> list[Any]:
        return [r for r in self.stack.simulator.requests if r.path.endswith(path_end)]

    def queries_of(self, set_name: str) -> list[ProviderQuery]:
        return [q for q in self.session.queries if q.entity_set == set_name]


@pytest_twisted.ensureDeferred
async def test_single_valued_expansion_costs_one_request_per_chunk_of_ids(stack: Stack) -> None:
    upstream = await Upstream(stack).start()
    entries = await upstream.rows("TimeEntries")
    await upstream.attach("TimeEntries", entries, upstream.expand("TimeEntries", "Job($select=Name;$expand=Client)"))

    jobs = {job.ID: job for job in stack.company.jobs}
    clients = {client.ID: client for client in stack.company.clients}
    for entry in entries:
        job = jobs[entry["JobID"]]
        assert (entry["Job"]["ID"], entry["Job"]["Name"]) == (job.ID, job.Name)
        assert entry["Job"]["Client"]["Name"] == clients[job.ClientID].Name
    distinct_jobs = {entry["JobID"] for entry in entries}
    distinct_clients = {jobs[job_id].ClientID for job_id in distinct_jobs}
    assert len(distinct_jobs) > CHUNK_SIZE
    job_queries = upstream.queries_of("Jobs")
    assert len(job_queries) == math.ceil(len(distinct_jobs) / CHUNK_SIZE)
    assert len(upstream.queries_of("Clients")) == math.ceil(len(distinct_clients) / CHUNK_SIZE)
    assert len(upstream.session.queries) == len(job_queries) + len(upstream.queries_of("Clients"))
    # Each query asks for one chunk of IDs, in the form ClickTime takes as repeated ID= parameters.
    asked: list[Any] = []
    for query in job_queries:
        assert isinstance(query.filter, BoundIn) and query.filter.operand == BoundProperty(("ID",), "Edm.String")
        assert len(query.filter.values) <= CHUNK_SIZE
        asked.extend(value.value for value in query.filter.values)  # type: ignore[union-attr]
    assert sorted(asked) == sorted(distinct_jobs)
    assert 1 <= len(upstream.requests_to("/Jobs")) <= len(job_queries)
    assert len(stack.simulator.requests) <= len(upstream.session.queries)


@pytest_twisted.ensureDeferred
async def test_missing_and_null_foreign_keys_give_null(stack: Stack) -> None:
    upstream = await Upstream(stack).start()
    entries = (await upstream.rows("TimeEntries"))[:3]
    entries[0]["JobID"] = None
    entries[1]["JobID"] = "no-such-job"
    await upstream.attach("TimeEntries", entries, upstream.expand("TimeEntries", "Job"))
    assert entries[0]["Job"] is None and entries[1]["Job"] is None
    assert entries[2]["Job"]["ID"] == entries[2]["JobID"]
    assert len(upstream.session.queries) == 1


@pytest_twisted.ensureDeferred
async def test_a_filter_on_a_single_valued_expansion_nulls_what_it_rejects(stack: Stack) -> None:
    upstream = await Upstream(stack).start()
    entries = await upstream.rows("TimeEntries")
    await upstream.attach("TimeEntries", entries, upstream.expand("TimeEntries", "Job($filter=IsActive eq false)"))
    active = {job.ID: job.IsActive for job in stack.company.jobs}
    assert any(entry["Job"] is None for entry in entries) and any(entry["Job"] for entry in entries)
    for entry in entries:
        assert (entry["Job"] is None) == active[entry["JobID"]]


@pytest_twisted.ensureDeferred
async def test_star_with_levels_expands_two_levels(stack: Stack) -> None:
    upstream = await Upstream(stack).start()
    entries = (await upstream.rows("TimeEntries"))[:50]
    await upstream.attach("TimeEntries", entries, upstream.expand("TimeEntries", "*($levels=2)"))
    users = {user.ID: user for user in stack.company.users}
    for entry in entries:
        assert entry["User"]["Division"]["ID"] == users[entry["UserID"]].DivisionID
        assert entry["Job"]["ProjectManager"]["ID"] == entry["Job"]["ProjectManagerID"]
        assert entry["Task"]["ID"] == entry["TaskID"]
    # One query per entity set and level: Users, Jobs, Tasks, then Divisions, Clients, Users.
    assert sorted(q.entity_set for q in upstream.session.queries) == [
        "Clients", "Divisions", "Jobs", "Tasks", "Users", "Users"
    ]
    assert len(stack.simulator.requests) <= 6


def _entries_of(stack: Stack, timesheet: Any) -> list[Any]:
    return [
        entry
        for entry in stack.company.time_entries
        if entry.UserID == timesheet.UserID and timesheet.StartDate <= entry.Date <= timesheet.EndDate
    ]


async def _busy_timesheets(upstream: Upstream, stack: Stack) -> list[Row]:
    """Twelve timesheets of one user, some with time entries."""
    sheets = {sheet.ID: sheet for sheet in stack.company.timesheets}
    user = stack.company.time_entries[0].UserID
    rows = await upstream.rows("Timesheets", f"UserID eq '{user}'")
    with_entries = [row for row in rows if _entries_of(stack, sheets[row["ID"]])]
    without = [row for row in rows if not _entries_of(stack, sheets[row["ID"]])]
    return with_entries[:10] + without[:2]


@pytest_twisted.ensureDeferred
async def test_collections_without_constraints_take_one_request_per_parent(stack: Stack) -> None:
    upstream = await Upstream(stack).start()
    timesheets = await _busy_timesheets(upstream, stack)
    nodes = upstream.expand("Timesheets", "TimeEntries($filter=Hours gt 1;$select=Hours;$skip=1;$top=1;$count=true)")
    await upstream.attach("Timesheets", timesheets, nodes)
    sheets = {sheet.ID: sheet for sheet in stack.company.timesheets}
    for row in timesheets:
        expected = [e for e in _entries_of(stack, sheets[row["ID"]]) if e.Hours > 1]
        assert row["TimeEntries@odata.count"] == len(expected)
        assert [e["ID"] for e in row["TimeEntries"]] == [e.ID for e in expected][1:2]
    assert len(upstream.session.queries) == len(timesheets)
    assert len(upstream.requests_to("/TimeEntries")) == len(timesheets)
    assert all(q.parent is not None and q.parent.navigation_property == "TimeEntries" for q in upstream.session.queries)


@pytest_twisted.ensureDeferred
async def test_a_failing_parent_query_fails_the_expansion(stack: Stack) -> None:
    upstream = await Upstream(stack).start()
    timesheets = await _busy_timesheets(upstream, stack)
    stack.simulator.faults.add(FaultRule("status", path="Timesheets/[^/]+/TimeEntries", status=403, times=None))
    try:
        with pytest.raises(Forbidden):
            await upstream.attach("Timesheets", timesheets, upstream.expand("Timesheets", "TimeEntries"))
    finally:
        stack.simulator.faults.clear()


@pytest_twisted.ensureDeferred
async def test_filters_through_navigation_read_what_navigation_needed_fetches(stack: Stack) -> None:
    upstream = await Upstream(stack).start()
    entity_set, entity_type = upstream.entity("TimeEntries")
    client = stack.company.clients[0]
    bound = Binder(upstream.model).bind_filter(
        PARSER.parse_filter(f"Job/Client/Name eq '{client.Name}' and Job/IsActive"), entity_type
    )
    entries = await upstream.rows("TimeEntries")
    nodes = navigation_needed(bound, entity_set, entity_type, upstream.model)
    await upstream.attach("TimeEntries", entries, nodes)
    matches = compile_predicate(bound)
    jobs = {job.ID: job for job in stack.company.jobs}
    expected = {
        e.ID for e in stack.company.time_entries if jobs[e.JobID].ClientID == client.ID and jobs[e.JobID].IsActive
    }
    assert expected and {entry["ID"] for entry in entries if matches(entry)} == expected
    assert [q.entity_set for q in upstream.session.queries] == ["Jobs", "Jobs", "Clients"]


@pytest_twisted.ensureDeferred
async def test_lambdas_over_a_collection_without_constraints(stack: Stack) -> None:
    upstream = await Upstream(stack).start()
    entity_set, entity_type = upstream.entity("Timesheets")
    bound = Binder(upstream.model).bind_filter(
        PARSER.parse_filter("TimeEntries/any(t: t/Hours gt 6 and t/Job/IsActive)"), entity_type
    )
    timesheets = await _busy_timesheets(upstream, stack)
    nodes = navigation_needed(bound, entity_set, entity_type, upstream.model)
    assert {node.name: [n.name for n in node.expand] for node in nodes} == {"TimeEntries": ["Job"]}
    await upstream.attach("Timesheets", timesheets, nodes)
    matches = compile_predicate(bound)
    sheets = {sheet.ID: sheet for sheet in stack.company.timesheets}
    active = {job.ID: job.IsActive for job in stack.company.jobs}
    for row in timesheets:
        entries = _entries_of(stack, sheets[row["ID"]])
        assert matches(row) == any(e.Hours > 6 and active[e.JobID] for e in entries)
