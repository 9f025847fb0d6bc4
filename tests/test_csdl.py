"""
Tests for `odata_klein.csdl` and `odata_klein.servicedoc`: the metadata
documents validate against the OASIS schemas, describe the model, and only
carry annotations the OASIS vocabularies define for where they are used.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable, Optional

import pytest
from lxml import etree  # type: ignore[import-untyped]  # lxml-stubs is not a test dependency

from csdl_validation import (
    CSDL_DATA,
    InvalidCsdl,
    validate_json,
    validate_xml_40,
    validate_xml_401,
)
from odata_klein.csdl import ServiceCapabilities, metadata_json, metadata_xml
from odata_klein.model import (
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
from odata_klein.servicedoc import service_document

EDMX = "http://docs.oasis-open.org/odata/ns/edmx"
EDM = "http://docs.oasis-open.org/odata/ns/edm"
NS = {"edmx": EDMX, "edm": EDM}

NAMESPACE = "Fixture.Shop"
NAME_DESCRIPTION = 'Shown as "name" <b> & more\x01'


def q(name: str) -> str:
    return f"{NAMESPACE}.{name}"


@pytest.fixture
def model() -> Model:
    customer = EntityType(
        "Customer",
        key=("ID",),
        open=True,
        description="Someone who buys",
        properties=(
            Property("ID", Edm.STRING.value, nullable=False, max_length=36),
            Property("Name", Edm.STRING.value, description=NAME_DESCRIPTION),
            Property("Active", Edm.BOOLEAN.value, nullable=False),
            Property("Balance", Edm.DECIMAL.value, precision=18, scale=VARIABLE_SCALE),
            Property("Discount", Edm.DECIMAL.value, precision=5, scale=2),
            Property("Born", Edm.DATE.value),
            Property("OpensAt", Edm.TIME_OF_DAY.value),
            Property("Created", Edm.DATE_TIME_OFFSET.value, nullable=False, precision=3),
            Property("Level", Edm.BYTE.value),
            Property("Offset", Edm.SBYTE.value),
            Property("Small", Edm.INT16.value),
            Property("Visits", Edm.INT32.value),
            Property("Big", Edm.INT64.value),
            Property("Ratio", Edm.SINGLE.value),
            Property("Score", Edm.DOUBLE.value),
            Property("Wait", Edm.DURATION.value),
            Property("Token", Edm.GUID.value),
            Property("Photo", Edm.BINARY.value, max_length=1000),
            # An Edm member rather than its value: the writer must not care.
            Property("Tags", Edm.STRING, nullable=False, collection=True),
            Property("Address", q("Address")),
            Property("Extra", q("Extra")),
        ),
        navigation_properties=(
            NavigationProperty(
                "Orders",
                q("Order"),
                collection=True,
                partner="Customer",
                constraints=(ReferentialConstraint("ID", "CustomerID"),),
            ),
        ),
    )
    order = EntityType(
        "Order",
        key=("ID",),
        properties=(
            Property("ID", Edm.INT64.value, nullable=False),
            Property("CustomerID", Edm.STRING.value, nullable=False, max_length=36),
            Property("Total", Edm.DECIMAL.value, scale=VARIABLE_SCALE),
        ),
        navigation_properties=(
            NavigationProperty(
                "Customer",
                q("Customer"),
                nullable=False,
                partner="Orders",
                constraints=(ReferentialConstraint("CustomerID", "ID"),),
            ),
            NavigationProperty("Lines", q("OrderLine"), collection=True, partner="Order"),
        ),
    )
    line = EntityType(
        "OrderLine",
        key=("OrderID", "LineNo"),
        properties=(
            Property("OrderID", Edm.INT64.value, nullable=False),
            Property("LineNo", Edm.INT32.value, nullable=False),
            Property("Quantity", Edm.DECIMAL.value, precision=12, scale=3),
        ),
        navigation_properties=(
            NavigationProperty(
                "Order",
                q("Order"),
                partner="Lines",
                constraints=(ReferentialConstraint("OrderID", "ID"),),
            ),
        ),
    )
    return Model(
        namespace=NAMESPACE,
        container_name="Shop",
        entity_types=(customer, order, line),
        complex_types=(
            ComplexType(
                "Address",
                (Property("Street", Edm.STRING.value), Property("Zip", Edm.STRING.value)),
            ),
            # Free-form JSON, which 4.0 cannot type as Edm.Untyped.
            ComplexType("Extra", open=True),
        ),
        entity_sets=(
            EntitySet("Customers", q("Customer"), {"Orders": "Orders"}),
            EntitySet("Orders", q("Order"), {"Customer": "Customers", "Lines": "OrderLines"}),
            EntitySet(
                "OrderLines",
                q("OrderLine"),
                {"Order": "Orders"},
                include_in_service_document=False,
            ),
        ),
    )


def parse(xml: bytes) -> etree._Element:
    return etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))


def one(root: etree._Element, path: str) -> etree._Element:
    found = root.xpath(path, namespaces=NS)
    assert len(found) == 1, f"{path}: {len(found)} matches"
    return found[0]


def entity_type(root: etree._Element, name: str) -> etree._Element:
    return one(root, f"//edm:EntityType[@Name='{name}']")


# ------------------------------------------------------------ validity


def test_xml_validates_against_csdl_40_and_401(model: Model) -> None:
    xml = metadata_xml(model)
    validate_xml_40(xml)
    validate_xml_401(xml)


def test_json_validates_against_csdl_json_schema(model: Model) -> None:
    validate_json(metadata_json(model))


def test_every_capabilities_variant_validates(model: Model) -> None:
    capabilities = ServiceCapabilities(
        read_only=False,
        countable=False,
        top_supported=False,
        skip_supported=False,
        batch_supported=True,
        asynchronous_requests_supported=True,
        supported_formats=("application/json;odata.metadata=minimal", "application/json"),
        odata_versions=("4.01",),
    )
    xml = metadata_xml(model, capabilities)
    validate_xml_40(xml)
    validate_xml_401(xml)
    validate_json(metadata_json(model, capabilities))


def test_untyped_property_validates_as_401() -> None:
    untyped = Model(
        namespace=NAMESPACE,
        container_name="Box",
        entity_types=(
            EntityType(
                "Thing",
                ("ID",),
                (
                    Property("ID", Edm.INT32.value, nullable=False),
                    Property("Raw", Edm.UNTYPED.value),
                ),
            ),
        ),
        entity_sets=(EntitySet("Things", q("Thing")),),
    )
    xml = metadata_xml(untyped)
    validate_xml_401(xml)
    assert one(parse(xml), "//edm:Property[@Name='Raw']").get("Type") == "Edm.Untyped"
    validate_json(metadata_json(untyped))


# --------------------------------------------------- the validators can fail


def test_xml_validators_tell_40_from_401(model: Model) -> None:
    xml_401 = metadata_xml(model).replace(b'Version="4.0"', b'Version="4.01"', 1)
    validate_xml_401(xml_401)
    with pytest.raises(InvalidCsdl, match="Version"):
        validate_xml_40(xml_401)


@pytest.mark.parametrize("validate", [validate_xml_40, validate_xml_401])
def test_xml_validators_reject_invalid_documents(
    model: Model, validate: Callable[[bytes], None]
) -> None:
    xml = metadata_xml(model)
    with pytest.raises(InvalidCsdl, match="Scale"):
        validate(xml.replace(b'Scale="variable"', b'Scale="-1"', 1))
    with pytest.raises(InvalidCsdl, match="Colour"):
        validate(xml.replace(b"<Key>", b'<Key Colour="red">', 1))
    with pytest.raises(InvalidCsdl, match="well-formed"):
        validate(xml.replace(b"</Key>", b"", 1))


def test_json_validator_rejects_invalid_documents(model: Model) -> None:
    doc = metadata_json(model)
    bad_scale = copy.deepcopy(doc)
    bad_scale[NAMESPACE]["Customer"]["Balance"]["$Scale"] = "wide"
    with pytest.raises(InvalidCsdl, match="Balance"):
        validate_json(bad_scale)
    # The identifier patterns use \p{L}: a digit cannot start a name...
    bad_name = copy.deepcopy(doc)
    bad_name[NAMESPACE]["1Customer"] = bad_name[NAMESPACE].pop("Customer")
    with pytest.raises(InvalidCsdl, match="1Customer"):
        validate_json(bad_name)
    # ...while any letter can.
    unicode_name = copy.deepcopy(doc)
    unicode_name[NAMESPACE]["Ärger"] = unicode_name[NAMESPACE].pop("Customer")
    validate_json(unicode_name)


# ----------------------------------------------------------- CSDL XML shape


def test_xml_is_utf8_edmx_40_with_one_schema(model: Model) -> None:
    xml = metadata_xml(model)
    assert xml.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    root = parse(xml)
    assert root.tag == f"{{{EDMX}}}Edmx"
    assert root.get("Version") == "4.0"
    assert one(root, "edmx:DataServices/edm:Schema").get("Namespace") == NAMESPACE


def test_xml_keys_in_order(model: Model) -> None:
    root = parse(metadata_xml(model))
    keys = {
        name: entity_type(root, name).xpath("edm:Key/edm:PropertyRef/@Name", namespaces=NS)
        for name in ("Customer", "Order", "OrderLine")
    }
    assert keys == {"Customer": ["ID"], "Order": ["ID"], "OrderLine": ["OrderID", "LineNo"]}


def test_xml_properties_carry_types_and_facets(model: Model) -> None:
    customer = entity_type(parse(metadata_xml(model)), "Customer")
    attributes = {
        prop.get("Name"): {k: v for k, v in prop.attrib.items() if k != "Name"}
        for prop in customer.xpath("edm:Property", namespaces=NS)
    }
    assert attributes["ID"] == {"Type": "Edm.String", "Nullable": "false", "MaxLength": "36"}
    assert attributes["Name"] == {"Type": "Edm.String"}
    assert attributes["Active"] == {"Type": "Edm.Boolean", "Nullable": "false"}
    assert attributes["Balance"] == {"Type": "Edm.Decimal", "Precision": "18", "Scale": "variable"}
    assert attributes["Discount"] == {"Type": "Edm.Decimal", "Precision": "5", "Scale": "2"}
    assert attributes["Born"] == {"Type": "Edm.Date"}
    assert attributes["OpensAt"] == {"Type": "Edm.TimeOfDay"}
    assert attributes["Created"] == {
        "Type": "Edm.DateTimeOffset",
        "Nullable": "false",
        "Precision": "3",
    }
    assert attributes["Tags"] == {"Type": "Collection(Edm.String)", "Nullable": "false"}
    assert attributes["Extra"] == {"Type": q("Extra")}
    assert {attributes[name]["Type"] for name in attributes} >= {
        member.value for member in Edm if member is not Edm.UNTYPED
    }


def test_xml_open_and_complex_types(model: Model) -> None:
    root = parse(metadata_xml(model))
    assert entity_type(root, "Customer").get("OpenType") == "true"
    assert entity_type(root, "Order").get("OpenType") is None
    assert one(root, "//edm:ComplexType[@Name='Extra']").get("OpenType") == "true"
    address = one(root, "//edm:ComplexType[@Name='Address']")
    assert address.get("OpenType") is None
    assert address.xpath("edm:Property/@Name", namespaces=NS) == ["Street", "Zip"]


def test_xml_navigation_properties(model: Model) -> None:
    root = parse(metadata_xml(model))
    to_customer = one(entity_type(root, "Order"), "edm:NavigationProperty[@Name='Customer']")
    assert dict(to_customer.attrib) == {
        "Name": "Customer",
        "Type": q("Customer"),
        "Nullable": "false",
        "Partner": "Orders",
    }
    assert [dict(child.attrib) for child in to_customer] == [
        {"Property": "CustomerID", "ReferencedProperty": "ID"}
    ]
    to_order = one(entity_type(root, "OrderLine"), "edm:NavigationProperty[@Name='Order']")
    assert to_order.get("Nullable") is None  # nullable is CSDL's default
    # Collections carry neither Nullable nor, as CSDL only allows them on
    # single-valued navigation properties, referential constraints.
    to_orders = one(entity_type(root, "Customer"), "edm:NavigationProperty[@Name='Orders']")
    assert dict(to_orders.attrib) == {
        "Name": "Orders",
        "Type": f"Collection({q('Order')})",
        "Partner": "Customer",
    }
    assert len(to_orders) == 0


def test_xml_entity_sets_and_bindings(model: Model) -> None:
    container = one(parse(metadata_xml(model)), "//edm:EntityContainer[@Name='Shop']")
    for entity_set in model.entity_sets:
        element = one(container, f"edm:EntitySet[@Name='{entity_set.name}']")
        assert element.get("EntityType") == entity_set.entity_type
        bindings = {
            b.get("Path"): b.get("Target")
            for b in element.xpath("edm:NavigationPropertyBinding", namespaces=NS)
        }
        assert bindings == dict(entity_set.navigation_bindings)
    hidden = one(container, "edm:EntitySet[@Name='OrderLines']")
    assert hidden.get("IncludeInServiceDocument") == "false"
    assert one(container, "edm:EntitySet[@Name='Orders']").get("IncludeInServiceDocument") is None


def test_xml_descriptions_escape_and_drop_non_xml_characters(model: Model) -> None:
    root = parse(metadata_xml(model))
    name = one(entity_type(root, "Customer"), "edm:Property[@Name='Name']")
    assert one(name, "edm:Annotation[@Term='Core.Description']").get("String") == (
        'Shown as "name" <b> & more\ufffd'
    )
    customer = entity_type(root, "Customer")
    description = one(customer, "edm:Annotation[@Term='Core.Description']")
    assert description.get("String") == "Someone who buys"


def annotations_by_target(root: etree._Element) -> dict[str, dict[str, str]]:
    """Container and entity set name -> term -> XML of its value."""

    def values(element: etree._Element) -> dict[str, str]:
        return {
            a.get("Term"): etree.tostring(a, encoding="unicode")
            for a in element.xpath("edm:Annotation", namespaces=NS)
        }

    container = one(root, "//edm:EntityContainer")
    targets = {"": values(container)}
    for entity_set in container.xpath("edm:EntitySet", namespaces=NS):
        targets[entity_set.get("Name")] = values(entity_set)
    return targets


def test_xml_capabilities_of_a_read_only_service(model: Model) -> None:
    root = parse(metadata_xml(model))
    container = one(root, "//edm:EntityContainer")

    def value(element: etree._Element, term: str) -> dict[str, str]:
        annotation = one(element, f"edm:Annotation[@Term='{term}']")
        record = annotation.xpath("edm:Record/edm:PropertyValue", namespaces=NS)
        if record:
            return {p.get("Property"): p.get("Bool") for p in record}
        collection = annotation.xpath("edm:Collection/edm:String", namespaces=NS)
        if collection:
            return {"strings": " ".join(s.text for s in collection)}
        return {k: v for k, v in annotation.attrib.items() if k != "Term"}

    assert value(container, "Core.ODataVersions") == {"String": "4.0 4.01"}
    assert value(container, "Capabilities.SupportedFormats") == {
        "strings": "application/json;odata.metadata=minimal"
    }
    assert value(container, "Capabilities.BatchSupported") == {"Bool": "false"}
    assert value(container, "Capabilities.BatchSupport") == {"Supported": "false"}
    assert value(container, "Capabilities.AsynchronousRequestsSupported") == {"Bool": "false"}
    for entity_set in container.xpath("edm:EntitySet", namespaces=NS):
        assert value(entity_set, "Capabilities.InsertRestrictions") == {"Insertable": "false"}
        assert value(entity_set, "Capabilities.UpdateRestrictions") == {"Updatable": "false"}
        assert value(entity_set, "Capabilities.DeleteRestrictions") == {"Deletable": "false"}
        assert value(entity_set, "Capabilities.CountRestrictions") == {"Countable": "true"}
        assert value(entity_set, "Capabilities.TopSupported") == {"Bool": "true"}
        assert value(entity_set, "Capabilities.SkipSupported") == {"Bool": "true"}


def test_modifiable_service_states_no_restrictions(model: Model) -> None:
    capabilities = ServiceCapabilities(read_only=False, asynchronous_requests_supported=True)
    targets = annotations_by_target(parse(metadata_xml(model, capabilities)))
    assert 'Bool="true"' in targets[""]["Capabilities.AsynchronousRequestsSupported"]
    for name in ("Customers", "Orders", "OrderLines"):
        assert set(targets[name]) == {
            "Capabilities.CountRestrictions",
            "Capabilities.TopSupported",
            "Capabilities.SkipSupported",
        }


# ------------------------------------------- annotations against vocabularies


class Vocabularies:
    """The term, complex type and type definition declarations of the copied vocabularies."""

    def __init__(self, directory: Path) -> None:
        self.schemas: dict[str, etree._Element] = {}
        self.links: dict[str, dict[str, str]] = {}
        for path in directory.glob("*.xml"):
            root = parse(path.read_bytes())
            schema = one(root, "edmx:DataServices/edm:Schema")
            namespace = schema.get("Namespace")
            self.schemas[namespace] = schema
            self.links[namespace] = {
                record.xpath("edm:PropertyValue[@Property='rel']/@String", namespaces=NS)[0]:
                record.xpath("edm:PropertyValue[@Property='href']/@String", namespaces=NS)[0]
                for record in schema.xpath(
                    "edm:Annotation[@Term='Core.Links']/edm:Collection/edm:Record", namespaces=NS
                )
            }

    def declaration(self, qualified: str, kind: str) -> Optional[etree._Element]:
        """``qualified`` uses a vocabulary's namespace or its own alias."""
        prefix, _, name = qualified.rpartition(".")
        for namespace, schema in self.schemas.items():
            if prefix in (namespace, schema.get("Alias")):
                found = schema.xpath(f"edm:{kind}[@Name='{name}']", namespaces=NS)
                return found[0] if found else None
        return None

    def complex_type_properties(self, qualified: str) -> dict[str, str]:
        complex_type = self.declaration(qualified, "ComplexType")
        assert complex_type is not None, f"no complex type {qualified}"
        properties = {
            prop.get("Name"): prop.get("Type")
            for prop in complex_type.xpath("edm:Property", namespaces=NS)
        }
        base = complex_type.get("BaseType")
        return properties if base is None else {**self.complex_type_properties(base), **properties}

    def check_value(self, type_name: str, element: etree._Element) -> None:
        """Assert that ``element`` (Annotation or PropertyValue) holds a value of ``type_name``."""
        definition = self.declaration(type_name, "TypeDefinition")
        if definition is not None:
            type_name = definition.get("UnderlyingType")
        if type_name == "Edm.Boolean":
            assert element.get("Bool") in ("true", "false"), etree.tostring(element)
        elif type_name == "Edm.String":
            assert element.get("String") is not None, etree.tostring(element)
        elif type_name == "Collection(Edm.String)":
            (collection,) = element
            assert collection.tag == f"{{{EDM}}}Collection"
            assert all(item.tag == f"{{{EDM}}}String" for item in collection)
        else:
            properties = self.complex_type_properties(type_name)
            (record,) = element
            assert record.tag == f"{{{EDM}}}Record"
            for property_value in record:
                name = property_value.get("Property")
                assert name in properties, f"{type_name} has no property {name}"
                self.check_value(properties[name], property_value)


@pytest.fixture
def vocabularies() -> Vocabularies:
    return Vocabularies(CSDL_DATA / "vocab")


def test_every_annotation_is_a_vocabulary_term_applied_where_it_may_be(
    model: Model, vocabularies: Vocabularies
) -> None:
    root = parse(metadata_xml(model))
    aliases = {
        include.get("Alias"): include.get("Namespace")
        for include in root.xpath("edmx:Reference/edmx:Include", namespaces=NS)
    }
    annotations = root.xpath("//edm:Annotation", namespaces=NS)
    assert len(annotations) > 10
    for annotation in annotations:
        alias, _, name = annotation.get("Term").partition(".")
        assert alias in aliases, f"{alias} is not an included vocabulary"
        term = vocabularies.declaration(f"{aliases[alias]}.{name}", "Term")
        assert term is not None, f"{annotation.get('Term')} is not a term"
        applies_to = term.get("AppliesTo")
        target_kind = etree.QName(annotation.getparent()).localname
        if applies_to is not None:
            assert target_kind in applies_to.split(), f"{name} does not apply to {target_kind}"
        vocabularies.check_value(term.get("Type"), annotation)


def test_references_use_the_vocabularies_own_addresses(
    model: Model, vocabularies: Vocabularies
) -> None:
    root = parse(metadata_xml(model))
    references = {
        one(reference, "edmx:Include").get("Namespace"): reference.get("Uri")
        for reference in root.xpath("edmx:Reference", namespaces=NS)
    }
    assert references == {
        namespace: links["latest-version"] for namespace, links in vocabularies.links.items()
    }
    json_references = {
        reference["$Include"][0]["$Namespace"]: uri
        for uri, reference in metadata_json(model)["$Reference"].items()
    }
    assert json_references == {
        namespace: links["alternate"] for namespace, links in vocabularies.links.items()
    }


# ---------------------------------------------------------- CSDL JSON shape


def test_json_document_header(model: Model) -> None:
    doc = metadata_json(model)
    assert doc["$Version"] == "4.01"
    assert doc["$EntityContainer"] == q("Shop")
    assert set(doc) == {"$Version", "$EntityContainer", "$Reference", NAMESPACE}


def test_json_types(model: Model) -> None:
    schema = metadata_json(model)[NAMESPACE]
    customer = schema["Customer"]
    assert customer["$Kind"] == "EntityType"
    assert customer["$Key"] == ["ID"]
    assert customer["$OpenType"] is True
    assert customer["@Core.Description"] == "Someone who buys"
    # CSDL JSON defaults: Edm.String, not nullable.
    assert customer["ID"] == {"$MaxLength": 36}
    assert customer["Name"] == {"$Nullable": True, "@Core.Description": NAME_DESCRIPTION}
    assert customer["Balance"] == {
        "$Type": "Edm.Decimal",
        "$Nullable": True,
        "$Precision": 18,
        "$Scale": "variable",
    }
    assert customer["Tags"] == {"$Collection": True}
    assert customer["Extra"] == {"$Type": q("Extra"), "$Nullable": True}
    assert schema["OrderLine"]["$Key"] == ["OrderID", "LineNo"]
    assert schema["Extra"] == {"$Kind": "ComplexType", "$OpenType": True}


def test_json_navigation_properties(model: Model) -> None:
    schema = metadata_json(model)[NAMESPACE]
    assert schema["Order"]["Customer"] == {
        "$Kind": "NavigationProperty",
        "$Type": q("Customer"),
        "$Partner": "Orders",
        "$ReferentialConstraint": {"CustomerID": "ID"},
    }
    assert schema["OrderLine"]["Order"]["$Nullable"] is True
    assert schema["Customer"]["Orders"] == {
        "$Kind": "NavigationProperty",
        "$Type": q("Order"),
        "$Collection": True,
        "$Partner": "Customer",
    }


def test_json_container_matches_xml_annotations(model: Model) -> None:
    container = metadata_json(model)[NAMESPACE]["Shop"]
    assert container["$Kind"] == "EntityContainer"
    assert container["Orders"]["$NavigationPropertyBinding"] == {
        "Customer": "Customers",
        "Lines": "OrderLines",
    }
    assert container["OrderLines"]["$IncludeInServiceDocument"] is False
    assert "$IncludeInServiceDocument" not in container["Orders"]
    assert container["Orders"]["@Capabilities.InsertRestrictions"] == {"Insertable": False}
    assert container["@Capabilities.SupportedFormats"] == [
        "application/json;odata.metadata=minimal"
    ]
    xml_annotations = annotations_by_target(parse(metadata_xml(model)))
    xml_terms = {target: set(terms) for target, terms in xml_annotations.items()}
    json_terms = {
        "": {key[1:] for key in container if key.startswith("@")},
        **{
            name: {key[1:] for key in container[name] if key.startswith("@")}
            for name in ("Customers", "Orders", "OrderLines")
        },
    }
    assert json_terms == xml_terms


# --------------------------------------------------------- service document


def test_service_document_lists_visible_sets(model: Model) -> None:
    context = "https://example.test/odata/$metadata"
    assert service_document(model, context) == {
        "@odata.context": context,
        "value": [
            {"name": "Customers", "kind": "EntitySet", "url": "Customers"},
            {"name": "Orders", "kind": "EntitySet", "url": "Orders"},
        ],
    }
