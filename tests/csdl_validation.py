"""
Validation of metadata documents against the OASIS CSDL schemas in
``tests/data/csdl`` (see its SOURCES.tsv).

Each function raises `InvalidCsdl`, whose message lists every violation,
or returns None.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Mapping

import regex  # type: ignore[import-untyped]  # types-regex is not a test dependency
from jsonschema import Draft7Validator, ValidationError, validators  # type: ignore[import-untyped]  # types-jsonschema is not a test dependency
from lxml import etree  # type: ignore[import-untyped]  # lxml-stubs is not a test dependency

CSDL_DATA = Path(__file__).parent / "data" / "csdl"

_SECURE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


class InvalidCsdl(AssertionError):
    """A document the CSDL schemas reject."""


def _xml_schema(version: str) -> etree.XMLSchema:
    # The 4.0 edmx.xsd imports the edm namespace without saying where it is:
    # a driver schema imports both files, edm first, so the edmx import finds
    # the namespace already loaded.
    imports = "".join(
        f'<xs:import namespace="http://docs.oasis-open.org/odata/ns/{name}" '
        f'schemaLocation="{(CSDL_DATA / version / f"{name}.xsd").as_uri()}"/>'
        for name in ("edm", "edmx")
    )
    driver = f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">{imports}</xs:schema>'
    return etree.XMLSchema(etree.fromstring(driver, _SECURE_PARSER))


def _validate_xml(xml_bytes: bytes, version: str) -> None:
    try:
        document = etree.fromstring(xml_bytes, _SECURE_PARSER)
    except etree.XMLSyntaxError as error:
        raise InvalidCsdl(f"not well-formed XML: {error}") from error
    schema = _xml_schema(version)
    if not schema.validate(document):
        problems = "\n".join(f"  line {entry.line}: {entry.message}" for entry in schema.error_log)
        raise InvalidCsdl(f"invalid CSDL XML {version}:\n{problems}")


def validate_xml_40(xml_bytes: bytes) -> None:
    _validate_xml(xml_bytes, "v4.0")


def validate_xml_401(xml_bytes: bytes) -> None:
    _validate_xml(xml_bytes, "v4.01")


# The CSDL JSON schema's patterns use Unicode property classes (\p{L}) that
# Python's re rejects: the three draft-7 keywords that match patterns are
# re-implemented with the regex module.


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not regex.search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: Mapping[str, Any], instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for name, value in instance.items():
            if regex.search(pattern, name):
                yield from validator.descend(value, subschema, path=name, schema_path=pattern)


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    declared = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = [
        name
        for name in instance
        if name not in declared and not any(regex.search(p, name) for p in patterns)
    ]
    if validator.is_type(additional, "object"):
        for name in extras:
            yield from validator.descend(instance[name], additional, path=name)
    elif additional is False and extras:
        yield ValidationError(f"unexpected members {sorted(extras)!r}")


_UnicodeDraft7Validator = validators.extend(
    Draft7Validator,
    {
        "pattern": _pattern,
        "patternProperties": _pattern_properties,
        "additionalProperties": _additional_properties,
    },
)


def validate_json(doc: Mapping[str, Any]) -> None:
    schema = json.loads((CSDL_DATA / "v4.01" / "csdl.schema.json").read_text("utf-8"))
    errors = sorted(
        _UnicodeDraft7Validator(schema).iter_errors(doc),
        key=lambda error: [str(step) for step in error.path],
    )
    if errors:
        problems = "\n".join(
            f"  at /{'/'.join(map(str, error.path))}: {error.message}" for error in errors
        )
        raise InvalidCsdl(f"invalid CSDL JSON:\n{problems}")
