"""
The service's metadata document (``$metadata``), written from a `Model`.

Two representations of the same Common Schema Definition Language content:

- `metadata_xml`: CSDL XML, ``<edmx:Edmx Version="4.0">``.  It is what Power
  BI, Excel and Tableau read; it validates against both the OASIS 4.0 and the
  4.01 CSDL XML schemas.
- `metadata_json`: CSDL JSON 4.01.

Besides the model itself, the document carries vocabulary annotations that
tell clients what the service can do (`ServiceCapabilities`), and the model's
descriptions as ``Core.Description``.  Clients such as Power BI refuse a whole
feed over one wrong annotation, so every term used here was checked against
the OASIS vocabularies: its name, its type and the model elements it applies
to.

``Edm.Untyped`` only exists since CSDL 4.01: a model that uses it yields a
document that is only correct as 4.01, even though it carries
``Version="4.0"``.  Providers describe free-form JSON with an open complex
type instead.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Union

from .model import (
    VARIABLE_SCALE,
    ComplexType,
    Edm,
    EntitySet,
    EntityType,
    Model,
    NavigationProperty,
    Property,
    ReferentialConstraint,
)

EDMX_NAMESPACE = "http://docs.oasis-open.org/odata/ns/edmx"
EDM_NAMESPACE = "http://docs.oasis-open.org/odata/ns/edm"

# CSDL XML says 4.0, the version Power BI reads; the document is valid 4.01
# as well.
XML_VERSION = "4.0"
JSON_VERSION = "4.01"


@dataclass(frozen=True)
class Vocabulary:
    """An OASIS vocabulary the document references, and the alias its annotations use."""

    namespace: str
    alias: str
    xml_uri: str
    json_uri: str

    def term(self, name: str) -> str:
        return f"{self.alias}.{name}"


def _oasis_vocabulary(namespace: str, alias: str) -> Vocabulary:
    # The addresses the vocabularies publish as their own "latest-version"
    # (XML) and "alternate" (JSON) links.
    base = f"https://oasis-tcs.github.io/odata-vocabularies/vocabularies/{namespace}"
    return Vocabulary(namespace, alias, f"{base}.xml", f"{base}.json")


CORE = _oasis_vocabulary("Org.OData.Core.V1", "Core")
CAPABILITIES = _oasis_vocabulary("Org.OData.Capabilities.V1", "Capabilities")
VOCABULARIES = (CORE, CAPABILITIES)


@dataclass(frozen=True)
class Record:
    """A structured annotation value: property name -> value."""

    properties: tuple[tuple[str, AnnotationValue], ...]


# bool and str are constants, a tuple is a collection of strings.
AnnotationValue = Union[bool, str, tuple[str, ...], Record]


@dataclass(frozen=True)
class Annotation:
    # Qualified with the vocabulary's alias, e.g. "Core.Description".
    term: str
    value: AnnotationValue


@dataclass(frozen=True)
class ServiceCapabilities:
    """
    What the service tells clients it supports, as Capabilities and Core
    annotations.  Each field states a fact about the engine serving the
    model; the defaults describe a read-only service without ``$batch``.
    """

    read_only: bool = True
    countable: bool = True
    top_supported: bool = True
    skip_supported: bool = True
    batch_supported: bool = False
    # The ``respond-async`` preference.
    asynchronous_requests_supported: bool = False
    # Media types of the data formats served, with their format parameters.
    supported_formats: tuple[str, ...] = ("application/json;odata.metadata=minimal",)
    odata_versions: tuple[str, ...] = ("4.0", "4.01")

    def container_annotations(self) -> tuple[Annotation, ...]:
        return (
            Annotation(CORE.term("ODataVersions"), " ".join(self.odata_versions)),
            Annotation(CAPABILITIES.term("SupportedFormats"), self.supported_formats),
            # BatchSupported for clients that only know it, BatchSupport
            # because the vocabulary asks services to state that one too.
            Annotation(CAPABILITIES.term("BatchSupported"), self.batch_supported),
            Annotation(
                CAPABILITIES.term("BatchSupport"),
                Record((("Supported", self.batch_supported),)),
            ),
            Annotation(
                CAPABILITIES.term("AsynchronousRequestsSupported"),
                self.asynchronous_requests_supported,
            ),
        )

    def entity_set_annotations(self) -> tuple[Annotation, ...]:
        query = (
            Annotation(
                CAPABILITIES.term("CountRestrictions"),
                Record((("Countable", self.countable),)),
            ),
            Annotation(CAPABILITIES.term("TopSupported"), self.top_supported),
            Annotation(CAPABILITIES.term("SkipSupported"), self.skip_supported),
        )
        if not self.read_only:
            # The vocabulary's defaults already say "modifiable".
            return query
        return query + (
            Annotation(CAPABILITIES.term("InsertRestrictions"), Record((("Insertable", False),))),
            Annotation(CAPABILITIES.term("UpdateRestrictions"), Record((("Updatable", False),))),
            Annotation(CAPABILITIES.term("DeleteRestrictions"), Record((("Deletable", False),))),
        )


READ_ONLY = ServiceCapabilities()


def _descriptions(description: Optional[str]) -> tuple[Annotation, ...]:
    if description is None:
        return ()
    return (Annotation(CORE.term("Description"), description),)


def _facets(prop: Property) -> list[tuple[str, Union[int, str]]]:
    """Type facets by CSDL name (without the JSON ``$``)."""
    facets: list[tuple[str, Union[int, str]]] = []
    if prop.max_length is not None:
        facets.append(("MaxLength", prop.max_length))
    if prop.precision is not None:
        facets.append(("Precision", prop.precision))
    if prop.scale is not None:
        facets.append(("Scale", "variable" if prop.scale == VARIABLE_SCALE else prop.scale))
    return facets


def _referential_constraints(nav: NavigationProperty) -> tuple[ReferentialConstraint, ...]:
    # CSDL allows referential constraints on single-valued navigation
    # properties only: a collection's partner states the relationship.
    return () if nav.collection else nav.constraints


def _property_type(prop: Property) -> str:
    # Providers may pass an `Edm` member itself: since Python 3.11 formatting
    # one gives "Edm.STRING", not its value.
    edm = prop.edm
    return prop.type if edm is None else edm.value


def _collection_of(type_name: str, collection: bool) -> str:
    return f"Collection({type_name})" if collection else type_name


# ---------------------------------------------------------------- CSDL XML

# Characters XML 1.0 cannot carry, even escaped: a provider's description
# holding one would make the whole document unreadable.
_NOT_XML_CHARACTER = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_XML_DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>\n'


def _xml_string(text: str) -> str:
    return _NOT_XML_CHARACTER.sub("\ufffd", text)


def _xml_boolean(value: bool) -> str:
    return "true" if value else "false"


def _write_xml_value(element: ET.Element, value: AnnotationValue) -> None:
    """Put a value on an ``Annotation`` or ``PropertyValue`` element."""
    if isinstance(value, bool):
        element.set("Bool", _xml_boolean(value))
    elif isinstance(value, str):
        element.set("String", _xml_string(value))
    elif isinstance(value, Record):
        record = ET.SubElement(element, "Record")
        for name, member in value.properties:
            property_value = ET.SubElement(record, "PropertyValue", Property=name)
            _write_xml_value(property_value, member)
    else:
        collection = ET.SubElement(element, "Collection")
        for item in value:
            ET.SubElement(collection, "String").text = _xml_string(item)


def _write_xml_annotations(parent: ET.Element, annotations: Iterable[Annotation]) -> None:
    for annotation in annotations:
        element = ET.SubElement(parent, "Annotation", Term=annotation.term)
        _write_xml_value(element, annotation.value)


def _write_xml_property(parent: ET.Element, prop: Property) -> None:
    type_name = _collection_of(_property_type(prop), prop.collection)
    element = ET.SubElement(parent, "Property", Name=prop.name, Type=type_name)
    if not prop.nullable:
        element.set("Nullable", "false")
    for facet, value in _facets(prop):
        element.set(facet, str(value))
    _write_xml_annotations(element, _descriptions(prop.description))


def _write_xml_navigation_property(parent: ET.Element, nav: NavigationProperty) -> None:
    element = ET.SubElement(
        parent,
        "NavigationProperty",
        Name=nav.name,
        Type=_collection_of(nav.target_type, nav.collection),
    )
    # Nullable is meaningless, and not allowed, on collections.
    if not nav.collection and not nav.nullable:
        element.set("Nullable", "false")
    if nav.partner is not None:
        element.set("Partner", nav.partner)
    for constraint in _referential_constraints(nav):
        ET.SubElement(
            element,
            "ReferentialConstraint",
            Property=constraint.property,
            ReferencedProperty=constraint.referenced_property,
        )


def _write_xml_entity_type(schema: ET.Element, entity_type: EntityType) -> None:
    element = ET.SubElement(schema, "EntityType", Name=entity_type.name)
    if entity_type.open:
        element.set("OpenType", "true")
    key = ET.SubElement(element, "Key")
    for name in entity_type.key:
        ET.SubElement(key, "PropertyRef", Name=name)
    for prop in entity_type.properties:
        _write_xml_property(element, prop)
    for nav in entity_type.navigation_properties:
        _write_xml_navigation_property(element, nav)
    _write_xml_annotations(element, _descriptions(entity_type.description))


def _write_xml_complex_type(schema: ET.Element, complex_type: ComplexType) -> None:
    element = ET.SubElement(schema, "ComplexType", Name=complex_type.name)
    if complex_type.open:
        element.set("OpenType", "true")
    for prop in complex_type.properties:
        _write_xml_property(element, prop)


def _write_xml_entity_set(
    container: ET.Element, entity_set: EntitySet, capabilities: ServiceCapabilities
) -> None:
    element = ET.SubElement(
        container, "EntitySet", Name=entity_set.name, EntityType=entity_set.entity_type
    )
    if not entity_set.include_in_service_document:
        element.set("IncludeInServiceDocument", "false")
    for path, target in entity_set.navigation_bindings.items():
        ET.SubElement(element, "NavigationPropertyBinding", Path=path, Target=target)
    _write_xml_annotations(element, capabilities.entity_set_annotations())


def metadata_xml(model: Model, capabilities: ServiceCapabilities = READ_ONLY) -> bytes:
    """
    The CSDL XML document (UTF-8, with an XML declaration).

    Valid against the CSDL 4.0 and 4.01 XML schemas, unless the model uses
    ``Edm.Untyped``, which only 4.01 knows (see the module docstring).
    """
    # Prefixes are written literally rather than through
    # ET.register_namespace, whose registry is process-wide.
    root = ET.Element("edmx:Edmx", {"xmlns:edmx": EDMX_NAMESPACE, "Version": XML_VERSION})
    for vocabulary in VOCABULARIES:
        reference = ET.SubElement(root, "edmx:Reference", Uri=vocabulary.xml_uri)
        ET.SubElement(
            reference, "edmx:Include", Namespace=vocabulary.namespace, Alias=vocabulary.alias
        )
    data_services = ET.SubElement(root, "edmx:DataServices")
    schema = ET.SubElement(
        data_services, "Schema", {"xmlns": EDM_NAMESPACE, "Namespace": model.namespace}
    )
    for entity_type in model.entity_types:
        _write_xml_entity_type(schema, entity_type)
    for complex_type in model.complex_types:
        _write_xml_complex_type(schema, complex_type)
    container = ET.SubElement(schema, "EntityContainer", Name=model.container_name)
    for entity_set in model.entity_sets:
        _write_xml_entity_set(container, entity_set, capabilities)
    _write_xml_annotations(container, capabilities.container_annotations())
    ET.indent(root)
    return _XML_DECLARATION + ET.tostring(root, encoding="unicode").encode("utf-8")


# --------------------------------------------------------------- CSDL JSON


def _json_value(value: AnnotationValue) -> Any:
    if isinstance(value, Record):
        return {name: _json_value(member) for name, member in value.properties}
    if isinstance(value, tuple):
        return list(value)
    return value


def _json_annotations(annotations: Iterable[Annotation]) -> dict[str, Any]:
    return {f"@{annotation.term}": _json_value(annotation.value) for annotation in annotations}


def _json_property(prop: Property) -> dict[str, Any]:
    # CSDL JSON defaults differ from XML: absent $Type means Edm.String and
    # absent $Nullable means false.
    member: dict[str, Any] = {}
    type_name = _property_type(prop)
    if type_name != Edm.STRING.value:
        member["$Type"] = type_name
    if prop.collection:
        member["$Collection"] = True
    if prop.nullable:
        member["$Nullable"] = True
    for facet, value in _facets(prop):
        member[f"${facet}"] = value
    member.update(_json_annotations(_descriptions(prop.description)))
    return member


def _json_navigation_property(nav: NavigationProperty) -> dict[str, Any]:
    member: dict[str, Any] = {"$Kind": "NavigationProperty", "$Type": nav.target_type}
    if nav.collection:
        member["$Collection"] = True
    elif nav.nullable:
        member["$Nullable"] = True
    if nav.partner is not None:
        member["$Partner"] = nav.partner
    constraints = _referential_constraints(nav)
    if constraints:
        member["$ReferentialConstraint"] = {
            constraint.property: constraint.referenced_property for constraint in constraints
        }
    return member


def _json_entity_type(entity_type: EntityType) -> dict[str, Any]:
    member: dict[str, Any] = {"$Kind": "EntityType", "$Key": list(entity_type.key)}
    if entity_type.open:
        member["$OpenType"] = True
    for prop in entity_type.properties:
        member[prop.name] = _json_property(prop)
    for nav in entity_type.navigation_properties:
        member[nav.name] = _json_navigation_property(nav)
    member.update(_json_annotations(_descriptions(entity_type.description)))
    return member


def _json_complex_type(complex_type: ComplexType) -> dict[str, Any]:
    member: dict[str, Any] = {"$Kind": "ComplexType"}
    if complex_type.open:
        member["$OpenType"] = True
    for prop in complex_type.properties:
        member[prop.name] = _json_property(prop)
    return member


def _json_entity_set(entity_set: EntitySet, capabilities: ServiceCapabilities) -> dict[str, Any]:
    member: dict[str, Any] = {"$Collection": True, "$Type": entity_set.entity_type}
    if entity_set.navigation_bindings:
        member["$NavigationPropertyBinding"] = dict(entity_set.navigation_bindings)
    if not entity_set.include_in_service_document:
        member["$IncludeInServiceDocument"] = False
    member.update(_json_annotations(capabilities.entity_set_annotations()))
    return member


def metadata_json(model: Model, capabilities: ServiceCapabilities = READ_ONLY) -> dict[str, Any]:
    """The CSDL JSON 4.01 document, ready for `json.dumps`."""
    schema: dict[str, Any] = {}
    for entity_type in model.entity_types:
        schema[entity_type.name] = _json_entity_type(entity_type)
    for complex_type in model.complex_types:
        schema[complex_type.name] = _json_complex_type(complex_type)
    container: dict[str, Any] = {"$Kind": "EntityContainer"}
    for entity_set in model.entity_sets:
        container[entity_set.name] = _json_entity_set(entity_set, capabilities)
    container.update(_json_annotations(capabilities.container_annotations()))
    schema[model.container_name] = container
    return {
        "$Version": JSON_VERSION,
        "$EntityContainer": model.qualified(model.container_name),
        "$Reference": {
            vocabulary.json_uri: {
                "$Include": [{"$Namespace": vocabulary.namespace, "$Alias": vocabulary.alias}]
            }
            for vocabulary in VOCABULARIES
        },
        model.namespace: schema,
    }


__all__ = [
    "CAPABILITIES",
    "CORE",
    "READ_ONLY",
    "Annotation",
    "AnnotationValue",
    "Record",
    "ServiceCapabilities",
    "Vocabulary",
    "metadata_json",
    "metadata_xml",
]
