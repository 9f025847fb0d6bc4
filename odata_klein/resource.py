"""
Binding the resource path (``TimeEntries('abc')/Job/Name``) to the model.

The result is a chain of steps checked against the model without any data:
unknown names are 404s and malformed keys are 400s here, before a provider is
asked for anything.  `odata_klein.executor` walks the steps with data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Union

from . import syntax
from .bound import BoundBinary, BoundExpr, BoundLiteral, BoundProperty, conjunction
from .errors import BadRequest, NotFound, NotImplementedYet
from .literals import key_value_from_segment, key_value_from_literal
from .model import EntitySet, EntityType, Model, NavigationProperty, Property


@dataclass(frozen=True)
class EntitySetStep:
    entity_set: EntitySet
    entity_type: EntityType


@dataclass(frozen=True)
class KeyStep:
    """Select one entity of the collection before it by its key values."""

    values: tuple[tuple[str, object], ...]
    entity_type: EntityType

    def as_filter(self) -> BoundExpr:
        parts: list[BoundExpr] = []
        for name, value in self.values:
            prop = self.entity_type.property(name)
            assert prop is not None
            parts.append(
                BoundBinary(
                    "eq", BoundProperty((name,), prop.type), BoundLiteral(value, prop.type), "Edm.Boolean"
                )
            )
        combined = conjunction(parts)
        assert combined is not None
        return combined


@dataclass(frozen=True)
class NavigationStep:
    navigation: NavigationProperty
    target_set: EntitySet
    target_type: EntityType


@dataclass(frozen=True)
class PropertyStep:
    property: Property


@dataclass(frozen=True)
class CountStep:
    pass


@dataclass(frozen=True)
class ValueStep:
    pass


Step = Union[EntitySetStep, KeyStep, NavigationStep, PropertyStep, CountStep, ValueStep]


@dataclass(frozen=True)
class BoundPath:
    steps: tuple[Step, ...]

    @property
    def last(self) -> Step:
        return self.steps[-1]

    @property
    def is_collection(self) -> bool:
        """Whether the path ends at a collection of entities."""
        collection = False
        for step in self.steps:
            if isinstance(step, EntitySetStep):
                collection = True
            elif isinstance(step, KeyStep):
                collection = False
            elif isinstance(step, NavigationStep):
                collection = step.navigation.collection
            else:
                return False
        return collection


def _key_values(
    segment: syntax.PathSegment,
    entity_type: EntityType,
    aliases: Mapping[str, syntax.Expr],
) -> tuple[tuple[str, object], ...]:
    predicate = segment.key
    assert predicate is not None
    key_props = entity_type.key_properties
    if predicate.names is None:
        if len(predicate.values) != 1 or len(key_props) != 1:
            raise BadRequest(
                f"{entity_type.name} has the key ({', '.join(entity_type.key)}): "
                "name each key property, as in (Name=value)",
                target=segment.name,
            )
        pairs = [(key_props[0].name, predicate.values[0])]
    else:
        pairs = list(zip(predicate.names, predicate.values))
        names = [name for name, _ in pairs]
        if sorted(names) != sorted(entity_type.key) or len(set(names)) != len(names):
            raise BadRequest(
                f"the key of {entity_type.name} is ({', '.join(entity_type.key)}), not ({', '.join(names)})",
                target=segment.name,
            )
    values = []
    for name, expr in pairs:
        prop = entity_type.property(name)
        assert prop is not None
        values.append((name, key_value_from_literal(expr, prop, aliases)))
    return tuple(values)


def bind_path(
    path: syntax.ResourcePath, model: Model, aliases: Mapping[str, syntax.Expr]
) -> BoundPath:
    segments = list(path.segments)
    if not segments:
        raise BadRequest("the resource path is empty")
    first = segments.pop(0)
    entity_set = model.entity_set(first.name)
    if entity_set is None:
        if first.name.startswith("$"):
            raise NotImplementedYet(f"{first.name} is not supported by this service", target=first.name)
        raise NotFound(f"there is no entity set named {first.name!r}", target=first.name)
    entity_type = model.type_of(entity_set)
    steps: list[Step] = [EntitySetStep(entity_set, entity_type)]
    current_set, current_type = entity_set, entity_type
    collection = True
    if first.key is not None:
        steps.append(KeyStep(_key_values(first, entity_type, aliases), entity_type))
        collection = False

    for segment in segments:
        last = steps[-1]
        if isinstance(last, (CountStep, ValueStep)):
            raise BadRequest(f"nothing can follow {segment.name!r} here", target=segment.name)
        if isinstance(last, PropertyStep):
            if segment.name == "$value" and segment.key is None and last.property.edm is not None:
                steps.append(ValueStep())
                continue
            raise NotImplementedYet(
                f"addressing inside property {last.property.name!r} is not supported", target=segment.name
            )
        if segment.name == "$count" and segment.key is None:
            if not collection:
                raise BadRequest("/$count applies to collections only", target="$count")
            steps.append(CountStep())
            continue
        if segment.name in ("$ref", "$value", "$entity", "$all", "$batch", "$metadata"):
            if segment.name == "$value" and not collection:
                raise BadRequest("entities of this service have no media stream ($value)", target="$value")
            raise NotImplementedYet(f"{segment.name} is not supported here", target=segment.name)
        if collection:
            # Key-as-segment (OData 4.01): TimeEntries/abc addresses the entity 'abc'.
            if segment.key is not None:
                raise BadRequest(f"{segment.name!r} cannot follow a collection", target=segment.name)
            steps.append(KeyStep(_key_as_segment(segment, current_type), current_type))
            collection = False
            continue
        prop = current_type.property(segment.name)
        if prop is not None:
            if segment.key is not None:
                raise BadRequest(f"property {prop.name!r} takes no key", target=segment.name)
            steps.append(PropertyStep(prop))
            continue
        nav = current_type.navigation_property(segment.name)
        if nav is None:
            raise NotFound(
                f"{segment.name!r} is not a property or navigation property of {current_type.name}",
                target=segment.name,
            )
        target_set_name = current_set.navigation_bindings.get(nav.name)
        target_set = model.entity_set(target_set_name) if target_set_name else None
        target_type = model.entity_type(nav.target_type)
        if target_set is None or target_type is None:
            raise NotImplementedYet(f"navigation property {nav.name!r} has no entity set", target=segment.name)
        steps.append(NavigationStep(nav, target_set, target_type))
        current_set, current_type = target_set, target_type
        collection = nav.collection
        if segment.key is not None:
            if not collection:
                raise BadRequest(f"{nav.name!r} is single-valued and takes no key", target=segment.name)
            steps.append(KeyStep(_key_values(segment, target_type, aliases), target_type))
            collection = False
    return BoundPath(tuple(steps))


def _key_as_segment(segment: syntax.PathSegment, entity_type: EntityType) -> tuple[tuple[str, object], ...]:
    key_props = entity_type.key_properties
    if len(key_props) != 1:
        raise BadRequest(
            f"{entity_type.name} has a composite key: use parentheses", target=segment.name
        )
    prop = key_props[0]
    return ((prop.name, key_value_from_segment(segment.name, prop)),)


def entity_set_of(path: BoundPath) -> Optional[EntitySet]:
    """The entity set the entities at the end of the path (or before a property) belong to."""
    found: Optional[EntitySet] = None
    for step in path.steps:
        if isinstance(step, EntitySetStep):
            found = step.entity_set
        elif isinstance(step, NavigationStep):
            found = step.target_set
    return found
