"""
The ClickTime provider: OData entity sets over ClickTime's REST API v2.

Each request opens a session with the caller's ClickTime API token.  What a
caller may see decides the model it gets and the endpoints used: a STANDARD
user reads time entries and timesheets through ``/Me/...`` and never sees
billing or cost rates.  That knowledge (the caller's ``/Me`` record and the
company's custom field definitions) is cached per token for a short time,
keyed by a digest of the token, so that one caller's cache never answers
another.  So are copies of the small reference sets (Users, Jobs, Clients,
Tasks, Divisions), which answer filtered reads of those sets and turn
conditions through navigation properties into foreign-key filters ClickTime
can apply; `references` says what that means for freshness.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, AsyncGenerator, AsyncIterator, Mapping, Optional
from urllib.parse import quote

from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from odata_klein.bound import (
    BoundBinary,
    BoundExpr,
    BoundLiteral,
    BoundProperty,
    conjunction,
)
from odata_klein.errors import BadRequest, Forbidden, NotFound, NotImplementedYet, Unauthorized
from odata_klein.evaluate import compile_predicate
from odata_klein.interfaces import (
    Credentials,
    IProvider,
    IProviderSession,
    IQueryResult,
    NavigationSource,
    ProviderQuery,
    RowBatch,
    Trace,
)
from odata_klein.model import Model
from odata_klein.records import RecordReader
from odata_klein.slicing import kept_giving_turns

from .client import ClickTimeClient
from .paging import Page
from .pushdown import Pushdown, plan_pushdown, required_values
from .references import (
    REFERENCE_SETS,
    CachedResult,
    ExpiringCache,
    ReferenceCache,
    ReferenceRows,
    resolve_navigation,
    token_digest,
    uses_navigation,
)
from .rows import record_reader
from .schema import (
    NAMESPACE,
    SET_INFO,
    CustomFieldDefinition,
    EntitySetInfo,
    build_model,
    entity_type_for_definition,
)

BASIC_USER = "clicktime"
_MAX_CURSOR = 10**9


@dataclass(frozen=True)
class Caller:
    """What the provider knows about one token's user."""

    user_id: str
    security_level: str
    model: Model
    readers: Mapping[str, RecordReader]

    @property
    def sees_own_records_only(self) -> bool:
        return self.security_level.upper() == "STANDARD"


def token_from(credentials: Optional[Credentials]) -> str:
    if credentials is None:
        raise Unauthorized(
            f"sign in with user name '{BASIC_USER}' and your ClickTime API token as the password"
        )
    if credentials.scheme == "basic" and (credentials.user or "").lower() != BASIC_USER:
        raise Unauthorized(f"the user name must be '{BASIC_USER}'; the password is your ClickTime API token")
    if not credentials.secret.strip():
        raise Unauthorized("the ClickTime API token is empty")
    return credentials.secret.strip()


def _definitions(records: list[Mapping[str, Any]]) -> list[CustomFieldDefinition]:
    found = []
    for record in records:
        entity_type = entity_type_for_definition(str(record.get("EntityType") or ""))
        name = record.get("Name")
        if entity_type is None or not isinstance(name, str) or not name:
            continue
        found.append(
            CustomFieldDefinition(
                entity_type=entity_type,
                name=name,
                display_name=str(record.get("DisplayName") or name),
                data_type=str(record.get("DataType") or "text"),
            )
        )
    return found


@implementer(IProvider)
class ClickTimeProvider:
    realm = "ClickTime OData"

    def __init__(
        self,
        clock: IReactorTime,
        client: ClickTimeClient,
        *,
        caller_ttl: float = 300.0,
        caller_capacity: int = 1000,
        reference_ttl: float = 60.0,
        reference_capacity: int = 500,
        reference_max_rows: int = 10_000,
        pushdown: bool = True,
    ) -> None:
        """
        ``reference_ttl``: how long a token's copy of a reference set answers
        (0: never); ``reference_capacity``: how many copies (of one set for one
        token) are kept at most; ``reference_max_rows``: sets larger than this
        are not copied.  ``pushdown=False`` makes the engine evaluate every
        filter itself, without copies (tests compare both).
        """
        self._client = client
        self._clock = clock
        self._callers: ExpiringCache[bytes, Caller] = ExpiringCache(clock, caller_ttl, caller_capacity)
        self._references = ReferenceCache(
            clock, ttl=reference_ttl, capacity=reference_capacity, max_rows=reference_max_rows
        )
        self._pushdown = pushdown

    def open_session(self, credentials: Optional[Credentials], trace: Trace) -> "ClickTimeSession":
        return ClickTimeSession(
            self._client,
            self._callers,
            self._references,
            token_from(credentials),
            trace,
            self._clock,
            pushdown=self._pushdown,
        )

    def close(self) -> Deferred[None]:
        return self._client.close()


@implementer(IProviderSession)
class ClickTimeSession:
    def __init__(
        self,
        client: ClickTimeClient,
        callers: ExpiringCache[bytes, Caller],
        references: ReferenceCache,
        token: str,
        trace: Trace,
        clock: IReactorTime,
        *,
        pushdown: bool = True,
    ) -> None:
        """``clock``: the reactor, given turns while a filter is checked on a copied set."""
        self._pushdown = pushdown
        self._clock = clock
        self._client = client
        self._callers = callers
        self._references = references
        self._token = token
        self._trace = trace

    def __repr__(self) -> str:
        return "<ClickTimeSession>"

    async def _load_caller(self) -> Caller:
        # Both at once; when one fails the other's failure is consumed here too.
        both: list[Deferred[Any]] = [
            ensureDeferred(self._client.get_one(self._token, "/Me", self._trace)),
            ensureDeferred(self._read_definitions()),
        ]
        (me_ok, me), (records_ok, records) = await DeferredList(both, consumeErrors=True)
        for ok, outcome in ((me_ok, me), (records_ok, records)):
            if not ok:
                outcome.raiseException()
        level = str(me.get("SecurityLevel") or "STANDARD")
        definitions = _definitions(records)
        model = build_model(definitions, sees_rates=level.upper() != "STANDARD")
        readers = {}
        for entity_set in model.entity_sets:
            entity_type = model.type_of(entity_set)
            readers[entity_set.name] = record_reader(
                entity_type, [d for d in definitions if d.entity_type == entity_type.name]
            )
        return Caller(str(me.get("ID") or ""), level, model, readers)

    async def _read_definitions(self) -> list[Mapping[str, Any]]:
        records: list[Mapping[str, Any]] = []
        pages = self._client.pages(self._token, "/CustomFieldDefinitions", page_limit=1000, trace=self._trace)
        try:
            async for page in pages:
                records.extend(page.rows)
        except Forbidden:
            # Users who may not read definitions still get CustomFields as JSON.
            return []
        finally:
            await pages.aclose()
        return records

    async def caller(self) -> Caller:
        return await self._callers.get(token_digest(self._token), self._load_caller)

    async def model(self) -> Model:
        return (await self.caller()).model

    async def query(self, query: ProviderQuery) -> "ClickTimeResult | CachedResult":
        caller = await self.caller()
        info = SET_INFO[query.entity_set]
        resume = _validated_cursor(query.resume)
        filter_ = query.filter
        if self._pushdown and filter_ is not None:
            filter_ = await self._through_references(caller, info.set_name, filter_)
        if query.parent is not None:
            return self._navigation(caller, query.parent, filter_, resume)
        if self._pushdown and filter_ is not None and info.set_name in REFERENCE_SETS:
            cached = await self._from_copy(caller, info, filter_, resume, query.skip, query.limit)
            if cached is not None:
                return cached
        own = info.own_records_only and caller.sees_own_records_only
        single_id = _timesheet_key(info, filter_) if not own and self._pushdown else None
        if single_id is not None:
            path = f"/Timesheets/{quote(single_id, safe='')}"
            return ClickTimeResult(self, caller, info, path, Pushdown(residual=filter_), resume, None, single=True)
        plan = self._plan(caller, info, filter_, own) if self._pushdown else Pushdown(residual=filter_)
        path = ("/Me/" if own else "/") + info.endpoint
        if plan.residual is not None:
            return ClickTimeResult(self, caller, info, path, plan, resume, None)
        # Every row ClickTime sends matches: rows to skip are an offset further on.
        skip = min(query.skip, _MAX_CURSOR - resume)
        max_rows = None if query.limit is None else query.limit - skip
        return ClickTimeResult(self, caller, info, path, plan, resume + skip, max_rows, skipped=skip)

    def _plan(self, caller: Caller, info: EntitySetInfo, filter_: Optional[BoundExpr], own: bool) -> Pushdown:
        # Under /Me every row is the caller's.
        known = {"UserID": caller.user_id} if own and caller.user_id else {}
        plan = plan_pushdown(info.set_name, filter_, own_scope=own, known=known)
        self._trace.pushed_down.extend(plan.applied)
        return plan

    def _reference_copy(self, caller: Caller, entity_set: str) -> Deferred[ReferenceRows]:
        info = SET_INFO[entity_set]

        def list_pages(max_rows: int) -> AsyncIterator[Page]:
            return self._client.pages(
                self._token, "/" + info.endpoint, page_limit=info.page_limit, max_rows=max_rows, trace=self._trace
            )

        return self._references.get(self._token, entity_set, caller, list_pages, caller.readers[entity_set].convert)

    async def _through_references(self, caller: Caller, entity_set: str, filter_: BoundExpr) -> Optional[BoundExpr]:
        """``filter_`` with conditions through navigation properties turned into foreign-key conditions."""

        async def rows_of(name: str) -> Optional[Any]:
            try:
                return (await self._reference_copy(caller, name)).rows
            except Forbidden:
                # This caller may not list the set: the condition stays as it is.
                return None

        resolved, notes = await resolve_navigation(caller.model, entity_set, filter_, rows_of, self._clock)
        self._trace.pushed_down.extend(notes)
        return resolved

    async def _from_copy(
        self, caller: Caller, info: EntitySetInfo, filter_: BoundExpr, resume: int, skip: int, limit: Optional[int]
    ) -> Optional[CachedResult]:
        """The answer from the caller's copy of a reference set, or None when ClickTime must answer."""
        if uses_navigation(caller.model, filter_):
            return None
        try:
            copy = await self._reference_copy(caller, info.set_name)
        except Forbidden:
            return None
        if copy.rows is None:
            return None
        wanted = required_values(filter_, "ID")
        if wanted is not None and not all(key in copy.by_id for key in wanted):
            # Perhaps created since the copy was read: ClickTime knows.
            return None
        # In slices: the set may hold thousands of rows, and the filter be a megabyte long.
        rows = await kept_giving_turns(copy.rows, compile_predicate(filter_), self._clock)
        self._trace.pushed_down.append(
            f"answered from the cached {info.set_name}, read {self._references.age(copy):.0f} s ago"
        )
        return CachedResult(rows, resume, skip, limit)

    def _navigation(
        self, caller: Caller, parent: NavigationSource, filter_: Optional[BoundExpr], resume: int
    ) -> "ClickTimeResult":
        if (parent.entity_set, parent.navigation_property) != ("Timesheets", "TimeEntries"):
            raise NotImplementedYet(f"{parent.entity_set}/{parent.navigation_property} is not supported")
        info = SET_INFO["TimeEntries"]
        if not caller.sees_own_records_only:
            path = f"/Timesheets/{quote(str(parent.key['ID']), safe='')}/TimeEntries"
            return ClickTimeResult(self, caller, info, path, Pushdown(residual=filter_), resume, None, unpaged=True)
        # /Me has no timesheet entries endpoint: a timesheet's entries are its
        # user's entries within its period, which /Me/TimeEntries can filter.
        period = _period_filter(parent.row.get("StartDate"), parent.row.get("EndDate"))
        combined = conjunction([f for f in (filter_, period) if f is not None])
        return ClickTimeResult(self, caller, info, "/Me/TimeEntries", self._plan(caller, info, combined, True), resume, None)

    # Used by ClickTimeResult; kept here so the token stays in one object.
    def pages(
        self, path: str, params: list[tuple[str, str]], offset: int, page_limit: int, max_rows: Optional[int]
    ) -> AsyncGenerator[Page, None]:
        return self._client.pages(
            self._token, path, params, offset=offset, page_limit=page_limit, max_rows=max_rows, trace=self._trace
        )

    async def get(self, path: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        return await self._client.get(self._token, path, params, self._trace)


def _validated_cursor(cursor: Any) -> int:
    if cursor is None:
        return 0
    if type(cursor) is not int or not 0 <= cursor <= _MAX_CURSOR:
        raise BadRequest("$skiptoken does not belong to this entity set", target="$skiptoken")
    return cursor


def _timesheet_key(info: EntitySetInfo, filter_: Optional[BoundExpr]) -> Optional[str]:
    """ClickTime lists timesheets without an ID filter: a key lookup becomes a single GET."""
    if info.set_name != "Timesheets" or not isinstance(filter_, BoundBinary) or filter_.op != "eq":
        return None
    left, right = filter_.left, filter_.right
    if isinstance(left, BoundProperty) and left.path == ("ID",) and isinstance(right, BoundLiteral):
        return right.value if isinstance(right.value, str) else None
    return None


def _period_filter(start: Any, end: Any) -> Optional[BoundExpr]:
    if not isinstance(start, datetime.date) or not isinstance(end, datetime.date):
        return None
    date = BoundProperty(("Date",), "Edm.Date")
    return BoundBinary(
        "and",
        BoundBinary("ge", date, BoundLiteral(start, "Edm.Date"), "Edm.Boolean"),
        BoundBinary("le", date, BoundLiteral(end, "Edm.Date"), "Edm.Boolean"),
        "Edm.Boolean",
    )


@implementer(IQueryResult)
class ClickTimeResult:
    def __init__(
        self,
        session: ClickTimeSession,
        caller: Caller,
        info: EntitySetInfo,
        path: str,
        plan: Pushdown,
        resume: int,
        max_rows: Optional[int],
        *,
        single: bool = False,
        unpaged: bool = False,
        skipped: int = 0,
    ) -> None:
        self._session = session
        self.skipped = skipped
        self._reader = caller.readers[info.set_name]
        self._info = info
        self._path = path
        self._plan = plan
        self._resume = resume
        self._max_rows = max_rows
        self._single = single
        self._unpaged = unpaged
        self.residual = plan.residual

    async def batches(self) -> AsyncIterator[RowBatch]:
        if self._plan.matches_nothing:
            return
        if self._single or self._unpaged:
            records = (await self._whole())[self._resume:]
            yield RowBatch(records, range(self._resume + 1, self._resume + 1 + len(records)), self._reader, last=True)
            return
        pages = self._session.pages(
            self._path, self._plan.params, self._resume, self._info.page_limit, self._max_rows
        )
        try:
            async for page in pages:
                yield RowBatch(
                    page.rows, range(page.offset + 1, page.offset + 1 + len(page.rows)), self._reader, last=page.last
                )
        finally:
            await pages.aclose()

    async def _whole(self) -> list[Any]:
        try:
            data = (await self._session.get(self._path, []))["data"]
        except NotFound:
            return []
        if self._single:
            return [data] if isinstance(data, dict) else []
        return data if isinstance(data, list) else []

    async def count(self) -> Optional[int]:
        if self._plan.matches_nothing:
            return 0
        if self._single or self._unpaged:
            return None
        envelope = await self._session.get(self._path, [*self._plan.params, ("limit", "1"), ("offset", "0")])
        page = envelope.get("page")
        count = page.get("count") if isinstance(page, Mapping) else None
        return count if type(count) is int else None


__all__ = ["ClickTimeProvider", "ClickTimeSession", "Caller", "token_from", "BASIC_USER", "NAMESPACE"]
