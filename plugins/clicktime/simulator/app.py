"""A Klein app that answers like ClickTime's REST API v2, over a generated ``Company``.

Where ClickTime's documentation is silent the simulator chooses; clients must not depend
on these choices (the [I] items of the API notes):

Requests
- Paths are ``/v2/...``; path words and query parameter names are compared ignoring case,
  IDs and values exactly.  Checks run in this order: token (401), path (404) and method
  (405, with ``Allow``), security level (403), input (400), IDs in the path (404).
- ``Authorization: Token <token>``, the scheme word in any case.  Basic auth is not
  simulated.
- Unknown query parameters are ignored (so is ``ID`` on ``/Timesheets``, not a filter
  there).  A parameter that takes one value (limit, offset, verbose, StartDate, EndDate,
  FromDate, ToDate) sent twice is a 400; so are malformed numbers, dates and booleans
  (exactly ``true`` or ``false``).

Lists
- ``limit`` defaults to 100; a limit above the cap (500 for TimeEntries, 1000 for other
  lists) is clamped, and ``page.limit`` tells the limit used; ``limit`` < 1 or a negative
  ``offset`` is a 400.  An offset past the end gives an empty page.
- ``links`` are absolute URLs built from the request's Host header and path as sent,
  with the query as sent but ``limit`` and ``offset`` replaced.  ``previous`` is null on
  the first page and ``next`` on the last; ``last`` is the last offset reachable from
  the current one in steps of ``limit``.
- Single entities and the unpaged ``/Timesheets/{id}/TimeEntries`` answer
  ``"page": null``.
- ``/Timesheets`` ``FromDate``/``ToDate`` select the timesheets whose period overlaps
  the range; its ``DivisionID``/``EmploymentTypeID`` are those of the timesheet's user.
- ``/CustomFieldDefinitions`` is ordered by EntityType, Name, ID; it and
  ``/{Entity}/CustomFieldDefinitions`` are readable by every user.

Visibility
- ``BillingRate`` and ``CostRate`` are sent to ADMIN users only.
- MANAGER users have the company-wide scope (root ``/TimeEntries``, ``/Timesheets``).
- ``verbose=true`` adds, after an entity's own fields, ``Job``, ``Task``, ``User`` and
  ``Client`` (the job's) to a time entry and ``Client`` to a job, each seen as the
  caller may see it; other entities have nothing to nest.

Writes
- Create answers 201 with the saved entity, update 200 with it, delete 200 with
  ``"data": null``.  Bodies are JSON objects; a field that is unknown or read-only is a
  400 (``ID``, ``ListDisplayText``, ``CreatedDate``, a time entry's rates, which follow
  its job and user); numbers may be sent as strings.
- Who: time entries are created at the root by ADMIN, under ``/Me`` by anyone (without
  ``UserID``), updated and deleted at the root by ADMIN and MANAGER.  Jobs, Clients,
  Tasks, Users and Divisions are created and updated by ADMIN and MANAGER, deleted (not
  Divisions) by ADMIN.  Deleting a record that others refer to is a 400.
- A time entry created in a week where its user has no timesheet opens one (``Open``).
  Job assignments and timesheet status do not restrict writes.
- ``POST /Timesheets/{id}/Actions`` with ``{"Action": "Submit"}`` (Open or Rejected to
  Waiting), ``"Approve"`` or ``"Reject"`` (Waiting to Approved or Rejected), by ADMIN or
  MANAGER; it answers the timesheet.

Test-only control paths, outside ``/v2`` and without a token:
``GET/POST/DELETE /_simulator/faults`` (see ``faults``: the rules and what fired, add a
rule from a JSON object, remove all), ``GET/DELETE /_simulator/requests`` (request
counts, total and per path; forget them) and ``DELETE /_simulator/encodings`` (forget
every entity's encoded JSON, below: benchmarks use it to measure reads that encode
every entity, as a server without that cache does).

Speed: lists stay in their fixed order, so an unfiltered page is a slice; filtered
lists are kept in a small LRU cache per (entity set, scope, filters); every entity's
JSON is kept per (visibility, verbose) once encoded, so a page is a join of bytes.
Writes empty the filtered-list cache and forget the written entity's JSON.
"""

from __future__ import annotations

import datetime
import json
import math
import random
import re
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus
from operator import attrgetter
from typing import Any, Protocol, cast
from urllib.parse import parse_qsl, unquote, urlencode

from klein import Klein
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IListeningPort, IReactorCore, IReactorTime
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import Site

from .data import (
    ADMIN,
    COMPANY_BILLING_RATE,
    MANAGER,
    ORDERINGS,
    SECONDARY_BILLING_RATE_MODES,
    SECURITY_LEVELS,
    COST_MODELS,
    Client,
    Company,
    CustomFieldDefinition,
    Division,
    Job,
    Record,
    Task,
    TimeEntry,
    Timesheet,
    User,
    list_display_text,
    random_ids,
    week_start,
)
from .faults import Faults, FaultRule, inject

DEFAULT_LIMIT = 100
RATE_FIELDS = ("BillingRate", "CostRate")
EVERYONE = frozenset(SECURITY_LEVELS)
MANAGERS = frozenset({ADMIN, MANAGER})
ADMINS = frozenset({ADMIN})
NOBODY: frozenset[str] = frozenset()
_SELECTION_CACHE_SIZE = 32

_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _json(value: object) -> bytes:
    return _JSON.encode(value).encode("utf-8")


def _envelope(data: bytes, page: bytes = b"null", errors: bytes = b"[]") -> bytes:
    return b'{"data":%s,"page":%s,"meta":{},"jsonapi":{},"errors":%s}' % (data, page, errors)


class _ApiError(Exception):
    """An answer with a ClickTime error body."""

    def __init__(
        self,
        status: int,
        message: str,
        field: str = "",
        detail: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.detail = detail
        self.headers = headers or {}

    def body(self) -> bytes:
        error = {"Field": self.field, "Message": self.message, "MessageDetail": list(self.detail)}
        return _envelope(b"null", errors=_json([error]))


def _invalid(field: str, problem: str) -> _ApiError:
    return _ApiError(400, f"{field} {problem}.", field)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the simulator received (the caller by user ID, never by token)."""

    method: str
    path: str
    params: tuple[tuple[str, str], ...]
    user_id: str | None


# -- values of query parameters -----------------------------------------------------------

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _date_value(name: str, raw: str) -> str:
    try:
        if _DATE.fullmatch(raw):
            datetime.date.fromisoformat(raw)
            return raw
    except ValueError:
        pass
    raise _invalid(name, "must be a date written YYYY-MM-DD")


def _boolean_value(name: str, raw: str) -> bool:
    if raw in ("true", "false"):
        return raw == "true"
    raise _invalid(name, "must be true or false")


def _text_value(name: str, raw: str) -> str:
    return raw


def _count_value(name: str, raw: str) -> int:
    if not re.fullmatch(r"\d{1,9}", raw):
        raise _invalid(name, "must be a whole number >= 0")
    return int(raw)


# -- filters --------------------------------------------------------------------------------

_Predicate = Callable[[Any], bool]


class _Filter(Protocol):
    def compile(self, name: str, values: list[str], company: Company) -> tuple[Hashable, _Predicate]:
        """A cache key for the values, and the test a record must pass."""


@dataclass(frozen=True)
class _AnyOf:
    """An array filter: the field equals one of the values."""

    field: str
    parse: Callable[[str, str], object] = _text_value

    def compile(self, name: str, values: list[str], company: Company) -> tuple[Hashable, _Predicate]:
        allowed = frozenset(self.parse(name, value) for value in values)
        get = attrgetter(self.field)
        return allowed, lambda record: get(record) in allowed


@dataclass(frozen=True)
class _Bound:
    """One end of an inclusive date range: the field is on or after (before) the date."""

    field: str
    at_least: bool

    def compile(self, name: str, values: list[str], company: Company) -> tuple[Hashable, _Predicate]:
        if len(values) != 1:
            raise _invalid(name, "takes one value")
        bound = _date_value(name, values[0])
        get = attrgetter(self.field)
        if self.at_least:
            return bound, lambda record: get(record) >= bound
        return bound, lambda record: get(record) <= bound


@dataclass(frozen=True)
class _Through:
    """A filter on related records: ``link`` is among the IDs ``related`` derives from the values."""

    link: str
    related: Callable[[Company, frozenset[str]], frozenset[str]]

    def compile(self, name: str, values: list[str], company: Company) -> tuple[Hashable, _Predicate]:
        allowed = frozenset(values)
        members = self.related(company, allowed)
        get = attrgetter(self.link)
        return allowed, lambda record: get(record) in members


def _users_whose(field: str) -> Callable[[Company, frozenset[str]], frozenset[str]]:
    get = attrgetter(field)
    return lambda company, allowed: frozenset(u.ID for u in company.users if get(u) in allowed)


def _users_assigned_to(company: Company, jobs: frozenset[str]) -> frozenset[str]:
    return frozenset(
        user for user, assigned in company.job_assignments.items() if not jobs.isdisjoint(assigned)
    )


def _jobs_assigned_to(company: Company, users: frozenset[str]) -> frozenset[str]:
    return frozenset(job for user in users for job in company.job_assignments.get(user, ()))


# -- body fields of writes ------------------------------------------------------------------

_Parse = Callable[[str, object, "_Store"], object]
_REQUIRED = object()


@dataclass(frozen=True)
class _Field:
    parse: _Parse
    default: object = _REQUIRED


def _text(name: str, raw: object, store: _Store) -> str:
    if not isinstance(raw, str):
        raise _invalid(name, "must be a string")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(name, "is not valid text") from None
    return raw


def _nullable(parse: _Parse) -> _Parse:
    def parse_nullable(name: str, raw: object, store: _Store) -> object:
        return None if raw is None else parse(name, raw, store)

    return parse_nullable


def _boolean(name: str, raw: object, store: _Store) -> bool:
    if not isinstance(raw, bool):
        raise _invalid(name, "must be true or false")
    return raw


def _number(name: str, raw: object, store: _Store) -> float:
    """A number >= 0, sent as a JSON number or as a string holding one."""
    value: object = raw
    if isinstance(raw, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", raw):
        value = float(raw)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise _invalid(name, "must be a number >= 0")
    return float(value)


def _hours(name: str, raw: object, store: _Store) -> float:
    value = _number(name, raw, store)
    if not 0 < value <= 24:
        raise _invalid(name, "must be more than 0 and at most 24")
    return value


def _date(name: str, raw: object, store: _Store) -> str:
    return _date_value(name, _text(name, raw, store))


def _time(name: str, raw: object, store: _Store) -> str:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", _text(name, raw, store)):
        raise _invalid(name, "must be a time written HH:MM")
    return str(raw)


def _choice(*choices: str) -> _Parse:
    def parse_choice(name: str, raw: object, store: _Store) -> str:
        if raw not in choices:
            raise _invalid(name, f"must be one of {', '.join(choices)}")
        return str(raw)

    return parse_choice


def _reference(record_type: type) -> _Parse:
    def parse_reference(name: str, raw: object, store: _Store) -> str:
        if not isinstance(raw, str) or store.get(raw, record_type) is None:
            raise _invalid(name, f"must be the ID of an existing {record_type.__name__}")
        return raw

    return parse_reference


def _custom_fields(entity_type: str) -> _Parse:
    """A ``CustomFields`` object: keys the definitions' names, values of their DataType."""

    def parse_custom_fields(name: str, raw: object, store: _Store) -> dict[str, object]:
        if not isinstance(raw, dict):
            raise _invalid(name, "must be an object")
        definitions = store.custom_field_definitions(entity_type)
        unknown = sorted(set(raw) - set(definitions))
        if unknown:
            raise _invalid(f"{name}.{unknown[0]}", f"is not a custom field of {entity_type}")
        return {key: _custom_value(f"{name}.{key}", definitions[key], value, store) for key, value in raw.items()}

    return parse_custom_fields


def _custom_value(name: str, definition: CustomFieldDefinition, raw: object, store: _Store) -> object:
    if definition.DataType == "Checkbox":
        return _boolean(name, raw, store)
    if raw is None:
        return None
    if definition.DataType == "Number":
        return _number(name, raw, store)
    if definition.DataType == "Date":
        return _date(name, raw, store)
    if definition.DataType == "Pulldown":
        return _choice(*definition.PulldownValues or ())(name, raw, store)
    return _text(name, raw, store)


_optional_text = _Field(_nullable(_text), None)
_optional_rate = _Field(_nullable(_number), None)


def _flag(default: bool) -> _Field:
    return _Field(_boolean, default)


def _optional_reference(record_type: type) -> _Field:
    return _Field(_nullable(_reference(record_type)), None)


# -- entity sets ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _EntitySet:
    """One collection of the API: where its records live, who may do what, how it filters."""

    name: str
    record_type: type
    attribute: str
    page_cap: int = 1000
    filters: Mapping[str, _Filter] = field(default_factory=dict)
    readers: frozenset[str] = EVERYONE
    creators: frozenset[str] = NOBODY
    updaters: frozenset[str] = NOBODY
    deleters: frozenset[str] = NOBODY
    fields: Mapping[str, _Field] = field(default_factory=dict)
    fixed_fields: frozenset[str] = frozenset()  # writable on create only
    number_field: str | None = None  # the number ListDisplayText starts with
    referenced_by: tuple[tuple[str, str], ...] = ()  # (Company attribute, field)

    @property
    def entity_type(self) -> str:
        return self.record_type.__name__

    def filter_named(self, name: str) -> tuple[str, _Filter] | None:
        """The filter a query parameter (any case) names, with its documented spelling."""
        for documented, kind in self.filters.items():
            if documented.lower() == name:
                return documented, kind
        return None


_ID = _AnyOf("ID")
_IS_ACTIVE = _AnyOf("IsActive", _boolean_value)

_TIME_ENTRIES = _EntitySet(
    "TimeEntries",
    TimeEntry,
    "time_entries",
    page_cap=500,
    filters={
        "ID": _ID,
        "JobID": _AnyOf("JobID"),
        "TaskID": _AnyOf("TaskID"),
        "UserID": _AnyOf("UserID"),
        "StartDate": _Bound("Date", at_least=True),
        "EndDate": _Bound("Date", at_least=False),
        "EntryDate": _AnyOf("Date", _date_value),
    },
    readers=MANAGERS,
    creators=ADMINS,
    updaters=MANAGERS,
    deleters=MANAGERS,
    fields={
        "Date": _Field(_date),
        "Hours": _Field(_hours),
        "BreakTime": _Field(_number, 0.0),
        "StartTime": _Field(_nullable(_time), None),
        "EndTime": _Field(_nullable(_time), None),
        "Comment": _optional_text,
        "JobID": _Field(_reference(Job)),
        "TaskID": _Field(_reference(Task)),
        "UserID": _Field(_reference(User)),
        "CustomFields": _Field(_custom_fields("TimeEntry"), {}),
    },
    fixed_fields=frozenset({"Date", "UserID"}),
)
_TIMESHEETS = _EntitySet(
    "Timesheets",
    Timesheet,
    "timesheets",
    filters={
        "Status": _AnyOf("Status"),
        "UserID": _AnyOf("UserID"),
        "DivisionID": _Through("UserID", _users_whose("DivisionID")),
        "EmploymentTypeID": _Through("UserID", _users_whose("EmploymentTypeID")),
        "FromDate": _Bound("EndDate", at_least=True),
        "ToDate": _Bound("StartDate", at_least=False),
    },
    readers=MANAGERS,
)
_USERS = _EntitySet(
    "Users",
    User,
    "users",
    filters={
        "ID": _ID,
        "Name": _AnyOf("Name"),
        "Email": _AnyOf("Email"),
        "DivisionID": _AnyOf("DivisionID"),
        "EmploymentTypeID": _AnyOf("EmploymentTypeID"),
        "JobID": _Through("ID", _users_assigned_to),
        "SecurityLevel": _AnyOf("SecurityLevel"),
        "IsActive": _IS_ACTIVE,
        "TimesheetApproverID": _AnyOf("TimesheetApproverID"),
    },
    creators=MANAGERS,
    updaters=MANAGERS,
    deleters=ADMINS,
    fields={
        "Name": _Field(_text),
        "Email": _Field(_text),
        "IsActive": _flag(True),
        "StartDate": _Field(_nullable(_date), None),
        "EndDate": _Field(_nullable(_date), None),
        "EmployeeNumber": _optional_text,
        "Notes": _optional_text,
        "PayrollType": _optional_text,
        "Role": _optional_text,
        "AccountingPackageID": _optional_text,
        "DivisionID": _optional_reference(Division),
        "EmploymentTypeID": _optional_text,
        "DefaultTaskID": _optional_reference(Task),
        "TimesheetApproverID": _optional_reference(User),
        "ExpenseApproverID": _optional_reference(User),
        "TimeOffApproverID": _optional_reference(User),
        "SecurityLevel": _Field(_choice(*SECURITY_LEVELS), "STANDARD"),
        "CostModel": _Field(_choice(*COST_MODELS), "Hourly"),
        "CostRate": _optional_rate,
        "BillingRate": _optional_rate,
        "UseCompanyBillingRate": _flag(True),
        "EnableBreakTime": _flag(False),
        "RequireComments": _flag(False),
        "RequireStartEndTime": _flag(False),
        "SubjectToTimesheetApproval": _flag(True),
        "CustomFields": _Field(_custom_fields("User"), {}),
    },
    referenced_by=(
        ("time_entries", "UserID"),
        ("timesheets", "UserID"),
        ("jobs", "ProjectManagerID"),
        ("users", "TimesheetApproverID"),
        ("users", "ExpenseApproverID"),
        ("users", "TimeOffApproverID"),
    ),
)
_JOBS = _EntitySet(
    "Jobs",
    Job,
    "jobs",
    filters={
        "ID": _ID,
        "ClientID": _AnyOf("ClientID"),
        "Name": _AnyOf("Name"),
        "JobNumber": _AnyOf("JobNumber"),
        "IsActive": _IS_ACTIVE,
        "ProjectManagerID": _AnyOf("ProjectManagerID"),
        "UserID": _Through("ID", _jobs_assigned_to),
    },
    creators=MANAGERS,
    updaters=MANAGERS,
    deleters=ADMINS,
    fields={
        "Name": _Field(_text),
        "JobNumber": _optional_text,
        "ClientID": _Field(_reference(Client)),
        "ProjectManagerID": _optional_reference(User),
        "Notes": _optional_text,
        "AccountingPackageID": _optional_text,
        "StartDate": _Field(_nullable(_date), None),
        "EndDate": _Field(_nullable(_date), None),
        "IsActive": _flag(True),
        "IsBillable": _flag(True),
        "TimeRequiresApproval": _flag(False),
        "UseCompanyBillingRate": _flag(True),
        "BillingRate": _optional_rate,
        "SecondaryBillingRateMode": _Field(_choice(*SECONDARY_BILLING_RATE_MODES), "INHERIT"),
        "CustomFields": _Field(_custom_fields("Job"), {}),
    },
    number_field="JobNumber",
    referenced_by=(("time_entries", "JobID"),),
)
_CLIENTS = _EntitySet(
    "Clients",
    Client,
    "clients",
    filters={
        "ID": _ID,
        "IsActive": _IS_ACTIVE,
        "Name": _AnyOf("Name"),
        "ShortName": _AnyOf("ShortName"),
        "ClientNumber": _AnyOf("ClientNumber"),
    },
    creators=MANAGERS,
    updaters=MANAGERS,
    deleters=ADMINS,
    fields={
        "Name": _Field(_text),
        "ShortName": _optional_text,
        "ClientNumber": _optional_text,
        "Notes": _optional_text,
        "AccountingPackageID": _optional_text,
        "IsActive": _flag(True),
        "BillingRate": _optional_rate,
        "SecondaryBillingRateMode": _Field(_choice(*SECONDARY_BILLING_RATE_MODES), "INHERIT"),
        "CustomFields": _Field(_custom_fields("Client"), {}),
    },
    number_field="ClientNumber",
    referenced_by=(("jobs", "ClientID"),),
)
_TASKS = _EntitySet(
    "Tasks",
    Task,
    "tasks",
    filters={"ID": _ID, "IsActive": _IS_ACTIVE, "Name": _AnyOf("Name"), "TaskCode": _AnyOf("TaskCode")},
    creators=MANAGERS,
    updaters=MANAGERS,
    deleters=ADMINS,
    fields={
        "Name": _Field(_text),
        "TaskCode": _optional_text,
        "Notes": _optional_text,
        "AccountingPackageID": _optional_text,
        "IsActive": _flag(True),
        "IsBillable": _flag(True),
        "UseCompanyBillingRate": _flag(True),
        "BillingRate": _optional_rate,
        "CustomFields": _Field(_custom_fields("Task"), {}),
    },
    number_field="TaskCode",
    referenced_by=(("time_entries", "TaskID"), ("users", "DefaultTaskID")),
)
_DIVISIONS = _EntitySet(
    "Divisions",
    Division,
    "divisions",
    filters={"ID": _ID, "Name": _AnyOf("Name"), "IsActive": _IS_ACTIVE},
    creators=MANAGERS,
    updaters=MANAGERS,
    fields={
        "Name": _Field(_text),
        "Notes": _optional_text,
        "AccountingPackageID": _optional_text,
        "IsActive": _flag(True),
        "CustomFields": _Field(_custom_fields("Division"), {}),
    },
)
_CUSTOM_FIELD_DEFINITIONS = _EntitySet(
    "CustomFieldDefinitions", CustomFieldDefinition, "custom_field_definitions"
)

ENTITY_SETS: Mapping[str, _EntitySet] = {
    entity_set.name.lower(): entity_set
    for entity_set in (_TIME_ENTRIES, _TIMESHEETS, _USERS, _JOBS, _CLIENTS, _TASKS, _DIVISIONS)
}
# Entity sets with a /{Set}/CustomFieldDefinitions list.
_WITH_CUSTOM_FIELDS = frozenset({"timeentries", "users", "jobs", "clients", "tasks", "divisions"})
# What verbose=true nests: (key, the chain of ID fields that leads to the nested record).
_NESTED: Mapping[type, tuple[tuple[str, tuple[str, ...]], ...]] = {
    TimeEntry: (("Job", ("JobID",)), ("Task", ("TaskID",)), ("User", ("UserID",)), ("Client", ("JobID", "ClientID"))),
    Job: (("Client", ("ClientID",)),),
}
_NESTED_TYPES = frozenset({Job, Task, User, Client})
_TIMESHEET_ACTIONS = {
    # action: (statuses it applies to, status after, the field naming who did it)
    "Submit": (("Open", "Rejected"), "Waiting", "SubmittedByUserID"),
    "Approve": (("Waiting",), "Approved", "ApprovedByUserID"),
    "Reject": (("Waiting",), "Rejected", "RejectedByUserID"),
}


# -- records ----------------------------------------------------------------------------------


class _Store:
    """The company's records, indexed by ID, changed in place so the lists stay in order."""

    def __init__(self, company: Company) -> None:
        self.company = company
        self._by_id: dict[str, Record] = {
            record.ID: record
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
        }
        self._new_ids = random.Random(len(self._by_id))

    def records(self, entity_set: _EntitySet) -> list[Any]:
        return getattr(self.company, entity_set.attribute)

    def lookup(self, record_id: str) -> Record | None:
        return self._by_id.get(record_id)

    def get(self, record_id: str, record_type: type) -> Any:
        """The record of that type with that ID, or None."""
        record = self._by_id.get(record_id)
        return record if type(record) is record_type else None

    def user_of_token(self, token: str) -> User | None:
        user_id = self.company.tokens.get(token)
        return None if user_id is None else self.get(user_id, User)

    def custom_field_definitions(self, entity_type: str) -> dict[str, CustomFieldDefinition]:
        return {d.Name: d for d in self.company.custom_field_definitions if d.EntityType == entity_type}

    def new_id(self) -> str:
        while (candidate := random_ids(self._new_ids, 1)[0]) in self._by_id:
            pass
        return candidate

    def is_referenced(self, entity_set: _EntitySet, record_id: str) -> bool:
        return any(
            getattr(record, field) == record_id
            for attribute, field in entity_set.referenced_by
            for record in getattr(self.company, attribute)
        )

    def add(self, records: list[Any], record: Any) -> None:
        key, descending = ORDERINGS[type(record)]
        wanted = key(record)
        low, high = 0, len(records)
        while low < high:
            middle = (low + high) // 2
            here = key(records[middle])
            if (here > wanted) if descending else (here < wanted):
                low = middle + 1
            else:
                high = middle
        records.insert(low, record)
        self._by_id[record.ID] = record

    def replace(self, records: list[Any], old: Any, new: Any) -> None:
        records.remove(old)
        self.add(records, new)

    def remove(self, records: list[Any], record: Any) -> None:
        records.remove(record)
        del self._by_id[record.ID]

    def ensure_timesheet(self, user_id: str, day: str) -> None:
        """Open a timesheet for the week of ``day`` when the user has none."""
        monday = week_start(datetime.date.fromisoformat(day))
        start = monday.isoformat()
        timesheets = self.company.timesheets
        if not any(t.UserID == user_id and t.StartDate == start for t in timesheets):
            end = (monday + datetime.timedelta(days=6)).isoformat()
            self.add(timesheets, Timesheet(self.new_id(), user_id, start, end, "Open", False, None, None, None))


class _Encoder:
    """Entities as JSON bytes, each encoded once per (rates shown, verbose)."""

    def __init__(self, store: _Store) -> None:
        self._store = store
        self._with_custom_fields = frozenset(d.EntityType for d in store.company.custom_field_definitions)
        self._encoded: dict[tuple[bool, bool], dict[str, bytes]] = {}

    def encode(self, record: Any, show_rates: bool, verbose: bool) -> bytes:
        cache = self._encoded.setdefault((show_rates, verbose), {})
        encoded = cache.get(record.ID)
        if encoded is None:
            encoded = cache[record.ID] = _json(self._as_object(record, show_rates, verbose))
        return encoded

    def encode_all(self, records: Sequence[Any], show_rates: bool, verbose: bool) -> bytes:
        return b"[" + b",".join([self.encode(record, show_rates, verbose) for record in records]) + b"]"

    def forget_all(self) -> None:
        self._encoded.clear()

    def forget(self, record: Any) -> None:
        nested_in_others = type(record) in _NESTED_TYPES
        for (_, verbose), cache in self._encoded.items():
            if verbose and nested_in_others:
                cache.clear()
            else:
                cache.pop(record.ID, None)

    def _as_object(self, record: Any, show_rates: bool, verbose: bool) -> dict[str, object]:
        obj = dict(zip(record._fields, record))
        if not show_rates:
            for name in RATE_FIELDS:
                obj.pop(name, None)
        if type(record).__name__ not in self._with_custom_fields:
            obj.pop("CustomFields", None)
        if verbose:
            for key, chain in _NESTED.get(type(record), ()):
                nested = record
                for link in chain:
                    nested = self._store.lookup(getattr(nested, link)) if nested is not None else None
                obj[key] = None if nested is None else self._as_object(nested, show_rates, verbose=False)
        return obj


class _SelectionCache:
    """A small LRU cache of filtered lists."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._lists: OrderedDict[Hashable, list[Any]] = OrderedDict()

    def get(self, key: Hashable) -> list[Any] | None:
        found = self._lists.get(key)
        if found is not None:
            self._lists.move_to_end(key)
        return found

    def put(self, key: Hashable, records: list[Any]) -> None:
        self._lists[key] = records
        if len(self._lists) > self._size:
            self._lists.popitem(last=False)

    def clear(self) -> None:
        self._lists.clear()


# -- requests ---------------------------------------------------------------------------------


@dataclass
class _Call:
    """One authenticated API request, as the handlers see it."""

    request: IRequest
    method: str
    segments: list[str]
    query: list[tuple[str, str]]
    caller: User
    params: dict[str, list[str]] = field(init=False)

    def __post_init__(self) -> None:
        self.params = {}
        for name, value in self.query:
            self.params.setdefault(name.lower(), []).append(value)

    def one(self, name: str) -> str | None:
        """The one value of a single-valued parameter, or None when it is absent."""
        values = self.params.get(name.lower())
        if not values:
            return None
        if len(values) > 1:
            raise _invalid(name, "takes one value")
        return values[0]

    def flag(self, name: str) -> bool:
        value = self.one(name)
        return value is not None and _boolean_value(name, value)

    def body(self) -> dict[str, object]:
        try:
            body = json.loads(self.request.content.read() or b"null")
        except ValueError:
            raise _ApiError(400, "The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise _ApiError(400, "The request body must be a JSON object.")
        return body

    @property
    def shows_rates(self) -> bool:
        return self.caller.SecurityLevel == ADMIN


_Handler = Callable[[_Call], tuple[int, bytes]]


class Simulator:
    """The ClickTime API over ``company``.

    Writes change ``company`` in place; change it only through the API while a simulator
    serves it (the simulator indexes and caches it).  ``faults`` holds the fault rules;
    ``requests`` lists every API request received, unless ``record_requests`` is false
    (a demo that runs for months must not keep them all); ``clock`` times ``slow``
    faults and defaults to the global reactor.
    """

    def __init__(self, company: Company, clock: IReactorTime | None = None, *, record_requests: bool = True) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        self.company = company
        self.faults = Faults()
        self.requests: list[RecordedRequest] = []
        self._record_requests = record_requests
        self._clock = clock
        self._store = _Store(company)
        self._encoder = _Encoder(self._store)
        self._selections = _SelectionCache(_SELECTION_CACHE_SIZE)
        self.app = Klein()
        self.app.route("/", branch=True)(self._receive)

    def resource(self) -> IResource:
        return self.app.resource()

    def request_counts(self) -> Counter[str]:
        """How many API requests arrived, per path as sent."""
        return Counter(recorded.path for recorded in self.requests)

    # -- arrival ---------------------------------------------------------------------------

    def _receive(self, request: IRequest) -> bytes | Deferred[bytes]:
        path = request.path.decode("utf-8")
        segments = [unquote(segment) for segment in path.split("/") if segment]
        words = [segment.lower() for segment in segments]
        method = request.method.decode("ascii")
        if words[:1] == ["_simulator"]:
            return self._control(request, method, words[1:])
        target = request.uri.decode("utf-8")
        query = parse_qsl(target.partition("?")[2], keep_blank_values=True)
        caller = self._caller(request)
        if self._record_requests:
            self.requests.append(RecordedRequest(method, path, tuple(query), caller.ID if caller else None))
        answer = partial(self._answer, request, method, segments, query, caller)
        rule = self.faults.select(method, target)
        if rule is None:
            return answer()
        return inject(rule, request, self._clock, answer, partial(self._fail, request))

    def _caller(self, request: IRequest) -> User | None:
        scheme, _, token = (request.getHeader("authorization") or "").strip().partition(" ")
        return self._store.user_of_token(token.strip()) if scheme.lower() == "token" else None

    def _answer(
        self, request: IRequest, method: str, segments: list[str], query: list[tuple[str, str]], caller: User | None
    ) -> bytes:
        try:
            if caller is None:
                raise _ApiError(401, "A valid API token is required: Authorization: Token <token>.")
            if [s.lower() for s in segments[:1]] != ["v2"]:
                raise _ApiError(404, "No such resource.")
            status, body = self._dispatch(_Call(request, method, segments[1:], query, caller))
        except _ApiError as error:
            for name, value in error.headers.items():
                request.setHeader(name, value)
            status, body = error.status, error.body()
        return self._send(request, status, body)

    def _fail(self, request: IRequest, status: int) -> bytes:
        try:
            message = HTTPStatus(status).phrase
        except ValueError:
            message = "Error"
        return self._send(request, status, _ApiError(status, message).body())

    @staticmethod
    def _send(request: IRequest, status: int, body: bytes) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        request.setHeader(b"content-length", b"%d" % len(body))
        return body

    # -- routing ---------------------------------------------------------------------------

    def _dispatch(self, call: _Call) -> tuple[int, bytes]:
        handlers = self._route(call, [segment.lower() for segment in call.segments])
        if handlers is None:
            raise _ApiError(404, "No such resource.")
        handler = handlers.get(call.method)
        if handler is None:
            raise _ApiError(405, f"{call.method} is not allowed here.", headers={"Allow": ", ".join(handlers)})
        return handler(call)

    def _route(self, call: _Call, words: list[str]) -> dict[str, _Handler] | None:
        """The handlers of the path's methods; None when the path names nothing."""
        caller_id = call.caller.ID
        mine = ("UserID", caller_id)
        match words:
            case ["me"]:
                return {"GET": self._me}
            case ["me", "timeentries"]:
                return {"GET": partial(self._list, _TIME_ENTRIES, scope=mine), "POST": self._create_own_entry}
            case ["me", "timeentries", _]:
                return {"GET": partial(self._single, _TIME_ENTRIES, call.segments[2], scope=mine)}
            case ["me", "timesheets"]:
                return {"GET": partial(self._list, _TIMESHEETS, scope=mine)}
            case ["me", "timesheets", _]:
                return {"GET": partial(self._single, _TIMESHEETS, call.segments[2], scope=mine)}
            case ["customfielddefinitions"]:
                return {"GET": partial(self._list, _CUSTOM_FIELD_DEFINITIONS)}
            case ["customfielddefinitions", _]:
                return {"GET": partial(self._single, _CUSTOM_FIELD_DEFINITIONS, call.segments[1])}
            case [name, "customfielddefinitions"] if name in _WITH_CUSTOM_FIELDS:
                of_type = ("EntityType", ENTITY_SETS[name].entity_type)
                return {"GET": partial(self._list, _CUSTOM_FIELD_DEFINITIONS, scope=of_type)}
            case ["timesheets", _, "timeentries"]:
                return {"GET": partial(self._timesheet_entries, call.segments[1])}
            case ["timesheets", _, "actions"]:
                return {"POST": partial(self._timesheet_action, call.segments[1])}
            case [name] if name in ENTITY_SETS:
                entity_set = ENTITY_SETS[name]
                handlers: dict[str, _Handler] = {"GET": partial(self._list, entity_set)}
                if entity_set.creators:
                    handlers["POST"] = partial(self._create, entity_set)
                return handlers
            case [name, _] if name in ENTITY_SETS:
                entity_set = ENTITY_SETS[name]
                record_id = call.segments[1]
                handlers = {"GET": partial(self._single, entity_set, record_id)}
                if entity_set.updaters:
                    handlers["PATCH"] = partial(self._update, entity_set, record_id)
                if entity_set.deleters:
                    handlers["DELETE"] = partial(self._delete, entity_set, record_id)
                return handlers
        return None

    @staticmethod
    def _require(call: _Call, levels: frozenset[str]) -> None:
        if call.caller.SecurityLevel not in levels:
            raise _ApiError(403, f"This is not allowed for {call.caller.SecurityLevel} users.")

    # -- reads -----------------------------------------------------------------------------

    def _me(self, call: _Call) -> tuple[int, bytes]:
        return 200, _envelope(self._encoder.encode(call.caller, call.shows_rates, False))

    def _list(self, entity_set: _EntitySet, call: _Call, scope: tuple[str, str] | None = None) -> tuple[int, bytes]:
        if scope is None:
            self._require(call, entity_set.readers)
        limit_text, offset_text = call.one("limit"), call.one("offset")
        limit = DEFAULT_LIMIT if limit_text is None else _count_value("limit", limit_text)
        if limit < 1:
            raise _invalid("limit", "must be at least 1")
        limit = min(limit, entity_set.page_cap)
        offset = 0 if offset_text is None else _count_value("offset", offset_text)
        verbose = call.flag("verbose")
        records = self._select(entity_set, call.params, scope)
        data = self._encoder.encode_all(records[offset : offset + limit], call.shows_rates, verbose)
        return 200, _envelope(data, _json(self._page(call, len(records), limit, offset)))

    def _select(
        self, entity_set: _EntitySet, params: Mapping[str, list[str]], scope: tuple[str, str] | None
    ) -> list[Any]:
        """The records of the set that pass the query's filters, within the scope, in order."""
        keys: list[Hashable] = []
        tests: list[_Predicate] = []
        if scope is not None:
            scope_field, scope_value = scope
            keys.append(scope)
            get = attrgetter(scope_field)
            tests.append(lambda record: get(record) == scope_value)
        for name, values in params.items():
            found = entity_set.filter_named(name)
            if found is None or (scope is not None and found[0] == scope[0]):
                continue  # unknown parameters are ignored; so is the scope's own field
            documented, kind = found
            key, test = kind.compile(documented, values, self.company)
            keys.append((documented, key))
            tests.append(test)
        records = self._store.records(entity_set)
        if not tests:
            return records
        cache_key = (entity_set.name, frozenset(keys))
        selected = self._selections.get(cache_key)
        if selected is None:
            test = tests[0] if len(tests) == 1 else (lambda record: all(t(record) for t in tests))
            selected = list(filter(test, records))
            self._selections.put(cache_key, selected)
        return selected

    def _page(self, call: _Call, count: int, limit: int, offset: int) -> dict[str, object]:
        request = call.request
        host = request.getHeader("host") or "{0.host}:{0.port}".format(request.getHost())
        base = f"{'https' if request.isSecure() else 'http'}://{host}{request.path.decode('utf-8')}?"
        kept = [(name, value) for name, value in call.query if name.lower() not in ("limit", "offset")]

        def link(at: int) -> str:
            return base + urlencode([*kept, ("limit", limit), ("offset", at)])

        if count == 0:
            last = 0
        elif offset < count:
            last = offset + (count - 1 - offset) // limit * limit
        else:
            last = (count - 1) // limit * limit
        return {
            "count": count,
            "limit": limit,
            "offset": offset,
            "links": {
                "self": link(offset),
                "first": link(0),
                "next": link(offset + limit) if offset + limit < count else None,
                "previous": link(max(0, offset - limit)) if offset > 0 else None,
                "last": link(last),
            },
        }

    def _single(
        self, entity_set: _EntitySet, record_id: str, call: _Call, scope: tuple[str, str] | None = None
    ) -> tuple[int, bytes]:
        if scope is None:
            self._require(call, entity_set.readers)
        record = self._found(entity_set, record_id)
        if scope is not None and getattr(record, scope[0]) != scope[1]:
            raise self._not_found(entity_set, record_id)
        return 200, _envelope(self._encoder.encode(record, call.shows_rates, call.flag("verbose")))

    def _found(self, entity_set: _EntitySet, record_id: str) -> Any:
        record = self._store.get(record_id, entity_set.record_type)
        if record is None:
            raise self._not_found(entity_set, record_id)
        return record

    @staticmethod
    def _not_found(entity_set: _EntitySet, record_id: str) -> _ApiError:
        return _ApiError(404, f"No {entity_set.entity_type} has the ID {record_id}.", "ID")

    def _timesheet_entries(self, timesheet_id: str, call: _Call) -> tuple[int, bytes]:
        self._require(call, _TIMESHEETS.readers)
        timesheet = self._found(_TIMESHEETS, timesheet_id)
        entries = [
            entry
            for entry in self._select(_TIME_ENTRIES, {}, ("UserID", timesheet.UserID))
            if timesheet.StartDate <= entry.Date <= timesheet.EndDate
        ]
        return 200, _envelope(self._encoder.encode_all(entries, call.shows_rates, call.flag("verbose")))

    # -- writes ----------------------------------------------------------------------------

    def _create(self, entity_set: _EntitySet, call: _Call, owner: str | None = None) -> tuple[int, bytes]:
        if owner is None:
            self._require(call, entity_set.creators)
        body = call.body()
        if owner is not None:
            if "UserID" in body:
                raise _invalid("UserID", "is not accepted here: entries under /Me are the caller's")
            body["UserID"] = owner
        values = self._parse(entity_set, body, creating=True)
        missing = [name for name, spec in entity_set.fields.items() if spec.default is _REQUIRED and name not in values]
        if missing:
            raise _invalid(missing[0], "is required")
        values = {name: spec.default for name, spec in entity_set.fields.items()} | values
        values["ID"] = self._store.new_id()
        if "CreatedDate" in entity_set.record_type._fields:  # type: ignore[attr-defined]
            now = datetime.datetime.fromtimestamp(self._clock.seconds(), datetime.timezone.utc)
            values["CreatedDate"] = now.isoformat(timespec="seconds")
        if "CustomFields" in values:
            values["CustomFields"] = self._custom_field_defaults(entity_set) | values["CustomFields"]  # type: ignore[operator]
        record = entity_set.record_type(**self._derive(entity_set, values))
        self._check_required_custom_fields(entity_set, record)
        if isinstance(record, TimeEntry):
            self._store.ensure_timesheet(record.UserID, record.Date)
        self._store.add(self._store.records(entity_set), record)
        return 201, self._saved(record, call)

    def _create_own_entry(self, call: _Call) -> tuple[int, bytes]:
        return self._create(_TIME_ENTRIES, call, owner=call.caller.ID)

    def _update(self, entity_set: _EntitySet, record_id: str, call: _Call) -> tuple[int, bytes]:
        self._require(call, entity_set.updaters)
        record = self._found(entity_set, record_id)
        changes = self._parse(entity_set, call.body(), creating=False)
        if "CustomFields" in changes:
            changes["CustomFields"] = record.CustomFields | changes["CustomFields"]
        updated = entity_set.record_type(**self._derive(entity_set, record._asdict() | changes))
        self._check_required_custom_fields(entity_set, updated)
        self._store.replace(self._store.records(entity_set), record, updated)
        return 200, self._saved(updated, call)

    def _delete(self, entity_set: _EntitySet, record_id: str, call: _Call) -> tuple[int, bytes]:
        self._require(call, entity_set.deleters)
        record = self._found(entity_set, record_id)
        if self._store.is_referenced(entity_set, record_id):
            raise _ApiError(400, f"This {entity_set.entity_type} is in use and cannot be deleted.", "ID")
        self._store.remove(self._store.records(entity_set), record)
        self._changed(record)
        return 200, _envelope(b"null")

    def _timesheet_action(self, timesheet_id: str, call: _Call) -> tuple[int, bytes]:
        self._require(call, MANAGERS)
        timesheet = self._found(_TIMESHEETS, timesheet_id)
        body = call.body()
        if set(body) != {"Action"} or body["Action"] not in _TIMESHEET_ACTIONS:
            raise _invalid("Action", f"must be the only field, one of {', '.join(_TIMESHEET_ACTIONS)}")
        applies_to, status, done_by = _TIMESHEET_ACTIONS[str(body["Action"])]
        if timesheet.Status not in applies_to:
            raise _invalid("Action", f"does not apply to a timesheet that is {timesheet.Status}")
        updated = timesheet._replace(Status=status, HasBeenSubmitted=True, **{done_by: call.caller.ID})
        self._store.replace(self.company.timesheets, timesheet, updated)
        return 200, self._saved(updated, call)

    def _parse(self, entity_set: _EntitySet, body: Mapping[str, object], creating: bool) -> dict[str, object]:
        values = {}
        for name, raw in body.items():
            spec = entity_set.fields.get(name)
            if spec is None:
                raise _invalid(name, f"is not a writable field of {entity_set.entity_type}")
            if not creating and name in entity_set.fixed_fields:
                raise _invalid(name, "cannot be changed")
            values[name] = spec.parse(name, raw, self._store)
        return values

    def _custom_field_defaults(self, entity_set: _EntitySet) -> dict[str, object]:
        return {
            name: False if definition.DataType == "Checkbox" else None
            for name, definition in self._store.custom_field_definitions(entity_set.entity_type).items()
        }

    def _check_required_custom_fields(self, entity_set: _EntitySet, record: Any) -> None:
        for name, definition in self._store.custom_field_definitions(entity_set.entity_type).items():
            if definition.IsRequired and record.CustomFields.get(name) is None:
                raise _invalid(f"CustomFields.{name}", "is required")

    def _derive(self, entity_set: _EntitySet, values: dict[str, object]) -> dict[str, object]:
        """Fill in the fields that follow from others."""
        if entity_set.number_field is not None:
            values["ListDisplayText"] = list_display_text(values[entity_set.number_field], values["Name"])  # type: ignore[arg-type]
        if entity_set is _TIME_ENTRIES:
            job = self._store.get(str(values["JobID"]), Job)
            user = self._store.get(str(values["UserID"]), User)
            values["BillingRate"] = job.BillingRate or COMPANY_BILLING_RATE
            values["CostRate"] = user.CostRate
        return values

    def _saved(self, record: Any, call: _Call) -> bytes:
        self._changed(record)
        return _envelope(self._encoder.encode(record, call.shows_rates, False))

    def _changed(self, record: Any) -> None:
        self._selections.clear()
        self._encoder.forget(record)

    # -- control paths (test-only) -------------------------------------------------------

    def _control(self, request: IRequest, method: str, words: list[str]) -> bytes:
        status, answer = 200, cast(dict[str, object], {})
        match words, method:
            case ["faults"], "GET":
                answer = {
                    "rules": [rule.to_json() for rule in self.faults.rules],
                    "fired": [fired.to_json() for fired in self.faults.fired],
                }
            case ["faults"], "POST":
                try:
                    rule = FaultRule.from_json(json.loads(request.content.read() or b"null"))
                except (ValueError, TypeError) as error:
                    status, answer = 400, {"error": str(error)}
                else:
                    self.faults.add(rule)
                    status, answer = 201, {"rule": rule.to_json()}
            case ["faults"], "DELETE":
                self.faults.clear()
            case ["requests"], _ if not self._record_requests:
                status, answer = 404, {"error": "this simulator does not record requests"}
            case ["requests"], "GET":
                answer = {"total": len(self.requests), "perPath": dict(self.request_counts())}
            case ["requests"], "DELETE":
                self.requests.clear()
            case ["encodings"], "DELETE":
                self._encoder.forget_all()
            case (["faults"] | ["requests"] | ["encodings"]), _:
                status, answer = 405, {"error": f"{method} is not allowed here"}
            case _:
                status, answer = 404, {"error": "no such control path"}
        return self._send(request, status, _json(answer))


@dataclass(frozen=True)
class RunningSimulator:
    """A simulator listening on a port; ``base_url`` ends in ``/v2``."""

    simulator: Simulator
    listening_port: IListeningPort
    base_url: str

    @property
    def port(self) -> int:
        address = self.listening_port.getHost()
        assert isinstance(address, IPv4Address | IPv6Address), address
        return address.port

    @property
    def faults(self) -> Faults:
        return self.simulator.faults

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.simulator.requests

    def stop(self) -> Deferred[None]:
        """Stop listening (connections already open are left to their clients)."""
        return maybeDeferred(self.listening_port.stopListening).addCallback(lambda _: None)


class _QuietSite(Site):
    """A Site that writes no access log: inside the service (--demo) its lines would be noise."""

    noisy = False

    def log(self, request: object) -> None:
        pass


async def start_simulator(
    reactor: IReactorCore,
    company: Company,
    endpoint: str = "tcp:0:interface=127.0.0.1",
    *,
    access_log: bool = True,
    record_requests: bool = True,
) -> RunningSimulator:
    """Serve ``company`` on a Twisted server endpoint string (port 0: any free port)."""
    simulator = Simulator(company, clock=reactor, record_requests=record_requests)  # type: ignore[arg-type]
    site = Site(simulator.resource()) if access_log else _QuietSite(simulator.resource())
    port = await serverFromString(reactor, endpoint).listen(site)
    address = port.getHost()
    host = address.host if address.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return RunningSimulator(simulator, port, f"http://{host}:{address.port}/v2")
