"""
Running a bound request against a provider session.

The executor walks the steps of a `BoundPath` (fetching the entities that
navigation starts from), asks the provider for rows with the filter it should
apply, evaluates whatever the provider left over, and hands pages of rows to
the web layer.  It knows nothing about HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Optional

from twisted.internet.interfaces import IReactorTime

from .bound import BoundBinary, BoundExpr, BoundLiteral, BoundProperty, conjunction
from . import expansion
from .deferreds import settle
from .describe import describe
from .errors import NotFound
from .evaluate import compile_predicate
from .interfaces import Cursor, IProviderSession, IQueryResult, NavigationSource, ProviderQuery, Row, Trace
from .model import EntitySet, EntityType, Model, Property
from .records import RecordReader
from .serializer import EntityEncoder
from .slicing import kept_giving_turns
from .resource import (
    BoundPath,
    CountStep,
    EntitySetStep,
    KeyStep,
    NavigationStep,
    PropertyStep,
    ValueStep,
)


@dataclass(frozen=True)
class CollectionSource:
    """A collection of entities not yet read: a set, narrowed by a filter or a parent."""

    entity_set: EntitySet
    entity_type: EntityType
    filter: Optional[BoundExpr] = None
    parent: Optional[NavigationSource] = None


@dataclass(frozen=True)
class EntityResult:
    """One entity, or None: a single-valued navigation property that is null."""

    entity_set: EntitySet
    entity_type: EntityType
    row: Optional[Row]


@dataclass(frozen=True)
class PropertyResult:
    entity: EntityResult
    property: Property
    value: Any
    raw: bool = False


@dataclass(frozen=True)
class CountResult:
    source: CollectionSource


Resolved = CollectionSource | EntityResult | PropertyResult | CountResult


def _eq(prop: Property, value: Any) -> BoundExpr:
    return BoundBinary("eq", BoundProperty((prop.name,), prop.type), BoundLiteral(value, prop.type), "Edm.Boolean")


@dataclass(frozen=True)
class RowFilter:
    """
    What the engine checks on a provider's rows: row-local tests first, then
    the tests that read related entities, fetched only for the rows still in.
    """

    local: Optional[Callable[[Row], bool]] = None
    fetch_related: Optional[Callable[[list[Row]], Awaitable[None]]] = None
    related: Optional[Callable[[Row], bool]] = None

    @property
    def empty(self) -> bool:
        return self.local is None and self.related is None

    def also(self, extra: Optional[Callable[[Row], bool]]) -> "RowFilter":
        if extra is None:
            return self
        local = self.local
        combined = extra if local is None else (lambda row: local(row) and extra(row))
        return RowFilter(combined, self.fetch_related, self.related)


class RowStream:
    """
    Rows of a query after the residual filter, batch by batch, each row with
    the cursor that resumes after it.  Call `close` when done, also after
    stopping early: it releases what the provider holds (prefetched pages).
    """

    def __init__(
        self,
        result: IQueryResult,
        row_filter: RowFilter,
        encoder: Optional[EntityEncoder] = None,
        clock: Optional[IReactorTime] = None,
    ) -> None:
        """With ``clock``, rows are checked in slices with reactor turns between them (`kept`)."""
        self._batches: AsyncIterator[Any] = result.batches()
        # Rows to skip that the provider left out itself: the engine skips the rest.
        self.skipped: int = getattr(result, "skipped", 0)
        self._filter = row_filter
        self._clock = clock
        self._closed = False
        # Rows are handed out written as JSON text by ``encoder`` when nothing
        # here needs them typed and it writes entities as their properties alone.
        writes = encoder is not None and encoder.plain_fields is not None and row_filter.empty
        self._encoder = encoder if writes else None
        self._writer: Optional[tuple[RecordReader, Callable[[Any], str]]] = None
        self._scanned: Cursor = None
        self._exhausted = False

    @property
    def scanned(self) -> Cursor:
        """
        The cursor after the last row read from the provider, kept or not
        (None before the first): where to resume once every batch handed
        out has been dealt with.
        """
        return self._scanned

    @property
    def exhausted(self) -> bool:
        """The provider said its last batch was the last: no rows follow."""
        return self._exhausted

    @property
    def writes(self) -> bool:
        """Rows come as JSON text, written by the encoder given (not as `Row` mappings)."""
        return self._encoder is not None

    async def next(self) -> Optional[list[tuple[Any, Cursor]]]:
        """The next batch (possibly empty after filtering), or None at the end."""
        if self._closed:
            return None
        try:
            batch = await self._batches.__anext__()
        except StopAsyncIteration:
            self._closed = True
            return None
        if len(batch.cursors):
            self._scanned = batch.cursors[-1]
        self._exhausted = batch.last
        reader = batch.reader
        if self._encoder is not None:
            write = self._writer_for(reader) if reader is not None else self._encoder.encode
            return list(zip([write(row) for row in batch.rows], batch.cursors))
        rows = batch.rows if reader is None else [reader.convert(record) for record in batch.rows]
        pairs = list(zip(rows, batch.cursors))
        row_filter = self._filter
        if row_filter.local is not None:
            pairs = await self._kept(pairs, row_filter.local)
        if row_filter.related is not None and pairs:
            if row_filter.fetch_related is not None:
                await row_filter.fetch_related([row for row, _ in pairs])
            pairs = await self._kept(pairs, row_filter.related)
        return pairs

    async def _kept(
        self, pairs: list[tuple[Row, Cursor]], test: Callable[[Row], bool]
    ) -> list[tuple[Row, Cursor]]:
        return await kept_giving_turns(pairs, lambda pair: test(pair[0]), self._clock)

    def _writer_for(self, reader: RecordReader) -> Callable[[Any], str]:
        # A stream's batches come with one reader: its writer is generated once.
        if self._writer is None or self._writer[0] is not reader:
            assert self._encoder is not None
            write = reader.writer(self._encoder)
            assert write is not None, "the encoder writes plain properties"
            self._writer = (reader, write)
        return self._writer[1]

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._batches.aclose()  # type: ignore[attr-defined]


class Executor:
    def __init__(
        self,
        session: IProviderSession,
        model: Model,
        trace: Optional[Trace] = None,
        clock: Optional[IReactorTime] = None,
    ) -> None:
        """``clock``: the reactor, given turns while rows are checked (see `odata_klein.slicing`)."""
        self._session = session
        self._model = model
        self._trace = trace
        self._clock = clock

    async def kept(self, rows: list[Row], test: Callable[[Row], bool]) -> list[Row]:
        """The rows that pass ``test``, checked without holding the reactor (`odata_klein.slicing`)."""
        return await kept_giving_turns(rows, test, self._clock)

    async def _query(self, source: CollectionSource, query: ProviderQuery) -> tuple[IQueryResult, RowFilter]:
        result: IQueryResult = await settle(self._session.query(query))
        entity_set, entity_type = source.entity_set, source.entity_type
        if result.residual is not None and self._trace is not None:
            self._trace.evaluated.append(f"{entity_set.name}: {describe(result.residual)}")
        local, related = expansion.split_filter(result.residual, entity_set, entity_type, self._model)
        if related is None:
            return result, RowFilter(compile_predicate(local) if local is not None else None)
        needs = expansion.navigation_needed(related, entity_set, entity_type, self._model)

        async def fetch_related(rows: list[Row]) -> None:
            await expansion.attach(self, rows, entity_set, entity_type, needs)

        return result, RowFilter(
            compile_predicate(local) if local is not None else None, fetch_related, compile_predicate(related)
        )

    async def rows(
        self,
        source: CollectionSource,
        extra_filter: Optional[BoundExpr] = None,
        *,
        resume: Optional[Cursor] = None,
        skip: int = 0,
        limit: Optional[int] = None,
        also: Optional[Callable[[Row], bool]] = None,
        written_by: Optional[EntityEncoder] = None,
    ) -> RowStream:
        """
        Rows of ``source`` matching ``extra_filter`` and, when given, the
        engine-only predicate ``also`` (``$search``).  The caller will leave
        out ``skip`` matching rows (less what the provider left out itself,
        `RowStream.skipped`) and read ``limit`` at most, those to skip
        included.  With ``written_by``, rows come as their JSON text when the
        engine has nothing to check on them (see `RowStream.writes`).
        """
        query = ProviderQuery(
            entity_set=source.entity_set.name,
            filter=conjunction([f for f in (source.filter, extra_filter) if f is not None]),
            resume=resume,
            # The provider cannot apply ``also``: a cap on its rows or a skip
            # would count rows that do not match.
            skip=skip if also is None else 0,
            limit=limit if also is None else None,
            parent=source.parent,
        )
        result, row_filter = await self._query(source, query)
        return RowStream(result, row_filter.also(also), written_by, self._clock)

    async def count(
        self,
        source: CollectionSource,
        extra_filter: Optional[BoundExpr] = None,
        also: Optional[Callable[[Row], bool]] = None,
    ) -> int:
        query = ProviderQuery(
            entity_set=source.entity_set.name,
            filter=conjunction([f for f in (source.filter, extra_filter) if f is not None]),
            parent=source.parent,
        )
        result, row_filter = await self._query(source, query)
        if row_filter.empty and also is None:
            counted = await settle(result.count())
            if counted is not None:
                return int(counted)
        stream = RowStream(result, row_filter.also(also), clock=self._clock)
        total = 0
        try:
            while (pairs := await stream.next()) is not None:
                total += len(pairs)
        finally:
            await stream.close()
        return total

    async def first(self, source: CollectionSource) -> Optional[Row]:
        stream = await self.rows(source, limit=1)
        try:
            while (pairs := await stream.next()) is not None:
                if pairs:
                    return pairs[0][0]
        finally:
            await stream.close()
        return None

    async def resolve(self, path: BoundPath) -> Resolved:
        """Walk the path, fetching the entities that later steps start from."""
        current: Resolved = CollectionSource(path.steps[0].entity_set, path.steps[0].entity_type)  # type: ignore[union-attr]
        for step in path.steps[1:]:
            if isinstance(step, KeyStep):
                assert isinstance(current, CollectionSource)
                narrowed = CollectionSource(
                    current.entity_set,
                    current.entity_type,
                    conjunction([f for f in (current.filter, step.as_filter()) if f is not None]),
                    current.parent,
                )
                row = await self.first(narrowed)
                if row is None:
                    keys = ", ".join(f"{name}={value!r}" for name, value in step.values)
                    raise NotFound(f"{current.entity_set.name} has no entity with {keys}")
                current = EntityResult(current.entity_set, current.entity_type, row)
            elif isinstance(step, NavigationStep):
                assert isinstance(current, EntityResult)
                current = await self._navigate(current, step)
            elif isinstance(step, PropertyStep):
                assert isinstance(current, EntityResult)
                if current.row is None:
                    raise NotFound(f"{step.property.name} of a null entity")
                current = PropertyResult(current, step.property, current.row.get(step.property.name))
            elif isinstance(step, ValueStep):
                assert isinstance(current, PropertyResult)
                current = PropertyResult(current.entity, current.property, current.value, raw=True)
            elif isinstance(step, CountStep):
                assert isinstance(current, CollectionSource)
                current = CountResult(current)
            else:
                assert isinstance(step, EntitySetStep)
        return current

    async def _navigate(self, source: EntityResult, step: NavigationStep) -> Resolved:
        if source.row is None:
            raise NotFound(f"{step.navigation.name} of a null entity")
        nav = step.navigation
        row = source.row
        if nav.constraints:
            if any(row.get(c.property) is None for c in nav.constraints):
                return EntityResult(step.target_set, step.target_type, None)
            parts = []
            for constraint in nav.constraints:
                target_prop = step.target_type.property(constraint.referenced_property)
                assert target_prop is not None
                parts.append(_eq(target_prop, row[constraint.property]))
            narrowed = CollectionSource(step.target_set, step.target_type, conjunction(parts))
        else:
            partner = expansion.partner_constraints(nav, step.target_type)
            if partner is not None:
                parts = []
                for constraint in partner:
                    target_prop = step.target_type.property(constraint.property)
                    assert target_prop is not None
                    parts.append(_eq(target_prop, row.get(constraint.referenced_property)))
                narrowed = CollectionSource(step.target_set, step.target_type, conjunction(parts))
            else:
                key = {name: row.get(name) for name in source.entity_type.key}
                narrowed = CollectionSource(
                    step.target_set,
                    step.target_type,
                    parent=NavigationSource(source.entity_set.name, key, nav.name, row),
                )
        if nav.collection:
            return narrowed
        return EntityResult(step.target_set, step.target_type, await self.first(narrowed))
