"""
Running a bound request against a provider session.

The executor walks the steps of a `BoundPath` (fetching the entities that
navigation starts from), asks the provider for rows with the filter it should
apply, evaluates whatever the provider left over, and hands pages of rows to
the web layer.  It knows nothing about HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Optional, Sequence


from .bound import (
    BoundBinary,
    BoundExpr,
    BoundIn,
    BoundLambda,
    BoundLiteral,
    BoundProperty,
    BoundUnary,
    BoundCall,
    conjunction,
)
from .deferreds import settle
from .errors import NotFound, NotImplementedYet
from .evaluate import compile_predicate
from .interfaces import Cursor, IProviderSession, IQueryResult, NavigationSource, ProviderQuery, Row
from .model import EntitySet, EntityType, Model, NavigationProperty, Property
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


def _uses_navigation(expr: Optional[BoundExpr]) -> bool:
    """Whether evaluating ``expr`` needs related entities the rows do not carry."""
    if expr is None or isinstance(expr, BoundLiteral):
        return False
    if isinstance(expr, BoundProperty):
        return any(expr.navigation)
    if isinstance(expr, BoundLambda):
        return True
    if isinstance(expr, BoundBinary):
        return _uses_navigation(expr.left) or _uses_navigation(expr.right)
    if isinstance(expr, BoundUnary):
        return _uses_navigation(expr.operand)
    if isinstance(expr, BoundIn):
        return _uses_navigation(expr.operand) or any(_uses_navigation(v) for v in expr.values)
    if isinstance(expr, BoundCall):
        return any(_uses_navigation(arg) for arg in expr.args)
    return False


def _eq(prop: Property, value: Any) -> BoundExpr:
    return BoundBinary("eq", BoundProperty((prop.name,), prop.type), BoundLiteral(value, prop.type), "Edm.Boolean")


class RowStream:
    """
    Rows of a query after the residual filter, batch by batch, each row with
    the cursor that resumes after it.  Call `close` when done, also after
    stopping early: it releases what the provider holds (prefetched pages).
    """

    def __init__(self, result: IQueryResult, predicate: Optional[Callable[[Row], bool]]) -> None:
        self._batches: AsyncIterator[Any] = result.batches()
        self._predicate = predicate
        self._closed = False

    async def next(self) -> Optional[list[tuple[Row, Cursor]]]:
        """The next batch (possibly empty after filtering), or None at the end."""
        if self._closed:
            return None
        try:
            batch = await self._batches.__anext__()
        except StopAsyncIteration:
            self._closed = True
            return None
        pairs = zip(batch.rows, batch.cursors)
        predicate = self._predicate
        if predicate is None:
            return list(pairs)
        return [(row, cursor) for row, cursor in pairs if predicate(row)]

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._batches.aclose()  # type: ignore[attr-defined]


class Executor:
    def __init__(self, session: IProviderSession, model: Model) -> None:
        self._session = session
        self._model = model

    async def _query(self, query: ProviderQuery) -> tuple[IQueryResult, Optional[Callable[[Row], bool]]]:
        result: IQueryResult = await settle(self._session.query(query))
        residual = result.residual
        if _uses_navigation(residual):
            raise NotImplementedYet(
                "filters through navigation properties are not supported yet", target="$filter"
            )
        return result, (compile_predicate(residual) if residual is not None else None)

    async def rows(
        self,
        source: CollectionSource,
        extra_filter: Optional[BoundExpr] = None,
        *,
        resume: Optional[Cursor] = None,
        limit: Optional[int] = None,
        also: Optional[Callable[[Row], bool]] = None,
    ) -> RowStream:
        """
        Rows of ``source`` matching ``extra_filter`` and, when given, the
        engine-only predicate ``also`` (``$search``).  ``limit`` is how many
        matching rows the caller will read at most.
        """
        query = ProviderQuery(
            entity_set=source.entity_set.name,
            filter=conjunction([f for f in (source.filter, extra_filter) if f is not None]),
            resume=resume,
            # The provider cannot apply ``also``: a cap on its rows would cut matches short.
            limit=limit if also is None else None,
            parent=source.parent,
        )
        result, predicate = await self._query(query)
        return RowStream(result, _both(predicate, also))

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
        result, predicate = await self._query(query)
        if predicate is None and also is None:
            counted = await settle(result.count())
            if counted is not None:
                return int(counted)
        stream = RowStream(result, _both(predicate, also))
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
            partner = _partner_constraints(nav, step.target_type)
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


def _both(
    first: Optional[Callable[[Row], bool]], second: Optional[Callable[[Row], bool]]
) -> Optional[Callable[[Row], bool]]:
    if first is None or second is None:
        return first or second
    return lambda row: first(row) and second(row)


def _partner_constraints(nav: NavigationProperty, target_type: EntityType) -> Optional[tuple[Any, ...]]:
    """The constraints of the partner navigation property, when the partner is single-valued."""
    if nav.partner is None:
        return None
    partner = target_type.navigation_property(nav.partner)
    if partner is None or partner.collection or not partner.constraints:
        return None
    return partner.constraints
