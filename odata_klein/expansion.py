"""
Related entities: ``$expand``, and navigation paths in ``$filter``.

`bind_expand` checks the ``$expand`` syntax against the model and gives a
tree of `ExpandNode`s; `navigation_needed` gives the same kind of tree for a
filter that reads related entities (``Job/Client/Name eq 'Acme'``,
``TimeEntries/any(t: t/Hours gt 8)``).  `attach` fetches, for a batch of
rows, the related entities of every node and stores them in each row under
the navigation property's name, which is where `odata_klein.evaluate` and
`odata_klein.serializer` read them: the related row or None for a
single-valued navigation property, a list of rows for a collection, and the
collection's size under ``Nav@odata.count`` when the client asked for it.

Fetching costs one request per row only where the model leaves no choice:

* a single-valued navigation property with a referential constraint
  (TimeEntry.Job: ``JobID`` holds the Job's ``ID``) costs one query
  ``ID in (...)`` per `CHUNK_SIZE` distinct foreign-key values of the batch;
* a collection whose partner has a constraint costs one query
  ``JobID in (...)`` per `CHUNK_SIZE` parents, grouped back by parent;
* a navigation property with neither (ClickTime's Timesheet.TimeEntries) is
  the slow path: one query per parent through a `NavigationSource`,
  `PARALLEL_QUERIES` at a time.

Nested ``$filter`` goes to the provider with the query, but for conditions
through navigation properties, evaluated here once what they read is
fetched.  Nested ``$orderby``, ``$skip``, ``$top`` and ``$count`` apply per
parent, in memory (the related collections of one page of rows are small),
``$orderby`` with `odata_klein.ordering.order_key`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Mapping, Optional, Sequence, TypeVar

from twisted.internet.defer import Deferred, DeferredSemaphore, FirstError, ensureDeferred, gatherResults

# The executor module itself, not its names: it may import this module in
# turn (to fetch what residual filters read), and either may come first.
from . import executor as execution
from . import syntax
from .binder import Binder
from .bound import (
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
    disjunction,
)
from .errors import BadRequest, NotImplementedYet
from .evaluate import compile_predicate
from .interfaces import NavigationSource, Row
from .model import EntitySet, EntityType, Model, NavigationProperty, Property, ReferentialConstraint
from .negotiation import JsonFormat
from .ordering import SortKey, order_key
from .serializer import COUNT_ANNOTATION, EntityEncoder, InlineNavigation
from .values import TypeRef

if TYPE_CHECKING:
    from .executor import Executor

# Foreign-key values per query: ClickTime takes up to 100 repeated ``ID=``
# parameters in one request (plugins/clicktime/pushdown.MAX_PUSHED_VALUES),
# and longer lists would make any provider's upstream URLs too long.
CHUNK_SIZE = 100
# Queries in flight at once for one expansion, to hide the upstream's
# latency; providers bound their own requests (ClickTime: 8 per token by
# default), and the smaller bound wins.  With ClickTime 100 ms late, the
# 3,980 requests of the demo's Timesheets?$expand=TimeEntries took 104 s
# with 4, 52 s with 8 and 52 s with 16.
PARALLEL_QUERIES = 8
# What ``$levels=max`` means, and the most levels a client may ask for.
MAX_LEVELS = 5

_T = TypeVar("_T")


# --- The bound tree -------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """The properties written for each entity, and the select list of the context URL."""

    properties: tuple[Property, ...]
    # None when nothing was selected: every structural property is written.
    listed: Optional[str] = None
    # Complex properties of which only some members are selected
    # ($select=CustomFields/Phase): property name -> member names.
    projections: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class ExpandNode:
    """
    One navigation property to fetch for every row, with what applies to its
    related entities.  ``filter`` is what the provider is asked to apply;
    ``navigation_filter`` (the conditions through navigation properties) is
    evaluated here, and ``orderby`` (pairs of expression and descending) too:
    ``reads`` is the tree of entities related to the related entities that
    those two read, fetched before they are evaluated.  ``recursive`` marks
    a node that ``$levels`` repeats inside its own ``expand``: the context
    URL writes it once, as ``Nav+(...)``.
    """

    navigation: NavigationProperty
    target_set: EntitySet
    target_type: EntityType
    selection: Selection
    filter: Optional[BoundExpr] = None
    navigation_filter: Optional[BoundExpr] = None
    orderby: tuple[tuple[BoundExpr, bool], ...] = ()
    top: Optional[int] = None
    skip: Optional[int] = None
    count: bool = False
    expand: tuple["ExpandNode", ...] = ()
    reads: tuple["ExpandNode", ...] = ()
    recursive: bool = False
    # Compiled once, from navigation_filter and orderby.
    predicate: Optional[Callable[[Row], bool]] = field(init=False, repr=False, compare=False)
    sort_key: Optional[Callable[[Row], SortKey]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        predicate = compile_predicate(self.navigation_filter) if self.navigation_filter is not None else None
        object.__setattr__(self, "predicate", predicate)
        object.__setattr__(self, "sort_key", order_key(self.orderby) if self.orderby else None)

    @property
    def name(self) -> str:
        return self.navigation.name

    def __repr__(self) -> str:
        nested = ", ".join(repr(node) for node in self.expand)
        return f"<ExpandNode {self.name}{'+' if self.recursive else ''} [{nested}]>"


def navigation_target(
    nav: NavigationProperty, entity_set: EntitySet, model: Model, option: str
) -> tuple[EntitySet, EntityType]:
    """The entity set and type the navigation property leads to from ``entity_set``."""
    set_name = entity_set.navigation_bindings.get(nav.name)
    target_set = model.entity_set(set_name) if set_name else None
    target_type = model.entity_type(nav.target_type)
    if target_set is None or target_type is None:
        raise NotImplementedYet(f"navigation property {nav.name!r} has no entity set", target=option)
    return target_set, target_type


def partner_constraints(
    nav: NavigationProperty, target_type: EntityType
) -> Optional[tuple[ReferentialConstraint, ...]]:
    """The constraints of the partner navigation property, when it is single-valued and has them."""
    if nav.partner is None:
        return None
    partner = target_type.navigation_property(nav.partner)
    if partner is None or partner.collection or not partner.constraints:
        return None
    return partner.constraints


def select_properties(
    entity_type: EntityType,
    select: Optional[tuple[syntax.SelectItem, ...]],
    option: str = "$select",
    computed: Sequence[Property] = (),
) -> Selection:
    """
    The properties a ``$select`` writes and its select list for the context
    URL.  Navigation properties may be selected: they are listed, and written
    only when expanded.  ``computed`` are the ``$compute`` properties: written
    when ``$select`` names them, as in ASP.NET Core OData (``*`` stands for
    the declared properties).
    """
    if select is None:
        return Selection(entity_type.properties)
    computed_by_name = {prop.name: prop for prop in computed}
    chosen: list[Property] = []
    listed: list[str] = []
    projections: dict[str, list[str]] = {}
    for item in select:
        if item.star:
            if item.path:
                raise NotImplementedYet(f"qualified * in {option} is not supported yet", target=option)
            chosen.extend(entity_type.properties)
            listed.append("*")
            continue
        members = _selected_members(entity_type, item, option)
        if members is not None:
            prop_name, member_names = members
            prop = entity_type.property(prop_name)
            assert prop is not None
            chosen.append(prop)
            projections.setdefault(prop_name, [])
            projections[prop_name] += [m for m in member_names if m not in projections[prop_name]]
            listed += [f"{prop_name}/{member}" for member in member_names]
            continue
        name = item.path[0]
        prop = entity_type.property(name) or computed_by_name.get(name)
        if prop is not None:
            chosen.append(prop)
        elif entity_type.navigation_property(name) is None:
            raise BadRequest(f"{option}: {name!r} is not a property of {entity_type.name}", target=option)
        listed.append(name)
    properties = tuple({prop.name: prop for prop in chosen}.values())
    # A property selected whole as well as by members is written whole.
    whole = {item.path[0] for item in select if len(item.path) == 1 and item.options is None and not item.star}
    starred = any(item.star for item in select)
    kept = {
        name: tuple(members)
        for name, members in projections.items()
        if name not in whole and not starred
    }
    return Selection(properties, "*" if listed == ["*"] else ",".join(dict.fromkeys(listed)), kept)


def _selected_members(
    entity_type: EntityType, item: syntax.SelectItem, option: str
) -> Optional[tuple[str, list[str]]]:
    """
    ``CustomFields/Phase`` or, in 4.01 form, ``CustomFields($select=Phase,Billable)``:
    the complex property and the members selected; None for a plain item.
    """
    if item.options is None and len(item.path) == 1:
        return None
    name = item.path[0]
    prop = entity_type.property(name)
    if prop is None or prop.edm is not None:
        raise BadRequest(
            f"{option}: {'/'.join(item.path)!r} selects inside {name!r}, which is not a complex property "
            f"of {entity_type.name}",
            target=option,
        )
    if item.options is None:
        if len(item.path) != 2:
            raise NotImplementedYet(f"{option} of {'/'.join(item.path)} is not supported yet", target=option)
        return name, [item.path[1]]
    nested = item.options
    others = [
        field_name for field_name in ("filter", "expand", "orderby", "top", "skip", "count", "search", "compute")
        if getattr(nested, field_name) is not None
    ]
    if others or len(item.path) != 1 or not nested.select:
        raise BadRequest(
            f"{option}: only $select applies inside {name!r}, a single complex property "
            f"(not ${', $'.join(others) or 'nothing'})",
            target=option,
        )
    members: list[str] = []
    for inner in nested.select:
        if inner.star or inner.options is not None or len(inner.path) != 1:
            raise NotImplementedYet(f"{option}: nested selections inside {name!r} are not supported", target=option)
        members.append(inner.path[0])
    return name, members


# --- Binding $expand ----------------------------------------------------------------------


def bind_expand(
    items: Sequence[syntax.ExpandItem],
    entity_set: EntitySet,
    entity_type: EntityType,
    model: Model,
    binder: Binder,
    aliases: Mapping[str, syntax.Expr],
) -> tuple[ExpandNode, ...]:
    """
    The expansion tree of ``$expand`` items for entities of ``entity_set``.
    ``aliases`` are the request's parameter aliases; nested options may add
    their own.  ``$levels=n`` is unrolled into n nested nodes (``max`` is
    `MAX_LEVELS`); on a navigation property whose target has no navigation
    property of the same name there is nothing to repeat, and it expands once.
    ``*`` expands every navigation property; an item naming one of them
    explicitly takes its place.
    """
    return _ExpandBinder(model, binder).bind(items, entity_set, entity_type, aliases)


class _ExpandBinder:
    def __init__(self, model: Model, binder: Binder) -> None:
        self._model = model
        self._binder = binder

    def bind(
        self,
        items: Sequence[syntax.ExpandItem],
        entity_set: EntitySet,
        entity_type: EntityType,
        aliases: Mapping[str, syntax.Expr],
    ) -> tuple[ExpandNode, ...]:
        explicit: dict[str, ExpandNode] = {}
        starred: list[int] = []
        for item in items:
            if item.ref or item.count:
                form = "/$ref" if item.ref else "/$count"
                raise NotImplementedYet(f"$expand with {form} is not supported yet", target="$expand")
            if item.path == ("$value",):
                raise BadRequest(
                    "$expand: entities of this service have no media stream ($value)", target="$expand"
                )
            nav = self._navigation_of(item, entity_type)
            if nav is None:
                starred.append(_levels(item.levels))
                continue
            if nav.name in explicit:
                raise BadRequest(f"$expand: {nav.name} is expanded more than once", target="$expand")
            explicit[nav.name] = self._node(
                nav, entity_set, item.options or syntax.QueryOptions(), _levels(item.levels), aliases
            )
        if not starred:
            return tuple(explicit.values())
        if len(starred) > 1:
            raise BadRequest("$expand: * is given more than once", target="$expand")
        every = self._star(entity_set, entity_type, starred[0])
        return tuple(explicit.get(node.name, node) for node in every)

    def _navigation_of(self, item: syntax.ExpandItem, entity_type: EntityType) -> Optional[NavigationProperty]:
        """The navigation property an item names (None for ``*``), with errors naming $expand."""
        segments = list(item.path)
        qualified = self._model.qualified(entity_type.name)
        if segments and "." in segments[0]:
            if segments[0] != qualified:
                raise BadRequest(f"$expand: '{segments[0]}' is not derived from {qualified}", target="$expand")
            segments.pop(0)
        if item.star:
            if segments:
                raise BadRequest(
                    f"$expand: '{'/'.join(item.path)}/*': * follows complex properties only", target="$expand"
                )
            return None
        if not segments:
            raise BadRequest("$expand: a type cast must be followed by a navigation property", target="$expand")
        name = segments[0]
        nav = entity_type.navigation_property(name)
        if nav is None:
            if entity_type.property(name) is not None:
                raise BadRequest(
                    f"$expand: '{name}' is a structural property of {entity_type.name}, "
                    "not a navigation property: list it in $select",
                    target="$expand",
                )
            names = [n.name for n in entity_type.navigation_properties]
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise BadRequest(
                f"$expand: {entity_type.name} has no navigation property '{name}'{hint}", target="$expand"
            )
        rest = segments[1:]
        if rest and rest[0] == nav.target_type:
            rest.pop(0)
        if rest:
            raise BadRequest(
                f"$expand: '{'/'.join(item.path)}' goes on from navigation property {name}: "
                f"write {name}($expand={rest[0]})",
                target="$expand",
            )
        return nav

    def _node(
        self,
        nav: NavigationProperty,
        entity_set: EntitySet,
        options: syntax.QueryOptions,
        levels: int,
        aliases: Mapping[str, syntax.Expr],
    ) -> ExpandNode:
        _check_nested_options(nav, options)
        target_set, target_type = navigation_target(nav, entity_set, self._model, "$expand")
        scope = {**aliases, **dict(options.aliases)}
        bound_filter = (
            self._binder.bind_filter(options.filter, target_type, scope, "$expand")
            if options.filter is not None
            else None
        )
        plain, navigation_filter = split_filter(bound_filter, target_set, target_type, self._model)
        orderby = tuple(
            (self._bind_order(item, target_type, scope), item.descending) for item in options.orderby or ()
        )
        read = [expr for expr, _ in orderby] + ([navigation_filter] if navigation_filter is not None else [])
        nested = list(self.bind(options.expand or (), target_set, target_type, scope))
        again = target_type.navigation_property(nav.name)
        recursive = levels > 1 and again is not None and all(n.name != nav.name for n in nested)
        if recursive:
            assert again is not None
            nested.append(self._node(again, target_set, options, levels - 1, aliases))
        return ExpandNode(
            navigation=nav,
            target_set=target_set,
            target_type=target_type,
            selection=select_properties(target_type, options.select, "$expand"),
            filter=plain,
            navigation_filter=navigation_filter,
            orderby=orderby,
            top=options.top,
            skip=options.skip,
            count=bool(options.count),
            expand=tuple(nested),
            reads=_needs_of(read, target_set, target_type, self._model),
            recursive=recursive,
        )

    def _bind_order(
        self, item: syntax.OrderByItem, entity_type: EntityType, aliases: Mapping[str, syntax.Expr]
    ) -> BoundExpr:
        bound = self._binder.bind_expression(item.expr, entity_type, aliases, "$expand")
        kind = TypeRef.of(bound)
        if kind.collection or self._model.entity_type(kind.name or "") is not None:
            raise BadRequest(
                f"$expand at position {item.expr.pos}: $orderby needs a single primitive value, not {kind}",
                target="$expand",
            )
        return bound

    def _star(self, entity_set: EntitySet, entity_type: EntityType, levels: int) -> tuple[ExpandNode, ...]:
        """Every navigation property, and with more levels every one of theirs."""
        nodes = []
        for nav in entity_type.navigation_properties:
            target_set, target_type = navigation_target(nav, entity_set, self._model, "$expand")
            nested = self._star(target_set, target_type, levels - 1) if levels > 1 else ()
            selection = Selection(target_type.properties)
            nodes.append(ExpandNode(nav, target_set, target_type, selection, expand=nested))
        return tuple(nodes)


def _levels(levels: int | str | None) -> int:
    if levels is None:
        return 1
    if levels == "max":
        return MAX_LEVELS
    assert isinstance(levels, int)
    if levels > MAX_LEVELS:
        raise NotImplementedYet(
            f"$expand: $levels above {MAX_LEVELS} is not supported (use $levels=max)", target="$expand"
        )
    return levels


def _check_nested_options(nav: NavigationProperty, options: syntax.QueryOptions) -> None:
    for name in ("search", "compute", "apply"):
        if getattr(options, name) is not None:
            raise NotImplementedYet(f"${name} inside $expand is not supported yet", target="$expand")
    if not nav.collection:
        for name in ("orderby", "top", "skip", "count"):
            if getattr(options, name) is not None:
                raise BadRequest(
                    f"$expand: ${name} applies to collections, and {nav.name} is single-valued",
                    target="$expand",
                )


# --- Navigation in filters ----------------------------------------------------------------


def navigation_needed(
    expr: BoundExpr, entity_set: EntitySet, entity_type: EntityType, model: Model
) -> tuple[ExpandNode, ...]:
    """
    The related entities evaluating ``expr`` on rows of ``entity_set`` reads:
    every navigation property a path walks or ends at, lambda collections
    included, nested as the paths nest.  Empty when ``expr`` reads only the
    rows' own properties.  (The entity set is needed, beside the type, for the
    entity sets the navigation properties lead to.)
    """
    return _needs_of([expr], entity_set, entity_type, model)


def _needs_of(
    exprs: Sequence[BoundExpr], entity_set: EntitySet, entity_type: EntityType, model: Model
) -> tuple[ExpandNode, ...]:
    root = _Needs(entity_set, entity_type, None)
    for expr in exprs:
        _collect(expr, root, {}, model)
    return root.nodes()


def split_filter(
    expr: Optional[BoundExpr], entity_set: EntitySet, entity_type: EntityType, model: Model
) -> tuple[Optional[BoundExpr], Optional[BoundExpr]]:
    """
    ``expr`` as the conjunction a provider can be given (conjuncts that read
    only the rows' own properties) and the conjunction of those that read
    related entities (None for none).
    """
    plain: list[BoundExpr] = []
    related: list[BoundExpr] = []
    for part in conjuncts(expr):
        (related if navigation_needed(part, entity_set, entity_type, model) else plain).append(part)
    return conjunction(plain), conjunction(related)


class _Needs:
    """The related entities of one entity set that a filter reads, as a growing tree."""

    def __init__(
        self, entity_set: EntitySet, entity_type: EntityType, navigation: Optional[NavigationProperty]
    ) -> None:
        self.entity_set = entity_set
        self.entity_type = entity_type
        self.navigation = navigation
        self.children: dict[str, _Needs] = {}

    def walk(self, path: tuple[str, ...], model: Model) -> Optional["_Needs"]:
        """Record the navigation properties along ``path``; the needs of the entities it ends at, if any."""
        current = self
        for name in path:
            nav = current.entity_type.navigation_property(name)
            if nav is None:
                # A structural property: complex types have no navigation properties.
                return None
            child = current.children.get(name)
            if child is None:
                target_set, target_type = navigation_target(nav, current.entity_set, model, "$filter")
                child = current.children[name] = _Needs(target_set, target_type, nav)
            current = child
        return current

    def nodes(self) -> tuple[ExpandNode, ...]:
        nodes = []
        for child in self.children.values():
            assert child.navigation is not None
            nodes.append(
                ExpandNode(
                    child.navigation,
                    child.entity_set,
                    child.entity_type,
                    Selection(child.entity_type.properties),
                    expand=child.nodes(),
                )
            )
        return tuple(nodes)


def _collect(expr: BoundExpr, root: _Needs, variables: Mapping[str, Optional[_Needs]], model: Model) -> None:
    if isinstance(expr, BoundProperty):
        base = root if expr.variable is None else variables.get(expr.variable)
        if base is not None:
            base.walk(expr.path, model)
    elif isinstance(expr, BoundLambda):
        collection = expr.collection
        base = root if collection.variable is None else variables.get(collection.variable)
        items = base.walk(collection.path, model) if base is not None else None
        if expr.predicate is not None and expr.variable is not None:
            _collect(expr.predicate, root, {**variables, expr.variable: items}, model)
    elif isinstance(expr, BoundBinary):
        _collect(expr.left, root, variables, model)
        _collect(expr.right, root, variables, model)
    elif isinstance(expr, BoundUnary):
        _collect(expr.operand, root, variables, model)
    elif isinstance(expr, BoundIn):
        for part in (expr.operand, *expr.values):
            _collect(part, root, variables, model)
    elif isinstance(expr, BoundCall):
        for arg in expr.args:
            _collect(arg, root, variables, model)
    else:
        assert isinstance(expr, BoundLiteral)


# --- Fetching -------------------------------------------------------------------------------


async def attach(
    executor: Executor,
    rows: list[Row],
    entity_set: EntitySet,
    entity_type: EntityType,
    nodes: Sequence[ExpandNode],
) -> None:
    """
    Store in each row of ``rows`` (entities of ``entity_set``) the related
    entities of every node, with the nodes' own expansions, recursively.
    Values already under those names are replaced.
    """
    for node in nodes:
        related = await _related(executor, rows, entity_set, entity_type, node)
        if node.expand and related:
            # Single-valued targets are shared between rows: expand each once.
            distinct = list({id(row): row for row in related}.values())
            await attach(executor, distinct, node.target_set, node.target_type, node.expand)


async def _related(
    executor: Executor, rows: list[Row], entity_set: EntitySet, entity_type: EntityType, node: ExpandNode
) -> list[Row]:
    """Fetch and store one node's related entities in ``rows``; all the related rows stored."""
    nav = node.navigation
    if nav.constraints:
        constraints = nav.constraints
        join = _Join(tuple(c.property for c in constraints), tuple(c.referenced_property for c in constraints))
    elif (partner := partner_constraints(nav, node.target_type)) is not None:
        join = _Join(tuple(c.referenced_property for c in partner), tuple(c.property for c in partner))
    else:
        return await _related_one_by_one(executor, rows, entity_set, entity_type, node)
    groups = await _fetch_joined(executor, rows, node, join)
    stored: list[Row] = []
    for row in rows:
        stored.extend(_store(row, node, groups.get(join.source_values(row), [])))
    return stored


@dataclass(frozen=True)
class _Join:
    """Rows relate when ``source`` properties of one hold the values of ``target`` properties of the other."""

    source: tuple[str, ...]
    target: tuple[str, ...]

    def source_values(self, row: Row) -> tuple[Any, ...]:
        return tuple(row.get(name) for name in self.source)

    def target_values(self, row: Row) -> tuple[Any, ...]:
        return tuple(row.get(name) for name in self.target)


async def _fetch_joined(
    executor: Executor, rows: list[Row], node: ExpandNode, join: _Join
) -> dict[tuple[Any, ...], list[Row]]:
    """The related rows of all ``rows``, grouped by their join values, one query per chunk."""
    wanted = list(dict.fromkeys(values for values in map(join.source_values, rows) if None not in values))
    chunks = [wanted[start : start + CHUNK_SIZE] for start in range(0, len(wanted), CHUNK_SIZE)]
    fetched = await _bounded(
        [partial(_fetch, executor, node, _matching(node.target_type, join.target, chunk)) for chunk in chunks]
    )
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for chunk_rows in fetched:
        for target in chunk_rows:
            groups.setdefault(join.target_values(target), []).append(target)
    return groups


def _matching(entity_type: EntityType, names: tuple[str, ...], tuples: list[tuple[Any, ...]]) -> BoundExpr:
    """``ID in (...)`` for one property; for composite keys, ``(A eq a1 and B eq b1) or ...``."""
    props = []
    for name in names:
        prop = entity_type.property(name)
        assert prop is not None, f"referential constraint names unknown property {name}"
        props.append(BoundProperty((prop.name,), prop.type))
    if len(props) == 1:
        return BoundIn(props[0], tuple(BoundLiteral(values[0], props[0].type) for values in tuples))
    alternatives = disjunction([_all_equal(props, values) for values in tuples])
    assert alternatives is not None
    return alternatives


def _all_equal(props: list[BoundProperty], values: tuple[Any, ...]) -> BoundExpr:
    """``A eq a and B eq b ...`` for one tuple of key values."""
    both = conjunction([BoundBinary("eq", p, BoundLiteral(v, p.type), "Edm.Boolean") for p, v in zip(props, values)])
    assert both is not None
    return both


async def _related_one_by_one(
    executor: Executor, rows: list[Row], entity_set: EntitySet, entity_type: EntityType, node: ExpandNode
) -> list[Row]:
    """The slow path: one query per row, through the provider's navigation."""

    async def one(row: Row) -> list[Row]:
        key = {name: row.get(name) for name in entity_type.key}
        parent = NavigationSource(entity_set.name, key, node.name, row)
        limit = None
        if node.top is not None and not node.count and node.sort_key is None:
            limit = (node.skip or 0) + node.top
        return _store(row, node, await _fetch(executor, node, None, parent, limit))

    stored_per_row = await _bounded([partial(one, row) for row in rows])
    return [related for stored in stored_per_row for related in stored]


async def _fetch(
    executor: Executor,
    node: ExpandNode,
    match: Optional[BoundExpr],
    parent: Optional[NavigationSource] = None,
    limit: Optional[int] = None,
) -> list[Row]:
    """
    Related rows that satisfy ``match`` and the node's filter, with what its
    ordering reads (``limit``: at most so many, when no condition is left to
    evaluate here).
    """
    source = execution.CollectionSource(
        node.target_set,
        node.target_type,
        conjunction([f for f in (match, node.filter) if f is not None]),
        parent,
    )
    predicate = node.predicate
    if predicate is not None:
        limit = None
    stream = await executor.rows(source, limit=limit)
    found: list[Row] = []
    try:
        while (limit is None or len(found) < limit) and (pairs := await stream.next()) is not None:
            found.extend(row for row, _ in pairs)
    finally:
        await stream.close()
    if node.reads:
        await attach(executor, found, node.target_set, node.target_type, node.reads)
    if predicate is not None:
        found = await executor.kept(found, predicate)
    return found if limit is None else found[:limit]


def _store(row: Row, node: ExpandNode, related: list[Row]) -> list[Row]:
    """Put one row's related rows in place after $orderby, $skip and $top; the rows stored."""
    name = node.name
    if node.count:
        row[name + COUNT_ANNOTATION] = len(related)
    if node.sort_key is not None:
        related = sorted(related, key=node.sort_key)
    if node.skip:
        related = related[node.skip :]
    if node.top is not None:
        related = related[: node.top]
    if node.navigation.collection:
        row[name] = related
        return related
    row[name] = related[0] if related else None
    return related[:1]


def _started(call: Callable[[], Coroutine[Any, Any, _T]]) -> "Deferred[_T]":
    return ensureDeferred(call())


async def _bounded(calls: Sequence[Callable[[], Coroutine[Any, Any, _T]]]) -> list[_T]:
    """Run the calls, `PARALLEL_QUERIES` at a time; the first failure cancels the rest and is raised."""
    semaphore = DeferredSemaphore(PARALLEL_QUERIES)
    running: list[Deferred[_T]] = [semaphore.run(_started, call) for call in calls]
    try:
        return await gatherResults(running, consumeErrors=True)
    except FirstError as error:
        for deferred in running:
            deferred.cancel()
        error.subFailure.raiseException()


# --- Writing ----------------------------------------------------------------------------------


def entity_encoder(
    model: Model,
    fmt: JsonFormat,
    entity_set: EntitySet,
    entity_type: EntityType,
    properties: Sequence[Property],
    nodes: Sequence[ExpandNode],
    entity_url_for: Callable[[EntitySet, EntityType], Optional[Callable[[Mapping[str, Any]], str]]],
    projections: Mapping[str, tuple[str, ...]] = {},
) -> EntityEncoder:
    """
    The encoder of entities of ``entity_set`` with ``properties`` and the
    expansions of ``nodes``, nested encoders included.  ``entity_url_for``
    gives the entity URL builder of an entity set (full metadata writes it).
    """
    inline = [
        InlineNavigation(
            node.name,
            entity_encoder(
                model,
                fmt,
                node.target_set,
                node.target_type,
                node.selection.properties,
                node.expand,
                entity_url_for,
                node.selection.projections,
            ),
            collection=node.navigation.collection,
            count=node.count,
        )
        for node in nodes
    ]
    return EntityEncoder(
        model, entity_type, fmt, properties, entity_url_for(entity_set, entity_type), inline, projections
    )


__all__ = [
    "CHUNK_SIZE",
    "MAX_LEVELS",
    "PARALLEL_QUERIES",
    "ExpandNode",
    "Selection",
    "attach",
    "bind_expand",
    "entity_encoder",
    "navigation_needed",
    "navigation_target",
    "partner_constraints",
    "select_properties",
    "split_filter",
]
