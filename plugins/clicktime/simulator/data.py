"""A seeded generator of a realistic ClickTime company, and the records it is made of.

The same arguments give the same company, byte for byte: one ``random.Random(seed)``
drives every choice, nothing iterates over hash-ordered sets, and ``today`` defaults to
a fixed date rather than the clock.

Records are ``NamedTuple``s whose field names are the API's PascalCase field names, in
the order the API sends them.  Treat them as immutable: change a record with
``_replace`` and put the new one in its list (the simulator's writes do that); records
share their ``CustomFields`` dicts to keep 200,000 time entries small.  Every list of a
``Company`` is kept in the API's fixed order (``ORDERINGS``).

Choices the simulator makes where ClickTime says nothing (the [I] items of the API notes):

- IDs are 23 random ASCII letters and digits; tokens are 40.
- Timesheet periods run Monday to Sunday.  Every user has one timesheet per week of
  employment, from the week holding the first day of the two years before ``today`` to
  the week holding ``today``; each time entry lies in one of its user's timesheets.
- Ties of the documented orders are broken by ID (ascending, or descending where the
  order is descending); strings compare by code point.
- ``ListDisplayText`` is ``"<number> - <name>"`` (JobNumber, ClientNumber, TaskCode), or
  the bare name when there is no number.
- Custom field ``DataType`` is one of ``Text``, ``Number``, ``Date``, ``Pulldown``,
  ``Checkbox``; ``EntityType`` is the singular entity name (``TimeEntry``, ``Job``,
  ``User``, ``Client``); ``PulldownValues`` is null except for pull-downs.  Values are
  strings, numbers, ``YYYY-MM-DD`` strings, one of the pull-down values, booleans; all
  but checkboxes may be null.  Tasks and divisions have no custom fields, so their
  ``CustomFields`` is empty and the API leaves it out.
- Users may book time only on the jobs assigned to them (``Company.job_assignments``);
  the assignments also answer the ``JobID`` filter of ``/Users`` and the ``UserID``
  filter of ``/Jobs``.
- A time entry's ``BillingRate`` is its job's (the company rate 150 when the job uses
  the company rate), its ``CostRate`` its user's.
"""

from __future__ import annotations

import base64
import datetime
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, NamedTuple

DEFAULT_TODAY = datetime.date(2026, 11, 1)
ID_LENGTH = 23
TOKEN_LENGTH = 40
COMPANY_BILLING_RATE = 150.0

ADMIN = "ADMIN"
MANAGER = "MANAGER"
STANDARD = "STANDARD"
SECURITY_LEVELS = (STANDARD, MANAGER, ADMIN)
COST_MODELS = ("Hourly", "Salary")
SECONDARY_BILLING_RATE_MODES = ("INHERIT", "CUSTOM", "FLAT")
TIMESHEET_STATUSES = ("Open", "JobHold", "TORAHold", "Waiting", "Locked", "Approved", "Rejected")
CUSTOM_FIELD_DATA_TYPES = ("Text", "Number", "Date", "Pulldown", "Checkbox")

CustomFieldValue = str | float | bool | None
CustomFields = dict[str, CustomFieldValue]


class Division(NamedTuple):
    ID: str
    Name: str
    Notes: str | None
    AccountingPackageID: str | None
    IsActive: bool
    CustomFields: CustomFields


class Client(NamedTuple):
    ID: str
    Name: str
    ShortName: str | None
    ClientNumber: str | None
    Notes: str | None
    AccountingPackageID: str | None
    ListDisplayText: str
    IsActive: bool
    BillingRate: float | None
    SecondaryBillingRateMode: str
    CreatedDate: str
    CustomFields: CustomFields


class Job(NamedTuple):
    ID: str
    Name: str
    JobNumber: str | None
    ClientID: str
    ProjectManagerID: str | None
    Notes: str | None
    AccountingPackageID: str | None
    ListDisplayText: str
    StartDate: str | None
    EndDate: str | None
    IsActive: bool
    IsBillable: bool
    TimeRequiresApproval: bool
    UseCompanyBillingRate: bool
    BillingRate: float | None
    SecondaryBillingRateMode: str
    CustomFields: CustomFields


class Task(NamedTuple):
    ID: str
    Name: str
    TaskCode: str | None
    Notes: str | None
    AccountingPackageID: str | None
    ListDisplayText: str
    IsActive: bool
    IsBillable: bool
    UseCompanyBillingRate: bool
    BillingRate: float | None
    CustomFields: CustomFields


class User(NamedTuple):
    ID: str
    Name: str
    Email: str
    IsActive: bool
    StartDate: str | None
    EndDate: str | None
    EmployeeNumber: str | None
    Notes: str | None
    PayrollType: str | None
    Role: str | None
    AccountingPackageID: str | None
    DivisionID: str | None
    EmploymentTypeID: str | None
    DefaultTaskID: str | None
    TimesheetApproverID: str | None
    ExpenseApproverID: str | None
    TimeOffApproverID: str | None
    SecurityLevel: str
    CostModel: str
    CostRate: float | None
    BillingRate: float | None
    UseCompanyBillingRate: bool
    EnableBreakTime: bool
    RequireComments: bool
    RequireStartEndTime: bool
    SubjectToTimesheetApproval: bool
    CustomFields: CustomFields


class Timesheet(NamedTuple):
    ID: str
    UserID: str
    StartDate: str
    EndDate: str
    Status: str
    HasBeenSubmitted: bool
    SubmittedByUserID: str | None
    ApprovedByUserID: str | None
    RejectedByUserID: str | None


class TimeEntry(NamedTuple):
    ID: str
    Date: str
    Hours: float
    BreakTime: float
    StartTime: str | None
    EndTime: str | None
    Comment: str | None
    JobID: str
    TaskID: str
    UserID: str
    BillingRate: float | None
    CostRate: float | None
    CustomFields: CustomFields


class CustomFieldDefinition(NamedTuple):
    ID: str
    Name: str
    DisplayName: str
    DataType: str
    EntityType: str
    IsRequired: bool
    PulldownValues: tuple[str, ...] | None


Record = Division | Client | Job | Task | User | Timesheet | TimeEntry | CustomFieldDefinition


class Ordering(NamedTuple):
    """The fixed order of one entity type's lists: a sort key, and its direction."""

    key: Callable[[Any], tuple[str, ...]]
    descending: bool


ORDERINGS: Mapping[type, Ordering] = {
    TimeEntry: Ordering(attrgetter("Date", "ID"), descending=True),
    Timesheet: Ordering(attrgetter("StartDate", "ID"), descending=True),
    Job: Ordering(attrgetter("ListDisplayText", "ID"), descending=False),
    Client: Ordering(attrgetter("ListDisplayText", "ID"), descending=False),
    Task: Ordering(attrgetter("Name", "ID"), descending=False),
    User: Ordering(attrgetter("Name", "ID"), descending=False),
    Division: Ordering(attrgetter("Name", "ID"), descending=False),
    CustomFieldDefinition: Ordering(attrgetter("EntityType", "Name", "ID"), descending=False),
}


def sort_records(records: list[Any]) -> None:
    """Put ``records`` (all of one type) in the API's fixed order, in place."""
    if records:
        ordering = ORDERINGS[type(records[0])]
        records.sort(key=ordering.key, reverse=ordering.descending)


def list_display_text(number: str | None, name: str) -> str:
    return f"{number} - {name}" if number else name


def week_start(day: datetime.date) -> datetime.date:
    """The Monday that starts the timesheet period holding ``day``."""
    return day - datetime.timedelta(days=day.weekday())


# base64 without its two punctuation characters: IDs stay letters and digits.
_LETTERS_AND_DIGITS = bytes.maketrans(b"+/", b"xQ")


def random_ids(rng: random.Random, count: int, length: int = ID_LENGTH) -> list[str]:
    """``count`` random strings of ``length`` letters and digits, drawn in one go (fast)."""
    byte_count = -(-length // 4) * 3
    chars_per_id = byte_count // 3 * 4
    encoded = base64.b64encode(rng.randbytes(byte_count * count)).translate(_LETTERS_AND_DIGITS)
    return [
        encoded[start : start + length].decode("ascii")
        for start in range(0, chars_per_id * count, chars_per_id)
    ]


@dataclass(eq=True)
class Company:
    """A whole ClickTime company: its records, job assignments and API tokens.

    ``tokens`` maps every user's API token to that user's ID; ``admin_token`` belongs to
    an active ADMIN and ``standard_token`` to an active STANDARD user with time entries.
    """

    today: datetime.date
    divisions: list[Division]
    clients: list[Client]
    jobs: list[Job]
    tasks: list[Task]
    users: list[User]
    timesheets: list[Timesheet]
    time_entries: list[TimeEntry]
    custom_field_definitions: list[CustomFieldDefinition]
    job_assignments: dict[str, tuple[str, ...]]
    tokens: dict[str, str]
    admin_token: str
    standard_token: str


def generate_company(
    entries: int = 20000,
    seed: int = 0,
    admin_token: str | None = None,
    standard_token: str | None = None,
    today: datetime.date | None = None,
    token_source: random.Random | None = None,
) -> Company:
    """
    A company of about 40 users, 120 jobs and ``entries`` time entries over
    two years.  Users' API tokens are drawn from ``token_source`` (by default
    the seeded generator, so that the same arguments give the same company);
    a server others can reach passes ``random.SystemRandom()``, so that its
    tokens cannot be worked out from the seed.  The records are the same
    either way: tokens are drawn last.
    """
    if entries < 0:
        raise ValueError("entries must not be negative")
    if admin_token is not None and admin_token == standard_token:
        raise ValueError("the admin and the standard token must differ")
    return _CompanyBuilder(random.Random(seed), today or DEFAULT_TODAY).build(
        entries, admin_token, standard_token, token_source
    )


_DIVISIONS = (
    ("Consulting", "Client-facing delivery teams."),
    ("Engineering", None),
    ("Design Studio", "Brand, UX & product design"),
    ("Operations", None),
    ("Research & Development", "Closed in 2024; kept for history."),
)
_CLIENT_STEMS = (
    "Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Wonka", "Tyrell", "Cyberdyne",
    "Soylent", "Hooli", "Vandelay", "Pied Piper", "Massive Dynamic", "Oscorp", "Aperture",
    "Blue Sun", "Nakatomi", "Virtucon", "Gringotts", "Monarch", "Dunder Mifflin", "Sterling",
)
_CLIENT_SUFFIXES = ("Industries", "Labs", "LLC", "Group", "Partners", "Holdings", "Inc.", "Co.")
# Names that exercise escaping in every layer that prints them.
_SPECIAL_CLIENT_NAMES = ("Müller & Söhne GmbH", '"Quoted" Holdings', "<b>Bold</b> Media Ltd.")
_INDUSTRIES = ("Technology", "Healthcare", "Finance", "Retail", "Public sector", "Manufacturing")
_PROJECTS = (
    "Website Redesign", "Data Migration", "ERP Rollout", "Mobile App", "Security Audit",
    "Cloud Move", "Brand Refresh", "Analytics Platform", "Support Retainer", "API Integration",
    "Customer Portal", "Process Review", "Training Program", "Infrastructure Upgrade",
)
_PHASES = ("", " Phase 2", " Phase 3", " (Pilot)", " 2025", " 2026")
_TASKS = (
    ("Analysis", "ANL", True), ("Architecture", "ARC", True), ("Design", "DES", True),
    ("Development", "DEV", True), ("Code Review", "REV", True), ("Testing", "TST", True),
    ("Deployment", "DEP", True), ("Documentation", "DOC", True), ("Project Management", "PM", True),
    ("Client Meeting", "CMT", True), ("Workshop", "WSH", True), ("Support", "SUP", True),
    ("Bug Fixing", "BUG", True), ("Research", "RES", True), ("Data Entry", "DAT", True),
    ("Travel", "TRV", True), ("Estimation", "EST", True), ("Onboarding", "ONB", True),
    ("Reporting", "RPT", True), ("Internal Meeting", "INT", False), ("Training", "TRN", False),
    ("Administration", "ADM", False), ("Vacation", "VAC", False), ("Sick Leave", "SCK", False),
    ("Holiday", "HOL", False),
)
_INACTIVE_TASKS = frozenset({"Data Entry", "Estimation"})
_FIRST_NAMES = (
    "Ann", "Ben", "Carla", "David", "Elena", "Frank", "Grace", "Hugo", "Iris", "Jamal",
    "Kate", "Liam", "Mia", "Noah", "Olga", "Pablo", "Quinn", "Rosa", "Sam", "Tara",
    "Umar", "Vera", "Will", "Xena", "Yusuf", "Zara",
)
_LAST_NAMES = (
    "Adams", "Baker", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Hughes", "Ito", "Jensen",
    "Khan", "Lopez", "Meyer", "Nguyen", "Okafor", "Patel", "Rossi", "Smith", "Tanaka", "Weber",
)
_SPECIAL_USERS = (
    ("Zoë O'Brien", "zoe.obrien@example.com"),
    ("José Núñez-García", "jose.nunez@example.com"),
    ("王芳", "wang.fang@example.com"),
)
_ROLES = ("Consultant", "Engineer", "Designer", "Analyst", "Project Manager", "Coordinator")
_EMPLOYMENT_TYPES = 3  # full time, part time, contractor: opaque IDs, no endpoint of their own
_USER_COUNT = 40
_ADMIN_COUNT = 2
_MANAGER_COUNT = 6
_JOINED_RECENTLY = range(30, 34)  # positions of users who started within the two years
_LEFT_RECENTLY = range(34, 37)  # positions of users who left within the two years
_COMMENTS = (
    "Worked on requirements", "Status call with the client", "Fixed layout issues",
    "Reviewed pull requests", "Prepared the sprint demo", "Migrated customer records",
    "Wrote test cases", "Deployment to staging", "Weekly planning", "Answered support tickets",
    "Updated documentation", "Performance tuning", "Workshop preparation", "Travel to client site",
    "Estimated change requests", "Refactored the import job",
)
_SPECIAL_COMMENTS = (
    'He said "ship it" & we did',
    "<script>alert('x')</script>",
    "Überstunden für Kunde Müller",
    "日本語のコメント",
    "Deploy 🚀 done",
    "Path C:\\temp\\report.csv",
    "Line one\nLine two\ttabbed",
    "50% done; it's 'fine'",
)
_WORK_LOCATIONS = ("Office", "Remote", "Client site")
# Quarter hours 1..40 (0.25..10 hours), short bookings far more common than long ones.
_QUARTER_HOURS_POOL = tuple(
    q for q in range(1, 41) for _ in range(6 if q <= 16 else 2 if q <= 32 else 1)
)
# How the weeks before last week ended up, in proportion.
_PAST_WEEK_STATUSES = ("Approved",) * 84 + ("Locked",) * 8 + ("Waiting", "Rejected", "JobHold", "TORAHold") * 2
_QUARTER_TIMES = tuple(f"{q // 4:02d}:{q % 4 * 15:02d}" for q in range(96))


class _CompanyBuilder:
    """Draws a company from one random generator, entity type by entity type."""

    def __init__(self, rng: random.Random, today: datetime.date) -> None:
        self.rng = rng
        self.today = today
        self.first_day = today - datetime.timedelta(days=730)

    def build(
        self, entries: int, admin_token: str | None, standard_token: str | None, token_source: random.Random | None
    ) -> Company:
        definitions = self._custom_field_definitions()
        divisions = self._divisions()
        employment_types = random_ids(self.rng, _EMPLOYMENT_TYPES)
        tasks = self._tasks()
        users = self._users(divisions, employment_types, tasks)
        clients = self._clients()
        jobs = self._jobs(clients, users)
        assignments = self._assignments(users, jobs)
        timesheets = self._timesheets(users)
        time_entries = self._time_entries(entries, users, jobs, tasks, assignments)
        tokens = dict(zip(random_ids(token_source or self.rng, len(users), TOKEN_LENGTH), (u.ID for u in users)))
        admin_token, standard_token = self._named_tokens(tokens, users, admin_token, standard_token)
        company = Company(
            today=self.today,
            divisions=divisions,
            clients=clients,
            jobs=jobs,
            tasks=tasks,
            users=users,
            timesheets=timesheets,
            time_entries=time_entries,
            custom_field_definitions=definitions,
            job_assignments=assignments,
            tokens=tokens,
            admin_token=admin_token,
            standard_token=standard_token,
        )
        for records in (divisions, clients, jobs, tasks, users, timesheets, time_entries, definitions):
            sort_records(records)
        return company

    # -- helpers -----------------------------------------------------------------------

    def _pick(self, values: Sequence[Any]) -> Any:
        return values[int(self.rng.random() * len(values))]

    def _chance(self, probability: float) -> bool:
        return self.rng.random() < probability

    def _rate(self, low: int, high: int, step: int) -> float:
        return float(self.rng.randrange(low, high + 1, step))

    def _day_between(self, first: datetime.date, last: datetime.date) -> datetime.date:
        return first + datetime.timedelta(days=self.rng.randrange((last - first).days + 1))

    def _accounting_id(self) -> str | None:
        return f"QB-{self.rng.randrange(1000, 9999)}" if self._chance(0.4) else None

    # -- entity types ------------------------------------------------------------------

    def _custom_field_definitions(self) -> list[CustomFieldDefinition]:
        specs = (
            ("TicketReference", "Ticket reference", "Text", "TimeEntry", False, None),
            ("WorkLocation", "Work location", "Pulldown", "TimeEntry", False, _WORK_LOCATIONS),
            ("Overtime", "Overtime", "Checkbox", "TimeEntry", False, None),
            ("BudgetHours", "Budget hours", "Number", "Job", False, None),
            ("ContractEndDate", "Contract end date", "Date", "Job", False, None),
            ("CostCenter", "Cost center", "Text", "User", False, None),
            ("Industry", "Industry", "Pulldown", "Client", True, _INDUSTRIES),
        )
        return [
            CustomFieldDefinition(id_, *spec)
            for id_, spec in zip(random_ids(self.rng, len(specs)), specs)
        ]

    def _divisions(self) -> list[Division]:
        return [
            Division(id_, name, notes, self._accounting_id(), name != "Research & Development", {})
            for id_, (name, notes) in zip(random_ids(self.rng, len(_DIVISIONS)), _DIVISIONS)
        ]

    def _tasks(self) -> list[Task]:
        tasks = []
        for id_, (name, code, billable) in zip(random_ids(self.rng, len(_TASKS)), _TASKS):
            company_rate = self._chance(0.6)
            tasks.append(
                Task(
                    ID=id_,
                    Name=name,
                    TaskCode=code,
                    Notes="Not billable to clients." if not billable else None,
                    AccountingPackageID=self._accounting_id(),
                    ListDisplayText=list_display_text(code, name),
                    IsActive=name not in _INACTIVE_TASKS,
                    IsBillable=billable,
                    UseCompanyBillingRate=company_rate,
                    BillingRate=None if company_rate else self._rate(80, 200, 10),
                    CustomFields={},
                )
            )
        return tasks

    def _user_names(self) -> list[tuple[str, str]]:
        pairs = [(first, last) for first in _FIRST_NAMES for last in _LAST_NAMES]
        chosen = self.rng.sample(pairs, _USER_COUNT - len(_SPECIAL_USERS))
        names = [(f"{f} {l}", f"{f.lower()}.{l.lower()}@example.com") for f, l in chosen]
        # Special names among the STANDARD users, after the one that gets the standard token.
        for position, special in zip((12, 19, 26), _SPECIAL_USERS):
            names.insert(position, special)
        return names

    def _users(
        self, divisions: list[Division], employment_types: list[str], tasks: list[Task]
    ) -> list[User]:
        ids = random_ids(self.rng, _USER_COUNT)
        admins = ids[:_ADMIN_COUNT]
        managers = ids[_ADMIN_COUNT : _ADMIN_COUNT + _MANAGER_COUNT]
        active_divisions = [d.ID for d in divisions if d.IsActive]
        billable_tasks = [t.ID for t in tasks if t.IsBillable and t.IsActive]
        users = []
        for position, (id_, (name, email)) in enumerate(zip(ids, self._user_names())):
            if position < _ADMIN_COUNT:
                level, approver = ADMIN, admins[1 - position]
            elif position < _ADMIN_COUNT + _MANAGER_COUNT:
                level, approver = MANAGER, self._pick(admins)
            else:
                level, approver = STANDARD, self._pick(managers)
            start = self._day_between(datetime.date(2015, 1, 5), self.first_day)
            end = None
            if position in _JOINED_RECENTLY:
                start = self._day_between(self.first_day, self.first_day + datetime.timedelta(days=540))
            elif position in _LEFT_RECENTLY:
                end = self._day_between(self.first_day + datetime.timedelta(days=90), self.today)
            salaried = self._chance(0.7)
            company_rate = self._chance(0.3)
            users.append(
                User(
                    ID=id_,
                    Name=name,
                    Email=email,
                    IsActive=end is None,
                    StartDate=start.isoformat(),
                    EndDate=end.isoformat() if end else None,
                    EmployeeNumber=f"E{position + 1:04d}",
                    Notes="Part of the 2025 reorganisation" if self._chance(0.1) else None,
                    PayrollType="Salaried" if salaried else "Hourly",
                    Role=self._pick(_ROLES),
                    AccountingPackageID=self._accounting_id(),
                    DivisionID=self._pick(active_divisions),
                    EmploymentTypeID=employment_types[0] if self._chance(0.7) else self._pick(employment_types),
                    DefaultTaskID=self._pick(billable_tasks),
                    TimesheetApproverID=approver,
                    ExpenseApproverID=approver,
                    TimeOffApproverID=admins[0] if position else admins[1],
                    SecurityLevel=level,
                    CostModel="Salary" if salaried else "Hourly",
                    CostRate=self._rate(35, 95, 5),
                    BillingRate=None if company_rate else self._rate(90, 220, 10),
                    UseCompanyBillingRate=company_rate,
                    EnableBreakTime=self._chance(0.5),
                    RequireComments=self._chance(0.3),
                    RequireStartEndTime=self._chance(0.2),
                    SubjectToTimesheetApproval=level != ADMIN,
                    CustomFields={"CostCenter": f"CC-{self.rng.randrange(100, 110)}" if self._chance(0.8) else None},
                )
            )
        return users

    def _client_names(self) -> list[str]:
        pairs = [f"{stem} {suffix}" for stem in _CLIENT_STEMS for suffix in _CLIENT_SUFFIXES]
        return self.rng.sample(pairs, 30 - len(_SPECIAL_CLIENT_NAMES)) + list(_SPECIAL_CLIENT_NAMES)

    def _clients(self) -> list[Client]:
        clients = []
        names = self._client_names()
        for position, (id_, name) in enumerate(zip(random_ids(self.rng, len(names)), names)):
            number = f"C-{position + 1:03d}"
            created = datetime.datetime.combine(
                self._day_between(datetime.date(2014, 1, 1), self.first_day),
                datetime.time(self.rng.randrange(8, 19), self.rng.randrange(60), self.rng.randrange(60)),
                datetime.timezone(datetime.timedelta(hours=self._pick((-5, -4)))),
            )
            clients.append(
                Client(
                    ID=id_,
                    Name=name,
                    ShortName="".join(c for c in name if c.isalnum())[:6].upper(),
                    ClientNumber=number,
                    Notes="Invoices go to the finance office." if self._chance(0.2) else None,
                    AccountingPackageID=self._accounting_id(),
                    ListDisplayText=list_display_text(number, name),
                    IsActive=position % 10 != 7,  # a few former clients, whatever the seed
                    BillingRate=self._rate(100, 250, 5),
                    SecondaryBillingRateMode=self._pick(SECONDARY_BILLING_RATE_MODES),
                    CreatedDate=created.isoformat(),
                    CustomFields={"Industry": self._pick(_INDUSTRIES)},
                )
            )
        return clients

    def _jobs(self, clients: list[Client], users: list[User]) -> list[Job]:
        project_managers = [u.ID for u in users if u.SecurityLevel != STANDARD]
        jobs = []
        for position, id_ in enumerate(random_ids(self.rng, 120)):
            name = self._pick(_PROJECTS) + self._pick(_PHASES)
            number = f"J-{position + 1:04d}"
            start = self._day_between(self.first_day - datetime.timedelta(days=365), self.today)
            active = self._chance(0.85)
            end = None if active else self._day_between(start, self.today)
            company_rate = self._chance(0.4)
            jobs.append(
                Job(
                    ID=id_,
                    Name=name,
                    JobNumber=number,
                    ClientID=self._pick(clients).ID,
                    ProjectManagerID=self._pick(project_managers),
                    Notes="Fixed price; track hours anyway." if self._chance(0.15) else None,
                    AccountingPackageID=self._accounting_id(),
                    ListDisplayText=list_display_text(number, name),
                    StartDate=start.isoformat(),
                    EndDate=end.isoformat() if end else None,
                    IsActive=active,
                    IsBillable=self._chance(0.85),
                    TimeRequiresApproval=self._chance(0.3),
                    UseCompanyBillingRate=company_rate,
                    BillingRate=None if company_rate else self._rate(90, 240, 10),
                    SecondaryBillingRateMode=self._pick(SECONDARY_BILLING_RATE_MODES),
                    CustomFields={
                        "BudgetHours": float(self.rng.randrange(40, 2000, 10)) if self._chance(0.7) else None,
                        "ContractEndDate": (start + datetime.timedelta(days=self.rng.randrange(90, 720))).isoformat()
                        if self._chance(0.5)
                        else None,
                    },
                )
            )
        return jobs

    def _assignments(self, users: list[User], jobs: list[Job]) -> dict[str, tuple[str, ...]]:
        return {
            user.ID: tuple(job.ID for job in self.rng.sample(jobs, self.rng.randrange(3, 11)))
            for user in users
        }

    def _employment(self, user: User) -> tuple[datetime.date, datetime.date]:
        """The days within the two years on which ``user`` worked here."""
        start, end = self.first_day, self.today
        if user.StartDate:
            start = max(start, datetime.date.fromisoformat(user.StartDate))
        if user.EndDate:
            end = min(end, datetime.date.fromisoformat(user.EndDate))
        return start, end

    def _timesheets(self, users: list[User]) -> list[Timesheet]:
        week = datetime.timedelta(days=7)
        current_week = week_start(self.today)
        periods = []
        for user in users:
            first, last = self._employment(user)
            monday = week_start(first)
            while monday <= last:
                periods.append((user, monday))
                monday += week
        ids = random_ids(self.rng, len(periods))
        return [
            self._timesheet(id_, user, monday, (current_week - monday).days // 7)
            for id_, (user, monday) in zip(ids, periods)
        ]

    def _timesheet(self, id_: str, user: User, monday: datetime.date, weeks_ago: int) -> Timesheet:
        if weeks_ago == 0:
            status = "Open"
        elif weeks_ago == 1:
            status = self._pick(("Waiting", "Waiting", "Open", "Rejected"))
        else:
            status = self._pick(_PAST_WEEK_STATUSES)
        submitted = status != "Open"
        approver = user.TimesheetApproverID
        return Timesheet(
            ID=id_,
            UserID=user.ID,
            StartDate=monday.isoformat(),
            EndDate=(monday + datetime.timedelta(days=6)).isoformat(),
            Status=status,
            HasBeenSubmitted=submitted,
            SubmittedByUserID=user.ID if submitted else None,
            ApprovedByUserID=approver if status in ("Approved", "Locked") else None,
            RejectedByUserID=approver if status == "Rejected" else None,
        )

    def _entry_custom_fields(self) -> list[CustomFields]:
        """A pool of custom field value sets that entries share (one dict per entry would cost ~50 MB)."""
        return [
            {
                "TicketReference": f"TCK-{self.rng.randrange(1000, 9999)}" if self._chance(0.4) else None,
                "WorkLocation": self._pick(_WORK_LOCATIONS) if self._chance(0.8) else None,
                "Overtime": self._chance(0.1),
            }
            for _ in range(64)
        ]

    def _time_entries(
        self,
        count: int,
        users: list[User],
        jobs: list[Job],
        tasks: list[Task],
        assignments: Mapping[str, tuple[str, ...]],
    ) -> list[TimeEntry]:
        jobs_by_id = {job.ID: job for job in jobs}
        hours = tuple(q / 4 for q in range(97))  # one float object per quarter-hour value
        weekdays: list[tuple[str, tuple[tuple[str, float], ...], float | None, str]] = []
        weekends: list[tuple[str, tuple[tuple[str, float], ...], float | None, str]] = []
        for user in users:
            user_jobs = tuple(
                (job_id, jobs_by_id[job_id].BillingRate or COMPANY_BILLING_RATE)
                for job_id in assignments[user.ID]
            )
            day, last = self._employment(user)
            while day <= last:
                slot = (user.ID, user_jobs, user.CostRate, day.isoformat())
                (weekends if day.weekday() >= 5 else weekdays).append(slot)
                day += datetime.timedelta(days=1)
        custom_fields = self._entry_custom_fields()
        task_ids = [task.ID for task in tasks if task.IsActive]
        rnd = self.rng.random
        entries = []
        for entry_id in random_ids(self.rng, count):
            slots = weekends if rnd() < 0.03 else weekdays
            user_id, user_jobs, cost_rate, date = slots[int(rnd() * len(slots))]
            job_id, billing_rate = user_jobs[int(rnd() * len(user_jobs))]
            quarters = _QUARTER_HOURS_POOL[int(rnd() * len(_QUARTER_HOURS_POOL))]
            start = end = None
            break_quarters = 0
            if rnd() < 0.3:
                start_quarter = 28 + int(rnd() * 28)
                break_quarters = 2 if rnd() < 0.2 else 0
                end_quarter = start_quarter + quarters + break_quarters
                if end_quarter < 96:
                    start, end = _QUARTER_TIMES[start_quarter], _QUARTER_TIMES[end_quarter]
                else:
                    break_quarters = 0
            roll = rnd()
            if roll < 0.15:
                comment = None
            elif roll < 0.16:
                comment = _SPECIAL_COMMENTS[int(rnd() * len(_SPECIAL_COMMENTS))]
            else:
                comment = _COMMENTS[int(rnd() * len(_COMMENTS))]
            entries.append(
                TimeEntry(
                    entry_id,
                    date,
                    hours[quarters],
                    hours[break_quarters],
                    start,
                    end,
                    comment,
                    job_id,
                    task_ids[int(rnd() * len(task_ids))],
                    user_id,
                    billing_rate,
                    cost_rate,
                    custom_fields[int(rnd() * len(custom_fields))],
                )
            )
        return entries

    def _named_tokens(
        self,
        tokens: dict[str, str],
        users: list[User],
        admin_token: str | None,
        standard_token: str | None,
    ) -> tuple[str, str]:
        """Give the first ADMIN and the first STANDARD user (both long-standing) the named tokens."""
        token_of = {user_id: token for token, user_id in tokens.items()}
        chosen = []
        for level, wanted in ((ADMIN, admin_token), (STANDARD, standard_token)):
            user = next(u for u in users if u.SecurityLevel == level)
            if wanted is not None:
                if wanted in tokens:
                    raise ValueError("a named token collides with a generated one")
                tokens[wanted] = tokens.pop(token_of[user.ID])
            else:
                wanted = token_of[user.ID]
            chosen.append(wanted)
        return chosen[0], chosen[1]
