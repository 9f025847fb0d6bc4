"""
The Entity Data Model (EDM) a provider describes and the engine serves.

Everything here is an immutable description: providers build one `Model` per
caller (custom fields may differ between ClickTime companies), and the engine
reads it to bind queries, write ``$metadata`` and serialize rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Mapping, Optional


class Edm(str, Enum):
    """The primitive types the engine knows how to parse, compare and write."""

    STRING = "Edm.String"
    BOOLEAN = "Edm.Boolean"
    BYTE = "Edm.Byte"
    SBYTE = "Edm.SByte"
    INT16 = "Edm.Int16"
    INT32 = "Edm.Int32"
    INT64 = "Edm.Int64"
    DECIMAL = "Edm.Decimal"
    SINGLE = "Edm.Single"
    DOUBLE = "Edm.Double"
    DATE = "Edm.Date"
    TIME_OF_DAY = "Edm.TimeOfDay"
    DATE_TIME_OFFSET = "Edm.DateTimeOffset"
    DURATION = "Edm.Duration"
    GUID = "Edm.Guid"
    BINARY = "Edm.Binary"
    UNTYPED = "Edm.Untyped"


INTEGER_TYPES = frozenset({Edm.BYTE, Edm.SBYTE, Edm.INT16, Edm.INT32, Edm.INT64})
NUMERIC_TYPES = INTEGER_TYPES | {Edm.DECIMAL, Edm.SINGLE, Edm.DOUBLE}


@dataclass(frozen=True)
class Property:
    """
    A structural property.

    ``type`` is a qualified type name: an ``Edm`` member's value for primitive
    properties, or the qualified name of a complex type of the model.
    Python values carried in rows for each primitive type:

    ====================  =====================================
    Edm.String            str
    Edm.Boolean           bool
    Edm.Byte ... Int64    int
    Edm.Decimal           decimal.Decimal
    Edm.Single, Double    float
    Edm.Date              datetime.date
    Edm.TimeOfDay         datetime.time
    Edm.DateTimeOffset    datetime.datetime (always timezone-aware)
    Edm.Duration          datetime.timedelta
    Edm.Guid              uuid.UUID
    Edm.Binary            bytes
    complex / untyped     dict, list or any JSON value
    ====================  =====================================

    ``None`` is null for every type.
    """

    name: str
    type: str
    nullable: bool = True
    collection: bool = False
    precision: Optional[int] = None
    # None: not given; -1 stands for CSDL's Scale="variable".
    scale: Optional[int] = None
    max_length: Optional[int] = None
    description: Optional[str] = None

    @property
    def edm(self) -> Optional[Edm]:
        """The primitive type, or None for complex types."""
        try:
            return Edm(self.type)
        except ValueError:
            return None


VARIABLE_SCALE = -1


@dataclass(frozen=True)
class ReferentialConstraint:
    """``property`` of the source type holds the value of ``referenced_property`` of the target."""

    property: str
    referenced_property: str


@dataclass(frozen=True)
class NavigationProperty:
    name: str
    # Qualified name of the target entity type.
    target_type: str
    collection: bool = False
    nullable: bool = True
    partner: Optional[str] = None
    constraints: tuple[ReferentialConstraint, ...] = ()


@dataclass(frozen=True)
class ComplexType:
    name: str
    properties: tuple[Property, ...] = ()
    open: bool = False


@dataclass(frozen=True)
class EntityType:
    name: str
    key: tuple[str, ...]
    properties: tuple[Property, ...]
    navigation_properties: tuple[NavigationProperty, ...] = ()
    open: bool = False
    description: Optional[str] = None

    @property
    def key_properties(self) -> tuple[Property, ...]:
        found = tuple(p for p in self.properties if p.name in self.key)
        return tuple(sorted(found, key=lambda p: self.key.index(p.name)))

    # Defined after every use of the builtin @property in this class body,
    # which this method shadows from here on.
    def property(self, name: str) -> Optional[Property]:
        for prop in self.properties:
            if prop.name == name:
                return prop
        return None

    def navigation_property(self, name: str) -> Optional[NavigationProperty]:
        for nav in self.navigation_properties:
            if nav.name == name:
                return nav
        return None



@dataclass(frozen=True)
class EntitySet:
    name: str
    # Qualified name of the entity type.
    entity_type: str
    # Navigation property name -> name of the entity set its targets live in.
    navigation_bindings: Mapping[str, str] = field(default_factory=dict)
    # Whether the set appears in the service document.
    include_in_service_document: bool = True
    # The order the provider yields the set's rows in, as far as $orderby
    # can rely on it: (property, descending) pairs.  An $orderby that is a
    # prefix of it needs no sorting, and pages like an unordered read.
    natural_order: tuple[tuple[str, bool], ...] = ()


@dataclass(frozen=True)
class Model:
    """One schema and one entity container: all that the service exposes."""

    namespace: str
    container_name: str
    entity_types: tuple[EntityType, ...]
    entity_sets: tuple[EntitySet, ...]
    complex_types: tuple[ComplexType, ...] = ()

    def qualified(self, name: str) -> str:
        return f"{self.namespace}.{name}"

    def entity_set(self, name: str) -> Optional[EntitySet]:
        for entity_set in self.entity_sets:
            if entity_set.name == name:
                return entity_set
        return None

    def entity_type(self, qualified_name: str) -> Optional[EntityType]:
        for entity_type in self.entity_types:
            if self.qualified(entity_type.name) == qualified_name:
                return entity_type
        return None

    def complex_type(self, qualified_name: str) -> Optional[ComplexType]:
        for complex_type in self.complex_types:
            if self.qualified(complex_type.name) == qualified_name:
                return complex_type
        return None

    def type_of(self, entity_set: EntitySet) -> EntityType:
        entity_type = self.entity_type(entity_set.entity_type)
        if entity_type is None:
            raise KeyError(entity_set.entity_type)
        return entity_type
