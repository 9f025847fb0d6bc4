"""The ClickTime simulator, over real HTTP on loopback."""

from __future__ import annotations

import datetime
import json
import random
import re
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
import pytest_twisted  # type: ignore[import-untyped]  # no py.typed marker, no stubs
import treq
from twisted.web.client import HTTPConnectionPool, ResponseFailed, ResponseNeverReceived
from twisted.web.http_headers import Headers

from odata_klein_plugins.clicktime.simulator import (
    ADMIN,
    MANAGER,
    STANDARD,
    Company,
    FaultRule,
    RunningSimulator,
    generate_company,
    start_simulator,
)

ENVELOPE_KEYS = ["data", "page", "meta", "jsonapi", "errors"]
ID_PATTERN = re.compile(r"[A-Za-z0-9]{23}")


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Headers
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw)

    @property
    def data(self) -> Any:
        return self.body["data"]


@dataclass
class Api:
    """A ClickTime client for the tests: one token, one connection per request."""

    running: RunningSimulator
    token: str | None
    pool: HTTPConnectionPool

    def as_token(self, token: str | None) -> Api:
        return Api(self.running, token, self.pool)

    async def send(
        self,
        method: str,
        path: str,
        params: list[tuple[str, str]] | None = None,
        body: object = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Reply:
        # What treq's headers= takes, from the pairs: a dict[str, str] is no dict[str | bytes, str | bytes]
        # (dict keys are invariant), nor may a dict literal go straight to treq (mypy cannot choose its type).
        sent: dict[str | bytes, str | bytes] = dict((headers or {}).items())
        if self.token is not None:
            sent.setdefault("Authorization", f"Token {self.token}")
        url = path if path.startswith("http") else self.running.base_url + path
        response = await treq.request(
            method,
            url,
            params=params,
            headers=sent,
            data=None if body is None else json.dumps(body).encode(),
            pool=self.pool,
            timeout=timeout,
        )
        return Reply(response.code, response.headers, await response.content())

    async def get(self, path: str, params: list[tuple[str, str]] | None = None, **kwargs: Any) -> Reply:
        return await self.send("GET", path, params, **kwargs)

    async def walk(self, path: str, params: list[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
        """Every record of a list, following ``links.next``."""
        reply = await self.get(path, params)
        records = []
        while True:
            assert reply.status == 200, reply.raw
            records.extend(reply.data)
            following = reply.body["page"]["links"]["next"]
            if following is None:
                return records
            reply = await self.get(following)


def token_of(company: Company, level: str) -> str:
    level_of = {user.ID: user.SecurityLevel for user in company.users}
    return next(token for token, user_id in company.tokens.items() if level_of[user_id] == level)


def user_of(company: Company, token: str) -> Any:
    return next(user for user in company.users if user.ID == company.tokens[token])


@pytest.fixture(scope="module")
def shared_company() -> Company:
    """A company for tests that only read."""
    return generate_company(entries=2000, seed=7)


@pytest.fixture
def company(shared_company: Company) -> Company:
    return shared_company


@pytest.fixture
def own_company() -> Company:
    """A company of its own, for tests that write."""
    return generate_company(entries=300, seed=11)


@pytest.fixture
def pool() -> Iterator[HTTPConnectionPool]:
    from twisted.internet import reactor

    yield HTTPConnectionPool(reactor, persistent=False)


async def _running(company: Company) -> RunningSimulator:
    from twisted.internet import reactor

    return await start_simulator(reactor, company)


@pytest_twisted.async_yield_fixture
async def running(company: Company) -> AsyncIterator[RunningSimulator]:
    started = await _running(company)
    yield started
    await started.stop()


@pytest_twisted.async_yield_fixture
async def own_running(own_company: Company) -> AsyncIterator[RunningSimulator]:
    started = await _running(own_company)
    yield started
    await started.stop()


@pytest.fixture
def admin(running: RunningSimulator, company: Company, pool: HTTPConnectionPool) -> Api:
    return Api(running, company.admin_token, pool)


@pytest.fixture
def standard(admin: Api, company: Company) -> Api:
    return admin.as_token(company.standard_token)


@pytest.fixture
def manager(admin: Api, company: Company) -> Api:
    return admin.as_token(token_of(company, MANAGER))


@pytest.fixture
def own_admin(own_running: RunningSimulator, own_company: Company, pool: HTTPConnectionPool) -> Api:
    return Api(own_running, own_company.admin_token, pool)


# -- the generated company ----------------------------------------------------------------------


def test_same_arguments_give_the_same_company() -> None:
    first = generate_company(entries=500, seed=3)
    assert first == generate_company(entries=500, seed=3)
    assert first != generate_company(entries=500, seed=4)
    assert first.today == datetime.date(2026, 11, 1)


def test_tokens_from_another_source_leave_the_records_as_they_are() -> None:
    seeded = generate_company(entries=500, seed=3)
    unguessable = generate_company(entries=500, seed=3, token_source=random.SystemRandom())
    assert replace(unguessable, tokens=seeded.tokens, admin_token="", standard_token="") == replace(
        seeded, admin_token="", standard_token=""
    )
    assert not set(unguessable.tokens) & set(seeded.tokens)
    assert sorted(unguessable.tokens.values()) == sorted(seeded.tokens.values())


def test_named_tokens_belong_to_an_admin_and_a_standard_user() -> None:
    company = generate_company(entries=10, admin_token="admin-secret", standard_token="standard-secret")
    assert user_of(company, "admin-secret").SecurityLevel == ADMIN
    assert user_of(company, "standard-secret").SecurityLevel == STANDARD
    assert sorted(company.tokens.values()) == sorted(user.ID for user in company.users)
    with pytest.raises(ValueError):
        generate_company(entries=10, admin_token="same", standard_token="same")


def test_company_is_realistic_and_consistent(company: Company) -> None:
    levels = [user.SecurityLevel for user in company.users]
    assert (
        levels.count(ADMIN) >= 1 and levels.count(MANAGER) >= 1 and levels.count(STANDARD) > len(levels) / 2
    )
    assert (len(company.divisions), len(company.clients), len(company.jobs), len(company.tasks)) == (
        5,
        30,
        120,
        25,
    )
    assert len(company.time_entries) == 2000
    all_ids = [
        record.ID
        for records in (
            company.divisions,
            company.clients,
            company.jobs,
            company.tasks,
            company.users,
            company.timesheets,
            company.time_entries,
            company.custom_field_definitions,
        )
        for record in records
    ]
    assert len(set(all_ids)) == len(all_ids)
    assert all(ID_PATTERN.fullmatch(record_id) for record_id in all_ids)
    users, jobs, tasks = ({r.ID for r in records} for records in (company.users, company.jobs, company.tasks))
    periods = {(t.UserID, t.StartDate): t for t in company.timesheets}
    first_day = company.today - datetime.timedelta(days=730)
    for entry in company.time_entries:
        assert entry.UserID in users and entry.JobID in jobs and entry.TaskID in tasks
        day = datetime.date.fromisoformat(entry.Date)
        assert first_day <= day <= company.today
        monday = (day - datetime.timedelta(days=day.weekday())).isoformat()
        assert (entry.UserID, monday) in periods
        assert entry.Hours * 4 == int(entry.Hours * 4) and 0.25 <= entry.Hours <= 10
    assert all(
        job.ClientID in {c.ID for c in company.clients} and job.ProjectManagerID in users
        for job in company.jobs
    )
    weekend = sum(datetime.date.fromisoformat(e.Date).weekday() >= 5 for e in company.time_entries)
    assert 0 < weekend < len(company.time_entries) / 10
    comments = {entry.Comment for entry in company.time_entries}
    assert None in comments and any(c and "<script>" in c for c in comments)
    statuses = {t.Status for t in company.timesheets}
    assert {"Open", "Approved", "Locked", "Rejected", "Waiting"} <= statuses
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", company.clients[0].CreatedDate)


# -- envelope and paging ------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_list_answers_in_the_envelope_with_page_links(admin: Api, company: Company) -> None:
    reply = await admin.get("/TimeEntries", [("limit", "5"), ("offset", "10"), ("UnknownParameter", "x")])
    assert reply.status == 200
    assert reply.headers.getRawHeaders("content-type") == ["application/json; charset=utf-8"]
    body = reply.body
    assert list(body) == ENVELOPE_KEYS
    assert body["meta"] == {} and body["jsonapi"] == {} and body["errors"] == []
    assert [e["ID"] for e in body["data"]] == [e.ID for e in company.time_entries[10:15]]
    page = body["page"]
    assert (page["count"], page["limit"], page["offset"]) == (2000, 5, 10)
    base = admin.running.base_url + "/TimeEntries?UnknownParameter=x&limit=5&offset="
    assert page["links"] == {
        "self": base + "10",
        "first": base + "0",
        "next": base + "15",
        "previous": base + "5",
        "last": base + "1995",
    }


@pytest_twisted.ensureDeferred
async def test_walking_the_next_links_reaches_every_record_once(admin: Api, company: Company) -> None:
    first = await admin.get("/TimeEntries", [("limit", "500")])
    assert first.body["page"]["links"]["previous"] is None
    walked = await admin.walk("/TimeEntries", [("limit", "500")])
    assert [e["ID"] for e in walked] == [e.ID for e in company.time_entries]
    last = await admin.get(first.body["page"]["links"]["last"])
    assert last.body["page"]["offset"] == 1500 and last.body["page"]["links"]["next"] is None


@pytest_twisted.ensureDeferred
async def test_limits_default_to_100_and_are_capped(admin: Api) -> None:
    assert len((await admin.get("/TimeEntries")).data) == 100
    capped = await admin.get("/TimeEntries", [("limit", "5000")])
    assert capped.body["page"]["limit"] == 500 and len(capped.data) == 500
    others = await admin.get("/Timesheets", [("limit", "5000")])
    assert others.body["page"]["limit"] == 1000 and len(others.data) == 1000
    beyond = await admin.get("/Jobs", [("offset", "500")])
    assert beyond.data == [] and beyond.body["page"]["links"]["next"] is None


@pytest.mark.parametrize(
    "params",
    [
        [("limit", "0")],
        [("limit", "ten")],
        [("offset", "-1")],
        [("limit", "5"), ("LIMIT", "6")],
        [("verbose", "yes")],
    ],
)
@pytest_twisted.ensureDeferred
async def test_bad_paging_is_a_400_with_an_error_body(admin: Api, params: list[tuple[str, str]]) -> None:
    reply = await admin.get("/Jobs", params)
    assert reply.status == 400
    body = reply.body
    assert list(body) == ENVELOPE_KEYS and body["data"] is None
    [error] = body["errors"]
    assert set(error) == {"Field", "Message", "MessageDetail"} and error["Field"].lower() == params[0][0]


# -- filters ---------------------------------------------------------------------------------------

# (path, query parameter, record field, Company attribute): array filters matching a field.
PLAIN_FILTERS = [
    ("TimeEntries", "ID", "ID", "time_entries"),
    ("TimeEntries", "JobID", "JobID", "time_entries"),
    ("TimeEntries", "TaskID", "TaskID", "time_entries"),
    ("TimeEntries", "UserID", "UserID", "time_entries"),
    ("TimeEntries", "EntryDate", "Date", "time_entries"),
    ("Users", "ID", "ID", "users"),
    ("Users", "Name", "Name", "users"),
    ("Users", "Email", "Email", "users"),
    ("Users", "DivisionID", "DivisionID", "users"),
    ("Users", "EmploymentTypeID", "EmploymentTypeID", "users"),
    ("Users", "SecurityLevel", "SecurityLevel", "users"),
    ("Users", "TimesheetApproverID", "TimesheetApproverID", "users"),
    ("Jobs", "ID", "ID", "jobs"),
    ("Jobs", "ClientID", "ClientID", "jobs"),
    ("Jobs", "Name", "Name", "jobs"),
    ("Jobs", "JobNumber", "JobNumber", "jobs"),
    ("Jobs", "ProjectManagerID", "ProjectManagerID", "jobs"),
    ("Clients", "ID", "ID", "clients"),
    ("Clients", "Name", "Name", "clients"),
    ("Clients", "ShortName", "ShortName", "clients"),
    ("Clients", "ClientNumber", "ClientNumber", "clients"),
    ("Tasks", "ID", "ID", "tasks"),
    ("Tasks", "Name", "Name", "tasks"),
    ("Tasks", "TaskCode", "TaskCode", "tasks"),
    ("Divisions", "ID", "ID", "divisions"),
    ("Divisions", "Name", "Name", "divisions"),
    ("Timesheets", "Status", "Status", "timesheets"),
    ("Timesheets", "UserID", "UserID", "timesheets"),
]


def two_values(records: list[Any], field: str) -> list[str]:
    """Two different values of the field, from records some way into the list."""
    values: list[str] = []
    for record in records[len(records) // 3 :] + records:
        value = getattr(record, field)
        if value not in values:
            values.append(value)
        if len(values) == 2:
            return values
    raise AssertionError(f"fewer than two values of {field}")


@pytest.mark.parametrize(("path", "parameter", "field", "attribute"), PLAIN_FILTERS)
@pytest_twisted.ensureDeferred
async def test_repeated_filter_keys_match_any_value(
    admin: Api, company: Company, path: str, parameter: str, field: str, attribute: str
) -> None:
    records = getattr(company, attribute)
    values = two_values(records, field)
    # The parameter name in two spellings: names are not case-sensitive.
    params = [(parameter, values[0]), (parameter.lower(), values[1]), ("limit", "1000")]
    walked = await admin.walk(f"/{path}", params)
    expected = [r.ID for r in records if getattr(r, field) in values]
    assert expected and [r["ID"] for r in walked] == expected


@pytest.mark.parametrize("path", ["Users", "Jobs", "Clients", "Tasks", "Divisions"])
@pytest_twisted.ensureDeferred
async def test_boolean_filters(admin: Api, company: Company, path: str) -> None:
    records = getattr(company, path.lower())
    inactive = await admin.walk(f"/{path}", [("ISACTIVE", "false")])
    assert [r["ID"] for r in inactive] == [r.ID for r in records if not r.IsActive] != []
    both = await admin.walk(f"/{path}", [("IsActive", "false"), ("IsActive", "true"), ("limit", "1000")])
    assert len(both) == len(records)
    assert (await admin.get(f"/{path}", [("IsActive", "False")])).status == 400


@pytest_twisted.ensureDeferred
async def test_filters_of_different_keys_must_all_match(admin: Api, company: Company) -> None:
    entry = company.time_entries[100]
    walked = await admin.walk("/TimeEntries", [("JobID", entry.JobID), ("UserID", entry.UserID)])
    expected = [e.ID for e in company.time_entries if e.JobID == entry.JobID and e.UserID == entry.UserID]
    assert [e["ID"] for e in walked] == expected and entry.ID in expected


@pytest_twisted.ensureDeferred
async def test_date_ranges_include_both_ends(admin: Api, company: Company) -> None:
    start, end = company.time_entries[900].Date, company.time_entries[700].Date
    walked = await admin.walk("/timeentries", [("startdate", start), ("EndDate", end)])
    expected = [e.ID for e in company.time_entries if start <= e.Date <= end]
    assert [e["ID"] for e in walked] == expected
    assert {walked[0]["Date"], walked[-1]["Date"]} == {end, start}
    assert (await admin.get("/TimeEntries", [("StartDate", "2026-02-30")])).status == 400
    assert (await admin.get("/TimeEntries", [("StartDate", start), ("StartDate", end)])).status == 400


@pytest_twisted.ensureDeferred
async def test_timesheet_ranges_select_overlapping_periods(admin: Api, company: Company) -> None:
    # A Wednesday to the next Wednesday overlaps two Monday-to-Sunday periods.
    walked = await admin.walk(
        "/Timesheets", [("FromDate", "2026-03-04"), ("ToDate", "2026-03-11"), ("limit", "1000")]
    )
    assert {t["StartDate"] for t in walked} == {"2026-03-02", "2026-03-09"}
    expected = [t.ID for t in company.timesheets if t.StartDate in ("2026-03-02", "2026-03-09")]
    assert [t["ID"] for t in walked] == expected


@pytest_twisted.ensureDeferred
async def test_filters_through_related_records(admin: Api, company: Company) -> None:
    users = {user.ID: user for user in company.users}
    division = company.divisions[1].ID
    by_division = await admin.walk("/Timesheets", [("DivisionID", division), ("limit", "1000")])
    assert [t["ID"] for t in by_division] == [
        t.ID for t in company.timesheets if users[t.UserID].DivisionID == division
    ]
    employment = company.users[0].EmploymentTypeID
    by_type = await admin.walk("/Timesheets", [("EmploymentTypeID", employment), ("limit", "1000")])
    assert [t["ID"] for t in by_type] == [
        t.ID for t in company.timesheets if users[t.UserID].EmploymentTypeID == employment
    ]
    job = company.jobs[0].ID
    on_job = await admin.walk("/Users", [("JobID", job)])
    assert [u["ID"] for u in on_job] == [u.ID for u in company.users if job in company.job_assignments[u.ID]]
    user = company.users[0].ID
    of_user = await admin.walk("/Jobs", [("UserID", user)])
    assert [j["ID"] for j in of_user] == [j.ID for j in company.jobs if j.ID in company.job_assignments[user]]


# -- orders, single records -------------------------------------------------------------------------

SORT_ORDERS: list[tuple[str, Callable[[dict[str, Any]], Any], bool]] = [
    ("TimeEntries", lambda r: (r["Date"], r["ID"]), True),
    ("Timesheets", lambda r: r["StartDate"], True),
    ("Jobs", lambda r: (r["ListDisplayText"], r["ID"]), False),
    ("Clients", lambda r: (r["ListDisplayText"], r["ID"]), False),
    ("Tasks", lambda r: (r["Name"], r["ID"]), False),
    ("Users", lambda r: r["Name"], False),
    ("Divisions", lambda r: r["Name"], False),
]


@pytest.mark.parametrize(("path", "key", "descending"), SORT_ORDERS)
@pytest_twisted.ensureDeferred
async def test_lists_come_in_the_documented_order(
    admin: Api, path: str, key: Callable[[dict[str, Any]], Any], descending: bool
) -> None:
    walked = await admin.walk(f"/{path}", [("limit", "1000")])
    assert len(walked) > 1
    assert walked == sorted(walked, key=key, reverse=descending)


@pytest_twisted.ensureDeferred
async def test_single_records_and_unknown_ids(admin: Api, standard: Api, company: Company) -> None:
    job = company.jobs[7]
    reply = await admin.get(f"/JOBS/{job.ID}")
    assert reply.status == 200 and reply.body["page"] is None
    assert reply.data["ID"] == job.ID and reply.data["Name"] == job.Name
    missing = await admin.get("/Jobs/" + "x" * 23)
    assert missing.status == 404 and missing.body["errors"][0]["Field"] == "ID"
    entry = company.time_entries[0]
    assert (await admin.get(f"/Jobs/{entry.ID}")).status == 404  # an ID of another entity type
    assert (await admin.get(f"/TimeEntries/{entry.ID}")).data["Hours"] == entry.Hours
    assert (await admin.get("/NoSuchThing")).status == 404
    not_allowed = await admin.send("PUT", "/Jobs")
    assert not_allowed.status == 405 and not_allowed.headers.getRawHeaders("allow") == ["GET, POST"]
    assert (await standard.send("DELETE", f"/Divisions/{company.divisions[0].ID}")).status == 405


@pytest_twisted.ensureDeferred
async def test_timesheet_entries_are_the_users_entries_of_its_week(admin: Api, company: Company) -> None:
    entry = company.time_entries[50]
    timesheet = next(
        t for t in company.timesheets if t.UserID == entry.UserID and t.StartDate <= entry.Date <= t.EndDate
    )
    reply = await admin.get(f"/Timesheets/{timesheet.ID}/TimeEntries")
    assert reply.body["page"] is None
    assert [e["ID"] for e in reply.data] == [
        e.ID
        for e in company.time_entries
        if e.UserID == timesheet.UserID and timesheet.StartDate <= e.Date <= timesheet.EndDate
    ]
    assert entry.ID in {e["ID"] for e in reply.data}


@pytest_twisted.ensureDeferred
async def test_verbose_nests_related_records(admin: Api, standard: Api, company: Company) -> None:
    entry = company.time_entries[3]
    plain = (await admin.get(f"/TimeEntries/{entry.ID}")).data
    assert not {"Job", "Task", "User", "Client"} & set(plain)
    nested = (await admin.get(f"/TimeEntries/{entry.ID}", [("verbose", "true")])).data
    job = next(j for j in company.jobs if j.ID == entry.JobID)
    assert nested["Job"]["ID"] == entry.JobID and nested["Task"]["ID"] == entry.TaskID
    assert nested["User"]["ID"] == entry.UserID and nested["Client"]["ID"] == job.ClientID
    jobs = (await standard.get("/Jobs", [("Verbose", "true"), ("limit", "3")])).data
    assert all(j["Client"]["ID"] == j["ClientID"] and "BillingRate" not in j["Client"] for j in jobs)


# -- authentication, scopes and visibility ----------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Token nope", "Bearer {token}", "Token"])
@pytest_twisted.ensureDeferred
async def test_missing_or_unknown_tokens_are_a_401(
    admin: Api, company: Company, authorization: str | None
) -> None:
    headers = (
        {} if authorization is None else {"Authorization": authorization.format(token=company.admin_token)}
    )
    reply = await admin.as_token(None).get("/Jobs", headers=headers)
    assert reply.status == 401 and reply.body["errors"][0]["Message"]


@pytest.mark.parametrize("scheme", ["Token", "token", "TOKEN"])
@pytest_twisted.ensureDeferred
async def test_the_token_scheme_is_not_case_sensitive(admin: Api, company: Company, scheme: str) -> None:
    reply = await admin.as_token(None).get(
        "/Me", headers={"Authorization": f"{scheme} {company.admin_token}"}
    )
    assert reply.status == 200 and reply.data["ID"] == company.tokens[company.admin_token]


@pytest.mark.parametrize(
    "path", ["/TimeEntries", "/Timesheets", "/TimeEntries/{entry}", "/Timesheets/{sheet}/TimeEntries"]
)
@pytest_twisted.ensureDeferred
async def test_company_wide_lists_need_a_manager_or_admin(
    standard: Api, manager: Api, company: Company, path: str
) -> None:
    path = path.format(entry=company.time_entries[0].ID, sheet=company.timesheets[0].ID)
    refused = await standard.get(path)
    assert refused.status == 403 and refused.body["errors"]
    assert (await manager.get(path)).status == 200


@pytest_twisted.ensureDeferred
async def test_rates_are_left_out_for_everyone_but_admins(admin: Api, standard: Api, manager: Api) -> None:
    paths = ["/Users", "/Jobs", "/Clients", "/Tasks", "/Me", "/Me/TimeEntries"]
    for api, shown in ((standard, False), (manager, False), (admin, True)):
        for path in paths:
            reply = await api.get(path, [("verbose", "true")])
            text = reply.raw.decode()
            assert reply.status == 200
            assert ('"BillingRate"' in text) is shown, (path, api.token)
            assert ('"CostRate"' in text) is (shown and path in ("/Users", "/Me", "/Me/TimeEntries")), path
    entries = (await manager.get("/TimeEntries", [("verbose", "true")])).raw.decode()
    assert '"BillingRate"' not in entries and '"CostRate"' not in entries


@pytest_twisted.ensureDeferred
async def test_me_is_the_callers_own_scope(standard: Api, company: Company) -> None:
    me = user_of(company, company.standard_token)
    assert (await standard.get("/me")).data == {
        key: value for key, value in me._asdict().items() if key not in ("BillingRate", "CostRate")
    }
    own = [e.ID for e in company.time_entries if e.UserID == me.ID]
    walked = await standard.walk("/Me/TimeEntries", [("limit", "500"), ("UserID", company.users[0].ID)])
    assert own and [e["ID"] for e in walked] == own
    job = next(e.JobID for e in company.time_entries if e.UserID == me.ID)
    filtered = await standard.walk("/Me/TimeEntries", [("JobID", job)])
    assert [e["ID"] for e in filtered] == [
        e.ID for e in company.time_entries if e.UserID == me.ID and e.JobID == job
    ]
    sheets = await standard.walk("/Me/Timesheets", [("limit", "1000")])
    assert [t["ID"] for t in sheets] == [t.ID for t in company.timesheets if t.UserID == me.ID]
    others = next(e for e in company.time_entries if e.UserID != me.ID)
    assert (await standard.get(f"/Me/TimeEntries/{others.ID}")).status == 404
    assert (await standard.get(f"/Me/TimeEntries/{own[0]}")).status == 200


@pytest_twisted.ensureDeferred
async def test_custom_fields_and_their_definitions(standard: Api, company: Company) -> None:
    definitions = (await standard.get("/CustomFieldDefinitions")).data
    assert definitions and all(
        set(d) == {"ID", "Name", "DisplayName", "DataType", "EntityType", "IsRequired", "PulldownValues"}
        for d in definitions
    )
    assert {d["DataType"] for d in definitions} == {"Text", "Number", "Date", "Pulldown", "Checkbox"}
    for path, entity_type in (
        ("Me/TimeEntries", "TimeEntry"),
        ("Jobs", "Job"),
        ("Users", "User"),
        ("Clients", "Client"),
    ):
        own = (await standard.get(f"/{path.removeprefix('Me/')}/CustomFieldDefinitions")).data
        assert own == [d for d in definitions if d["EntityType"] == entity_type] != []
        records = (await standard.get(f"/{path}")).data
        assert all(set(r["CustomFields"]) == {d["Name"] for d in own} for r in records)
    assert len((await standard.get("/TimeEntries/CustomFieldDefinitions")).data) <= 3
    assert (await standard.get("/Tasks/CustomFieldDefinitions")).data == []
    assert all("CustomFields" not in task for task in (await standard.get("/Tasks")).data)
    single = (await standard.get(f"/CustomFieldDefinitions/{definitions[0]['ID']}")).data
    assert single == definitions[0]


@pytest_twisted.ensureDeferred
async def test_text_with_special_characters_survives_the_trip(admin: Api, company: Company) -> None:
    special = [e for e in company.time_entries if e.Comment and any(c in e.Comment for c in '<"\n🚀日Ü\\')]
    assert special
    for entry in special[:5]:
        assert (await admin.get(f"/TimeEntries/{entry.ID}")).data["Comment"] == entry.Comment


@pytest_twisted.ensureDeferred
async def test_the_same_seed_serves_the_same_bytes(company: Company, pool: HTTPConnectionPool) -> None:
    twin = await _running(generate_company(entries=2000, seed=7))
    original = await _running(company)
    try:
        for path in ("/TimeEntries?limit=500&offset=1000&verbose=true", "/Users", "/Timesheets?limit=1000"):
            replies = [
                await Api(running, company.admin_token, pool).get(path) for running in (twin, original)
            ]
            assert replies[0].raw.replace(twin.base_url.encode(), b"") == replies[1].raw.replace(
                original.base_url.encode(), b""
            )
    finally:
        await twin.stop()
        await original.stop()


# -- requests and faults -------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_requests_are_recorded_by_user_not_token(admin: Api, company: Company) -> None:
    simulator = admin.running.simulator
    await admin.get("/Jobs", [("limit", "5")])
    await admin.get("/Jobs/x")
    await admin.as_token(None).get("/Jobs")
    recorded = simulator.requests
    assert [(r.method, r.path, r.params) for r in recorded] == [
        ("GET", "/v2/Jobs", (("limit", "5"),)),
        ("GET", "/v2/Jobs/x", ()),
        ("GET", "/v2/Jobs", ()),
    ]
    assert [r.user_id for r in recorded] == [company.tokens[company.admin_token]] * 2 + [None]
    assert company.admin_token not in repr(recorded)
    assert simulator.request_counts() == {"/v2/Jobs": 2, "/v2/Jobs/x": 1}


@pytest_twisted.ensureDeferred
async def test_a_simulator_may_keep_no_record_of_requests(company: Company, pool: HTTPConnectionPool) -> None:
    from twisted.internet import reactor

    running = await start_simulator(reactor, company, record_requests=False)
    try:
        api = Api(running, company.admin_token, pool)
        assert (await api.get("/Jobs", [("limit", "5")])).status == 200
        assert running.simulator.requests == []
        control = await treq.get(running.base_url.removesuffix("/v2") + "/_simulator/requests", pool=pool)
        assert control.code == 404
        assert (await control.json()) == {"error": "this simulator does not record requests"}
    finally:
        await running.stop()


@pytest_twisted.ensureDeferred
async def test_a_status_fault_can_break_the_third_page(admin: Api) -> None:
    faults = admin.running.faults
    faults.add(FaultRule("status", path=r"/timeentries\b", after=2, status=429, retry_after=7))
    pages = [await admin.get("/TimeEntries", [("limit", "500"), ("offset", str(i * 500))]) for i in range(4)]
    assert [p.status for p in pages] == [200, 200, 429, 200]
    assert pages[2].headers.getRawHeaders("retry-after") == ["7"]
    assert pages[2].body["errors"][0]["Message"] == "Too Many Requests"
    [fired] = faults.fired
    assert fired.method == "GET" and fired.target.endswith("limit=500&offset=1000")
    assert faults.rules == ()


@pytest_twisted.ensureDeferred
async def test_fault_rules_fire_the_given_number_of_times_on_matching_paths(admin: Api) -> None:
    faults = admin.running.simulator.faults
    faults.add(FaultRule("status", path="/jobs", times=2, status=500))
    faults.add(FaultRule("status", path="/users", times=None, status=503))
    statuses = [
        (await admin.get(path)).status for path in ["/Tasks", "/Jobs", "/Jobs", "/Jobs", "/Users", "/Users"]
    ]
    assert statuses == [200, 500, 500, 200, 503, 503]
    assert [f.target for f in faults.fired] == ["/v2/Jobs", "/v2/Jobs", "/v2/Users", "/v2/Users"]
    faults.clear()
    assert (await admin.get("/Users")).status == 200 and faults.fired == []


@pytest_twisted.ensureDeferred
async def test_a_slow_fault_answers_late(admin: Api) -> None:
    from twisted.internet import reactor

    admin.running.simulator.faults.add(FaultRule("slow", delay=0.3))
    started = reactor.seconds()
    reply = await admin.get("/Divisions")
    assert reply.status == 200 and len(reply.data) == 5
    assert reactor.seconds() - started >= 0.3


@pytest_twisted.ensureDeferred
async def test_a_client_may_give_up_on_a_slow_answer(admin: Api) -> None:
    admin.running.simulator.faults.add(FaultRule("slow", delay=30))
    with pytest.raises(ResponseNeverReceived):
        await admin.get("/Divisions", timeout=0.2)
    assert (await admin.get("/Divisions")).status == 200


@pytest_twisted.ensureDeferred
async def test_a_malformed_fault_answers_200_with_a_body_that_is_not_json(admin: Api) -> None:
    admin.running.simulator.faults.add(FaultRule("malformed"))
    reply = await admin.get("/Jobs")
    assert reply.status == 200
    with pytest.raises(ValueError):
        reply.body


@pytest_twisted.ensureDeferred
async def test_a_truncated_fault_sends_half_the_body(admin: Api) -> None:
    admin.running.simulator.faults.add(FaultRule("truncated"))
    headers: dict[str | bytes, str | bytes] = {"Authorization": f"Token {admin.token}"}  # as in Api.send
    response = await treq.get(
        admin.running.base_url + "/Jobs",
        headers=headers,
        pool=admin.pool,
        unbuffered=True,
    )
    assert response.code == 200
    assert response.length > 1000  # the full body's length, as Content-Length said
    with pytest.raises(ResponseFailed):
        await response.content()


@pytest_twisted.ensureDeferred
async def test_a_drop_fault_closes_the_connection_without_an_answer(admin: Api) -> None:
    admin.running.simulator.faults.add(FaultRule("drop"))
    with pytest.raises(ResponseNeverReceived):
        await admin.get("/Jobs")
    assert (await admin.get("/Jobs")).status == 200


@pytest_twisted.ensureDeferred
async def test_faults_are_controlled_over_http(admin: Api) -> None:
    control = admin.as_token(None)
    root = admin.running.base_url.removesuffix("/v2") + "/_simulator"
    added = await control.send(
        "POST", root + "/faults", body={"kind": "status", "status": 502, "path": "tasks"}
    )
    assert added.status == 201 and added.body["rule"]["status"] == 502
    assert (await admin.get("/Tasks")).status == 502
    listed = (await control.get(root + "/FAULTS")).body
    assert listed["rules"] == [] and listed["fired"][0]["target"] == "/v2/Tasks"
    for rule, problem in (
        ({"kind": "explode"}, "kind"),
        ({"kind": "drop", "path": "("}, "path"),
        ({"kind": "slow", "wait": 1}, "wait"),
    ):
        bad = await control.send("POST", root + "/faults", body=rule)
        assert bad.status == 400 and problem in bad.body["error"]
    await control.send("POST", root + "/faults", body={"kind": "drop", "times": None})
    assert (await control.send("DELETE", root + "/faults")).status == 200
    assert (await admin.get("/Tasks")).status == 200
    counts = (await control.get(root + "/requests")).body
    assert counts == {"total": 2, "perPath": {"/v2/Tasks": 2}}
    await control.send("DELETE", root + "/requests")
    assert (await control.get(root + "/requests")).body["total"] == 0


@pytest_twisted.ensureDeferred
async def test_forgetting_encodings_changes_no_answer(admin: Api) -> None:
    control = admin.as_token(None)
    root = admin.running.base_url.removesuffix("/v2") + "/_simulator"
    before = (await admin.get("/TimeEntries?limit=50&offset=20")).raw
    assert (await control.send("DELETE", root + "/encodings")).status == 200
    assert (await admin.get("/TimeEntries?limit=50&offset=20")).raw == before
    assert (await control.get(root + "/encodings")).status == 405


# -- writes ----------------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_time_entry_round_trip(own_admin: Api, own_company: Company) -> None:
    job, task = own_company.jobs[0], own_company.tasks[0]
    user = own_company.users[5]
    created = await own_admin.send(
        "POST",
        "/TimeEntries",
        body={
            "Date": "2026-10-20",
            "Hours": "2.5",
            "JobID": job.ID,
            "TaskID": task.ID,
            "UserID": user.ID,
            "Comment": "Written ✓",
            "CustomFields": {"WorkLocation": "Remote"},
        },
    )
    assert created.status == 201, created.raw
    entry = created.data
    assert ID_PATTERN.fullmatch(entry["ID"]) and entry["Hours"] == 2.5 and entry["BreakTime"] == 0.0
    assert entry["CustomFields"] == {"TicketReference": None, "WorkLocation": "Remote", "Overtime": False}
    assert entry["BillingRate"] == (job.BillingRate or 150.0) and entry["CostRate"] == user.CostRate
    assert (await own_admin.get(f"/TimeEntries/{entry['ID']}")).data == entry
    listed = await own_admin.walk("/TimeEntries", [("UserID", user.ID), ("EntryDate", "2026-10-20")])
    assert entry["ID"] in [e["ID"] for e in listed]

    patched = await own_admin.send("PATCH", f"/TimeEntries/{entry['ID']}", body={"Hours": 3, "Comment": None})
    assert patched.status == 200 and patched.data["Hours"] == 3.0 and patched.data["Comment"] is None
    assert (await own_admin.get(f"/TimeEntries/{entry['ID']}")).data["Hours"] == 3.0
    for field, value in (
        ("Date", "2026-10-21"),
        ("UserID", own_company.users[6].ID),
        ("Hours", 0),
        ("Nope", 1),
    ):
        refused = await own_admin.send("PATCH", f"/TimeEntries/{entry['ID']}", body={field: value})
        assert refused.status == 400 and refused.body["errors"][0]["Field"] == field

    deleted = await own_admin.send("DELETE", f"/TimeEntries/{entry['ID']}")
    assert deleted.status == 200 and deleted.data is None
    assert (await own_admin.get(f"/TimeEntries/{entry['ID']}")).status == 404


@pytest_twisted.ensureDeferred
async def test_time_entry_writes_by_security_level(own_admin: Api, own_company: Company) -> None:
    standard = own_admin.as_token(own_company.standard_token)
    me = user_of(own_company, own_company.standard_token)
    body = {
        "Date": "2026-12-02",
        "Hours": 1,
        "JobID": own_company.jobs[1].ID,
        "TaskID": own_company.tasks[1].ID,
    }
    assert (await standard.send("POST", "/TimeEntries", body={**body, "UserID": me.ID})).status == 403
    assert (await standard.send("POST", "/Me/TimeEntries", body={**body, "UserID": me.ID})).status == 400
    created = await standard.send("POST", "/Me/TimeEntries", body=body)
    assert created.status == 201 and created.data["UserID"] == me.ID and "BillingRate" not in created.data
    # A week without a timesheet gets one.
    sheets = (
        await standard.get("/Me/Timesheets", [("FromDate", "2026-12-02"), ("ToDate", "2026-12-02")])
    ).data
    assert [(t["StartDate"], t["Status"]) for t in sheets] == [("2026-11-30", "Open")]
    assert (
        await standard.send("PATCH", f"/TimeEntries/{created.data['ID']}", body={"Hours": 2})
    ).status == 403
    assert (
        await standard.send("POST", "/Jobs", body={"Name": "x", "ClientID": own_company.clients[0].ID})
    ).status == 403


@pytest_twisted.ensureDeferred
async def test_job_writes_and_referential_integrity(own_admin: Api, own_company: Company) -> None:
    client = own_company.clients[2]
    created = await own_admin.send(
        "POST",
        "/Jobs",
        body={
            "Name": "Aardvark",
            "JobNumber": "J-0000",
            "ClientID": client.ID,
            "CustomFields": {"BudgetHours": 12},
        },
    )
    assert created.status == 201, created.raw
    job = created.data
    assert job["ListDisplayText"] == "J-0000 - Aardvark" and job["IsActive"] is True
    assert job["CustomFields"] == {"BudgetHours": 12.0, "ContractEndDate": None}
    first = (await own_admin.get("/Jobs", [("limit", "1")])).data[0]
    assert first["ID"] == job["ID"]  # sorted into place by ListDisplayText
    renamed = await own_admin.send("PATCH", f"/Jobs/{job['ID']}", body={"Name": "Zebra", "JobNumber": None})
    assert renamed.data["ListDisplayText"] == "Zebra"
    assert (await own_admin.walk("/Jobs", [("limit", "1000")]))[-1]["ID"] == job["ID"]
    bad_client = await own_admin.send(
        "PATCH", f"/Jobs/{job['ID']}", body={"ClientID": own_company.users[0].ID}
    )
    assert bad_client.status == 400 and bad_client.body["errors"][0]["Field"] == "ClientID"
    in_use = own_company.time_entries[0].JobID
    assert (await own_admin.send("DELETE", f"/Jobs/{in_use}")).status == 400
    manager = own_admin.as_token(token_of(own_company, MANAGER))
    assert (await manager.send("DELETE", f"/Jobs/{job['ID']}")).status == 403
    assert (await own_admin.send("DELETE", f"/Jobs/{job['ID']}")).status == 200
    assert (await own_admin.get(f"/Jobs/{job['ID']}")).status == 404
    missing_industry = await own_admin.send("POST", "/Clients", body={"Name": "No industry"})
    assert (
        missing_industry.status == 400
        and missing_industry.body["errors"][0]["Field"] == "CustomFields.Industry"
    )


@pytest_twisted.ensureDeferred
async def test_timesheet_actions(own_admin: Api, own_company: Company) -> None:
    sheet = next(t for t in own_company.timesheets if t.Status == "Open")
    submitted = await own_admin.send("POST", f"/Timesheets/{sheet.ID}/Actions", body={"Action": "Submit"})
    assert submitted.data["Status"] == "Waiting" and submitted.data["HasBeenSubmitted"] is True
    approved = await own_admin.send("POST", f"/Timesheets/{sheet.ID}/Actions", body={"Action": "Approve"})
    assert approved.data["Status"] == "Approved"
    assert approved.data["ApprovedByUserID"] == own_company.tokens[own_company.admin_token]
    again = await own_admin.send("POST", f"/Timesheets/{sheet.ID}/Actions", body={"Action": "Approve"})
    assert again.status == 400


# -- the command line ----------------------------------------------------------------------------------


def test_the_command_line_serves_a_company() -> None:
    command = [
        sys.executable,
        "-m",
        "odata_klein_plugins.clicktime.simulator",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--entries",
        "200",
        "--seed",
        "5",
        "--admin-token",
        "cli-admin",
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            lines = dict(process.stdout.readline().rstrip("\n").split(": ", 1) for _ in range(3))
            assert lines["admin token"] == "cli-admin" and lines["standard token"]
            url = lines["base URL"] + "/TimeEntries"
            request = urllib.request.Request(url, headers={"Authorization": "Token cli-admin"})
            with urllib.request.urlopen(request, timeout=10) as response:
                assert json.load(response)["page"]["count"] == 200
        finally:
            process.terminate()
