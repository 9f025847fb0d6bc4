"""
Reference sets: each caller's copy of Users, Jobs, Clients, Tasks and
Divisions, kept for a short time.

These sets are small (tens to a few thousand rows) and are what time entries
point at, so the provider reads each of them whole, for one token, and keeps
that copy for ``reference_ttl`` seconds (60 by default).  The copy answers:

* filtered reads of the set itself (``Jobs?$filter=IsActive eq true``,
  ``Jobs('x')``, and the batches of ``ID in (...)`` lookups ``$expand``
  sends): the filter is evaluated over the cached rows, with no upstream
  request.  A lookup of IDs the copy does not hold goes to ClickTime, so a
  record created since the copy was read is still found by its ID;
* conditions through navigation properties (``TimeEntries?$filter=Job/Client/ID
  eq 'x'``, ``User/Division/Name eq 'Engineering'``): the condition is
  evaluated over the cached targets, giving the foreign keys it allows
  (``JobID in (...)``), which ClickTime can apply (`resolve_navigation`).

A plain read of a whole set (``Jobs`` with no filter, as Power BI loads a
table) always goes to ClickTime: it costs about as much as reading the copy
would, and a refresh must show what ClickTime holds now.

What a caller should expect: an answer computed from a copy reflects
ClickTime as it was when the copy was read, up to ``reference_ttl`` seconds
earlier.  A job renamed, a task made non-billable or a user moved to another
division within that time may still be seen the old way by filters; a record
deleted within it may still be found.  Time entries themselves are always
read fresh; only which jobs, tasks or users a condition names can lag.  A
copy is one token's: it holds exactly what ClickTime showed that token (a
STANDARD user's copy has no rates), and no other token's request ever reads
it.  Sets with more than ``reference_max_rows`` rows are not copied; their
filters go to ClickTime as usual.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generic,
    Hashable,
    Mapping,
    Optional,
    Sequence,
    TypeVar,
)

from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from odata_klein.bound import (
    BoundBinary,
    BoundCall,
    BoundExpr,
    BoundIn,
    BoundLambda,
    BoundLiteral,
    BoundProperty,
    BoundUnary,
    conjunction,
    conjuncts,
)
from odata_klein.evaluate import compile_predicate
from odata_klein.interfaces import IQueryResult, Row, RowBatch
from odata_klein.model import Model
from odata_klein.slicing import kept_giving_turns

from .paging import Page

# The entity sets a caller's copy is kept of.
REFERENCE_SETS = frozenset({"Users", "Jobs", "Clients", "Tasks", "Divisions"})

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


def token_digest(token: str) -> bytes:
    """What caches key a token by, so that they do not keep the token itself."""
    return hashlib.sha256(token.encode("utf-8")).digest()


@dataclass
class _Entry(Generic[_V]):
    expires: float
    settled: bool = False
    value: Any = None
    waiters: list[Deferred[_V]] = field(default_factory=list)


def _always(value: object) -> bool:
    return True


class ExpiringCache(Generic[_K, _V]):
    """
    Values loaded on demand and kept ``ttl`` seconds (counted from when the
    load started), at most ``capacity`` of them (the oldest go first).
    Concurrent requests for one key share one load; a failed load is
    forgotten, so the next request loads again.
    """

    def __init__(self, clock: IReactorTime, ttl: float, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._clock = clock
        self._ttl = ttl
        self._capacity = capacity
        self._entries: dict[_K, _Entry[_V]] = {}

    def get(
        self,
        key: _K,
        load: Callable[[], Coroutine[Any, Any, _V]],
        usable: Callable[[_V], bool] = _always,
    ) -> Deferred[_V]:
        """The value for ``key``, loaded unless a fresh one is kept that is ``usable``."""
        now = self._clock.seconds()
        entry = self._entries.get(key)
        if entry is None or entry.expires <= now or (entry.settled and not usable(entry.value)):
            self._entries.pop(key, None)
            self._evict(now)
            started: _Entry[_V] = _Entry(now + self._ttl)
            self._entries[key] = started
            ensureDeferred(load()).addCallbacks(
                lambda value: self._settle(key, started, value, None),
                lambda failure: self._settle(key, started, None, failure),
            )
            entry = started
        if entry.settled:
            return succeed(entry.value)
        waiter: Deferred[_V] = Deferred()
        entry.waiters.append(waiter)
        return waiter

    def _settle(self, key: _K, entry: _Entry[_V], value: Any, failure: Optional[Failure]) -> None:
        if failure is None:
            entry.settled, entry.value = True, value
        elif self._entries.get(key) is entry:
            # A failed load (rejected token, upstream down) must not stick.
            del self._entries[key]
        waiters, entry.waiters = entry.waiters, []
        for waiter in waiters:
            if failure is None:
                waiter.callback(value)
            else:
                waiter.errback(failure)

    def _evict(self, now: float) -> None:
        for key in [k for k, entry in self._entries.items() if entry.expires <= now]:
            del self._entries[key]
        while len(self._entries) >= self._capacity:
            del self._entries[next(iter(self._entries))]


class ReferenceRows:
    """
    One caller's copy of a reference set, in ClickTime's order.  ``rows`` is
    None when the set is too large to keep.  ``made_for`` is what the rows
    were converted for (the caller's model): a copy made for another is not used.
    """

    def __init__(self, made_for: object, rows: Optional[Sequence[Row]], loaded_at: float) -> None:
        self.made_for = made_for
        self.rows = rows
        self.loaded_at = loaded_at
        self.by_id: Mapping[Any, Row] = {row.get("ID"): row for row in rows or ()}


# A list endpoint's pages, at most the given number of rows in all.
ListPages = Callable[[int], AsyncIterator[Page]]


class ReferenceCache:
    """Per-token copies of reference sets (see the module docstring)."""

    def __init__(self, clock: IReactorTime, *, ttl: float, capacity: int, max_rows: int) -> None:
        self._clock = clock
        self._max_rows = max_rows
        self._copies: ExpiringCache[tuple[bytes, str], ReferenceRows] = ExpiringCache(clock, ttl, capacity)

    def get(
        self,
        token: str,
        entity_set: str,
        made_for: object,
        list_pages: ListPages,
        convert: Callable[[Any], Row],
    ) -> Deferred[ReferenceRows]:
        """``token``'s copy of ``entity_set``, read with ``list_pages`` and ``convert`` when it has none."""
        if entity_set not in REFERENCE_SETS:
            raise ValueError(f"{entity_set} is not a reference set")
        return self._copies.get(
            (token_digest(token), entity_set),
            lambda: self._read(made_for, list_pages, convert),
            lambda copy: copy.made_for is made_for,
        )

    def age(self, copy: ReferenceRows) -> float:
        return self._clock.seconds() - copy.loaded_at

    async def _read(
        self, made_for: object, list_pages: ListPages, convert: Callable[[Any], Row]
    ) -> ReferenceRows:
        rows: list[Row] = []
        pages = list_pages(self._max_rows + 1)
        try:
            async for page in pages:
                if (page.count is not None and page.count > self._max_rows) or len(rows) + len(page.rows) > self._max_rows:
                    return ReferenceRows(made_for, None, self._clock.seconds())
                rows.extend(convert(record) for record in page.rows)
        finally:
            await pages.aclose()  # type: ignore[attr-defined]
        return ReferenceRows(made_for, rows, self._clock.seconds())


@implementer(IQueryResult)
class CachedResult:
    """
    Rows that matched a filter in a cached copy, from ``resume`` on, ``skip``
    of them left out; cursors count positions among them.
    """

    residual = None

    def __init__(self, rows: Sequence[Row], resume: int, skip: int, limit: Optional[int]) -> None:
        self._rows = rows
        self._resume = resume
        self.skipped = skip
        self._limit = limit

    async def batches(self) -> AsyncIterator[RowBatch]:
        start = self._resume + self.skipped
        end = len(self._rows) if self._limit is None else min(len(self._rows), self._resume + self._limit)
        if start < end:
            # Copies: the engine may add expanded navigation values to the rows it is given.
            yield RowBatch([dict(row) for row in self._rows[start:end]], range(start + 1, end + 1), last=True)

    async def count(self) -> int:
        return len(self._rows)


# --- Navigation through cached sets -----------------------------------------------------


def _properties(expr: BoundExpr) -> Optional[list[BoundProperty]]:
    """Every property an expression reads; None when it has a lambda (its variables range over collections)."""
    if isinstance(expr, BoundLiteral):
        return []
    if isinstance(expr, BoundProperty):
        return [expr]
    if isinstance(expr, BoundLambda):
        return None
    operands: Sequence[BoundExpr]
    if isinstance(expr, BoundBinary):
        operands = (expr.left, expr.right)
    elif isinstance(expr, BoundUnary):
        operands = (expr.operand,)
    elif isinstance(expr, BoundIn):
        operands = (expr.operand, *expr.values)
    elif isinstance(expr, BoundCall):
        operands = expr.args
    else:
        return None
    found: list[BoundProperty] = []
    for operand in operands:
        inner = _properties(operand)
        if inner is None:
            return None
        found.extend(inner)
    return found


def uses_navigation(model: Model, expr: Optional[BoundExpr]) -> bool:
    """Whether evaluating ``expr`` needs related entities, which rows do not carry."""
    if expr is None:
        return False
    properties = _properties(expr)
    if properties is None:
        return True
    return any(
        any(p.navigation) or p.collection or model.entity_type(p.type) is not None for p in properties
    )


@dataclass(frozen=True)
class _Navigation:
    """A single-valued navigation property to a reference set, through a foreign key to its ID."""

    name: str
    foreign_key: str
    foreign_key_type: str
    target_set: str


def _reference_navigation(model: Model, entity_set: str, name: str) -> Optional[_Navigation]:
    source = model.entity_set(entity_set)
    if source is None:
        return None
    entity_type = model.type_of(source)
    nav = entity_type.navigation_property(name)
    target = source.navigation_bindings.get(name)
    if nav is None or nav.collection or target not in REFERENCE_SETS or len(nav.constraints) != 1:
        return None
    (constraint,) = nav.constraints
    target_set = model.entity_set(target)
    foreign_key = entity_type.property(constraint.property)
    if target_set is None or foreign_key is None or model.type_of(target_set).key != (constraint.referenced_property,):
        return None
    return _Navigation(name, foreign_key.name, foreign_key.type, target)


# Navigation properties to join, by name, each with those to join to its targets.
_Joins = dict[str, "_Joins"]


def _add_joins(model: Model, entity_set: str, path: Sequence[str], joins: _Joins) -> bool:
    """
    Record the navigation steps ``path`` takes from ``entity_set``; False when
    one leads elsewhere than to a reference set.  The walk ends at the first
    structural property (what follows is inside its value).
    """
    for name in path:
        nav = _reference_navigation(model, entity_set, name)
        if nav is None:
            source = model.entity_set(entity_set)
            assert source is not None
            return model.type_of(source).navigation_property(name) is None
        joins = joins.setdefault(name, {})
        entity_set = nav.target_set
    return True


def _through_one_navigation(model: Model, entity_set: str, conjunct: BoundExpr) -> Optional[tuple[_Navigation, _Joins]]:
    """
    The navigation property a condition reads everything through (``Job`` in
    ``Job/Client/Name eq 'x' or Job/IsBillable``), and the joins it needs
    beyond; None when the condition reads anything else.
    """
    properties = _properties(conjunct)
    if not properties:
        return None
    first = properties[0].path[0] if properties[0].path else None
    if first is None:
        return None
    nav = _reference_navigation(model, entity_set, first)
    if nav is None:
        return None
    joins: _Joins = {}
    for prop in properties:
        if prop.variable is not None or prop.collection or not prop.path or prop.path[0] != first:
            return None
        if not _add_joins(model, nav.target_set, prop.path[1:], joins):
            return None
    return nav, joins


RowsOf = Callable[[str], Awaitable[Optional[Sequence[Row]]]]


async def _joined(model: Model, entity_set: str, joins: _Joins, rows_of: RowsOf) -> Optional[list[Row]]:
    """The cached rows of ``entity_set``, each with its related rows under ``joins``; None if one is not cached."""
    rows = await rows_of(entity_set)
    if rows is None:
        return None
    joined = list(rows)
    for name, further in joins.items():
        nav = _reference_navigation(model, entity_set, name)
        assert nav is not None
        targets = await _joined(model, nav.target_set, further, rows_of)
        if targets is None:
            return None
        by_id = {target.get("ID"): target for target in targets}
        joined = [{**row, name: by_id.get(row.get(nav.foreign_key))} for row in joined]
    return joined


async def _foreign_key_condition(
    conjunct: BoundExpr, nav: _Navigation, targets: Sequence[Row], reactor: Optional[IReactorTime]
) -> BoundExpr:
    """
    The condition on the foreign key that holds exactly when ``conjunct``
    does, given ``targets``.  A foreign key that is null or names no target
    leads to no entity: the condition holds for it when it holds for a null
    related entity, and then the condition names the targets excluded.
    Targets are checked giving ``reactor`` its turns (`odata_klein.slicing`).
    """
    holds = compile_predicate(conjunct)
    chosen = await kept_giving_turns(targets, lambda target: holds({nav.name: target}), reactor)
    chosen_ids = {id(target) for target in chosen}
    matching = [target.get("ID") for target in chosen]
    excluded = [target.get("ID") for target in targets if id(target) not in chosen_ids]
    key = BoundProperty((nav.foreign_key,), nav.foreign_key_type)
    if holds({nav.name: None}):
        if not excluded:
            return BoundLiteral(True, "Edm.Boolean")
        values = tuple(BoundLiteral(value, nav.foreign_key_type) for value in excluded)
        return BoundUnary("not", BoundIn(key, values), "Edm.Boolean")
    return BoundIn(key, tuple(BoundLiteral(value, nav.foreign_key_type) for value in matching))


async def resolve_navigation(
    model: Model,
    entity_set: str,
    filter_: Optional[BoundExpr],
    rows_of: RowsOf,
    reactor: Optional[IReactorTime] = None,
) -> tuple[Optional[BoundExpr], list[str]]:
    """
    ``filter_`` with each conjunct that reads only through one navigation
    property to a reference set replaced by the equivalent condition on its
    foreign key, computed over the cached copies ``rows_of`` gives (None for
    a set it cannot give); and a note for each replacement.  The result
    reads no navigation property where the replaced conjuncts did.
    """
    parts: list[BoundExpr] = []
    notes: list[str] = []
    for conjunct in conjuncts(filter_):
        through = _through_one_navigation(model, entity_set, conjunct)
        targets = None if through is None else await _joined(model, through[0].target_set, through[1], rows_of)
        if through is None or targets is None:
            parts.append(conjunct)
            continue
        nav = through[0]
        condition = await _foreign_key_condition(conjunct, nav, targets, reactor)
        parts.append(condition)
        notes.append(f"a condition on {nav.name} became one on {nav.foreign_key} through the cached {nav.target_set}")
    return conjunction(parts), notes
