"""
The OASIS ABNF test cases (``tests/data/odata-abnf-testcases.json``, see
``tests/data/SOURCES.tsv``) run through `odata_klein.parser`.

Each case names an ABNF rule, an input as a client would type it, and, for an
input the rule must reject, ``FailAt``.  Inputs reach the parser as the web
layer hands them over: query options split at raw "&" and at the first "=" and
then percent-decoded; resource paths raw; the payload forms of literals (the
``...Value`` rules) as they are, since payloads are not percent-encoded.

How a rule maps onto the parser:

- query option rules (``filter``, ``expand``, ``select``, ``orderby``,
  ``search``, ``compute``, ``skiptoken``, ``queryOptions``, ...):
  `QueryParser.parse_query`;
- ``commonExpr``, ``boolCommonExpr``, ``firstMemberExpr``,
  ``propertyPathExpr``, ``isofExpr``, ``notExpr`` and the literal rules:
  `QueryParser.parse_expression` or ``parse_filter``; a literal rule accepts
  an input only if it parses as a literal of that rule's type (``-INF`` is a
  double, so the ``date`` rule rejects it);
- ``durationValue`` and ``enumValue``: the same, inside ``duration'...'`` and
  ``Namespace.Type'...'``; ``anyExpr``: after ``Items/``; ``stringInUrl``:
  inside a JSON array; ``functionParameter``: inside ``Function(...)``;
- ``resourcePath``, ``entitySetName``: `QueryParser.parse_path`;
  ``odataRelativeUri``: ``parse_path`` and ``parse_query``;
- ``searchExpr``: `QueryParser.parse_search`.

Valid inputs that the syntax tree cannot represent must raise
`NotImplementedYet` (501), never `BadRequest`; they are listed in
``NOT_IMPLEMENTED`` (96 cases).

Of the 840 cases, 145 are skipped, each with its reason:

- 130 test rules outside URL parsing: service roots (``odataUri``, 24),
  context URL fragments (``context``, 43), HTTP headers and preferences
  (``header``, ``preference``, ``prefer``, ``includeAnnotationsPreference``,
  ``maxpagesizePreference``, ``request-id``, 57), and primitive values in
  CSDL default values (``primitiveValue``, 6, with no URL counterpart);
- 5 negative cases fail only because a name is missing from the file's
  ``Constraints`` (a function import used after a segment, ``$value`` of a
  complex or stream property, a type cast repeated, a custom option name):
  the parser is model-free;
- 2 ``$entity`` cases tie the options to the path ($id required, $select
  and $expand only after a type cast): the parser reads path and options
  separately;
- 2 cases contain a raw "#", which never reaches the server
  (``$search=#1``, ``$metadata#...``);
- 1 case has a raw "&" inside one option, which the web layer splits first;
- 2 cases tell an encoded ";" (``%3B``) from a raw one in ``$search``:
  decoded values cannot;
- 2 cases repeat ``$format``: the ABNF allows it, but a system query option
  must not be given twice, and the parser refuses it;
- 1 case (``booleanValue``: ``tRUe``) is the case-sensitive payload form of a
  literal that URLs accept in any case.

No case is skipped for geography or geometry: their literals are parsed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional
from urllib.parse import unquote

import pytest

from odata_klein.errors import BadRequest, NotImplementedYet
from odata_klein.parser import QueryParser
from odata_klein.syntax import EnumLiteral, Literal
from odata_klein.syntax import Path as PathExpr

CASES_FILE = Path(__file__).parent / "data" / "odata-abnf-testcases.json"
CASES: list[dict[str, Any]] = json.loads(CASES_FILE.read_text(encoding="utf-8"))["TestCases"]

OUT_OF_SCOPE = {
    "odataUri": "service roots (scheme, host, port) are the web layer's",
    "context": "context URL fragments are written by the service, not parsed",
    "header": "HTTP headers are not URLs",
    "preference": "HTTP headers are not URLs",
    "prefer": "HTTP headers are not URLs",
    "includeAnnotationsPreference": "HTTP headers are not URLs",
    "maxpagesizePreference": "HTTP headers are not URLs",
    "request-id": "HTTP headers are not URLs",
    "primitiveValue": "CSDL default values have no URL counterpart",
}

_MODEL = "fails only for a name missing from Constraints; the parser is model-free"
SKIPPED: dict[tuple[str, str], str] = {
    ("odataRelativeUri", "Categories/TheBestProduct()"): _MODEL,
    ("odataRelativeUri", "Categories(1)/Address/$value"): _MODEL,
    ("odataRelativeUri", "Categories(1)/Thumbnail/$value"): _MODEL,
    ("odataRelativeUri", "Products(1)/Model.BestSellingProduct/Model.BestSellingProduct"): _MODEL,
    ("queryOptions", "$search=more&more"): _MODEL,
    (
        "odataRelativeUri",
        "$entity?$id=http://myservice/Customers('ALFKI')&$select=CompanyName,ContactName&$expand=Orders",
    ): "ties the options to the path, which the parser reads separately",
    ("odataRelativeUri", "$entity?$format=json"): "ties the options to the path, which the parser reads separately",
    ("queryOptions", "$search=#1"): "a raw '#' never reaches the server",
    ("odataRelativeUri", "$metadata#Customers(Address,Orders)"): "a raw '#' never reaches the server",
    ("skiptoken", "$skiptoken=Not&this"): "a raw '&' splits the query before the parser sees it",
    ("queryOptions", "$search=a%3Bb"): "decoded values cannot tell %3B from ';'",
    ("queryOptions", "$expand=Manager($search=a%3Bb)"): "decoded values cannot tell %3B from ';'",
    (
        "queryOptions",
        "$format=json&$Format=atom&$format=xml&$format=text/html",
    ): "a system query option must not be given twice",
    (
        "queryOptions",
        "$format=JSON&$format=Atom&$format=XML&$format=text/html",
    ): "a system query option must not be given twice",
    ("booleanValue", "tRUe"): "URL literals accept booleans in any case; this is the payload form",
}

# Valid inputs the syntax tree cannot represent, by what the 501 says.
NOT_IMPLEMENTED: dict[str, list[tuple[str, str]]] = {
    "calls of functions defined by a model": [
        ("odataRelativeUri", "ProductsByCategoryId(categoryId=2)(2)"),
        ("resourcePath", "Products/Model.MostExpensive()"),
        ("odataRelativeUri", "Categories(1)/Products/Model.AllOrders()"),
        ("odataRelativeUri", "Categories(1)/Products/Model.AllOrders()/$count"),
        ("odataRelativeUri", "Categories(1)/Products/Model.MostExpensive()"),
        ("odataRelativeUri", "TheBestProduct()"),
        ("odataRelativeUri", "TheMostPopularAddress()"),
        ("odataRelativeUri", "TheMostPopularAddresses()"),
        ("odataRelativeUri", "TheMostPopularName()"),
        ("odataRelativeUri", "TheMostPopularName()/$value"),
        ("odataRelativeUri", "TheMostPopularNames()"),
        ("odataRelativeUri", "Customers/Model.MostPopularAddress()"),
        ("odataRelativeUri", "Customers/Model.MostPopularAddresses()"),
        ("odataRelativeUri", "Customers/Model.MostPopularAddresses()/$count"),
        ("odataRelativeUri", "Customers/Model.MostPopularAddresses()/Model.AddressWithLocation"),
        ("odataRelativeUri", "Customers/Model.MostPopularAddresses()/Model.AddressWithLocation/$count"),
        ("odataRelativeUri", "Customers/MostPopularAddresses()/AddressWithLocation/$count"),
        ("odataRelativeUri", "Customers/Model.MostPopularAddresses()/Model.MostPopularNames()"),
        ("odataRelativeUri", "Customers/MostPopularAddresses()/MostPopularNames()"),
        ("odataRelativeUri", "Customers/Model.MostPopularName()"),
        ("odataRelativeUri", "Customers/Model.MostPopularName()/$value"),
        ("odataRelativeUri", "Customers/Model.MostPopularNames()"),
        ("odataRelativeUri", "Customers/Model.MostPopularNames()/$count"),
        ("odataRelativeUri", "TheMostPopularAddresses()?$expand=Model.AddressWithLocation/Country"),
        ("firstMemberExpr", "Thumbnail/Model.Available()"),
        ("odataRelativeUri", "Employees?$filter=City eq $root/TheMostPopularAddress()/City"),
        (
            "odataRelativeUri",
            "Suppliers?$filter=$root/Sales/Special.MostPopularCategory(Where=ZipCode) eq 'Food'",
        ),
        (
            "odataRelativeUri",
            "Suppliers?$filter=Special.MostPopularCategory(What=$root/Sales,Where=ZipCode) eq 'Food'",
        ),
        ("commonExpr", "Model.Available()"),
        ("commonExpr", "Model.MostPopularName()"),
        ("commonExpr", "Products/Model.Available()"),
        ("commonExpr", "Products/Model.BestProduct()/Model.MostPopularName()"),
        ("commonExpr", "Products/BestProduct()/MostPopularName()"),
        ("commonExpr", "Products/Model.BestProduct()/Name"),
        ("commonExpr", "Products/Model.BestProduct()/Model.BestSellingProduct/Name"),
        ("commonExpr", "Products/Model.BestProduct()/Name/Model.Available()"),
        ("commonExpr", "Products/Model.BestProduct()/Address"),
        ("commonExpr", "Products/Model.BestProduct()/Address/Street"),
        ("commonExpr", "Products/Model.BestProduct()/Addresses"),
        ("commonExpr", "Products/Model.BestProduct()/Addresses/Model.MostPopularName()"),
        ("commonExpr", "Products/Model.BestProduct()/EmailAddresses"),
        ("commonExpr", "Products/Model.BestProduct()/Thumbnail"),
        ("commonExpr", "Products/Model.BestProduct()/EmailAddresses/any()"),
        ("commonExpr", "Products/Model.BestProduct()/EmailAddresses/all(lambda:true)"),
        ("commonExpr", "Products/Model.ProductsByColor(color='green')/Model.MostPopularName()"),
        (
            "commonExpr",
            "Products/Model.ProductsByColor(color='green')/Model.BestSellingProduct/Model.MostPopularName()",
        ),
        (
            "commonExpr",
            "Products/Model.ProductsByColor(color=@color)/Model.BestSellingProduct/Model.MostPopularName()",
        ),
        ("commonExpr", "Products/Model.ProductsByColor()/all(lambda:true)"),
        ("commonExpr", "Items/Model.MostPopularAddress()/Street"),
        ("commonExpr", "Items/Model.MostPopularAddress()/Address"),
        ("commonExpr", "Items/Model.MostPopularAddress()/Address/Model.Available()"),
        ("commonExpr", "Items/Model.MostPopularAddresses()/$count"),
        ("commonExpr", "Items/Model.MostPopularAddresses()/Model.MostPopularName()"),
        ("commonExpr", "Items/Model.MostPopularNames()/$count"),
        ("commonExpr", "Items/Model.MostPopularNames()/Model.MostPopularName()"),
        ("commonExpr", "Items/MostPopularNames()/MostPopularName()"),
        ("commonExpr", "Items/Model.MostPopularName()/Model.MostPopularName()"),
        ("commonExpr", "Items/MostPopularName()/MostPopularName()"),
        ("commonExpr", 'Products/Model.ProductsByColor(colors=["red","green","blue"])'),
        ("commonExpr", 'Products/Model.ProductsByColor(colors=[ "red", "green" , "blue" ])'),
        ("commonExpr", 'Products/Model.ProductsByColor(colors=%5B%20"red",%20"green"%20,"blue"%20%5D)'),
        ("commonExpr", 'Model.Available(complex={"Name":"Value"})'),
        ("commonExpr", 'Model.Available(complex={ "Name" : "double quote (\\") in value" })'),
        ("commonExpr", 'Model.Available(complex=%7B %22Name%22 : "double%20quote (%5C%22) in value" %7D)'),
        ("commonExpr", "Model.PhoneticallySimilar(Word1=Name,Word2=Supplier/Name)"),
        ("queryOptions", "$filter=Model.PhoneticallySimilar(Number=5 add 3)"),
        ("queryOptions", "$filter=$it/Model.PhoneticallySimilar(Number=5 add 3)"),
    ],
    "$filter path segments": [
        ("odataRelativeUri", "Products/$filter(@foo)?@foo=Age gt 3"),
        ("odataRelativeUri", "Products/$filter(Age gt 3)"),
        ("odataRelativeUri", "Products/$filter(@foo)/$filter(@bar)?@foo=Age gt 3&@bar=Price lt 5"),
        ("odataRelativeUri", "Products/$filter(Age gt 3)/$filter(Price lt 5)"),
        ("odataRelativeUri", "Products/$filter(@foo)/$filter(@bar)/$ref?@foo=Age gt 3&@bar=Price lt 5"),
        ("odataRelativeUri", "Products/$filter(@foo)/$filter(@bar)/$count?@foo=Age gt 3&@bar=Price lt 5"),
        (
            "odataRelativeUri",
            "Products/$filter(@foo)/$filter(@bar)/$count?@foo=Age gt 3&@bar=Price lt 5&$filter=Price lt 6",
        ),
        (
            "odataRelativeUri",
            "Products/$filter(@foo)/Special.ProductsByColor(color='red')/$filter(@bar)"
            "?@foo=Age gt 3&@bar=Price lt 5",
        ),
        (
            "odataRelativeUri",
            "Products/$filter(@foo)/ProductsByColor(color='red')/$filter(@bar)?@foo=Age gt 3&@bar=Price lt 5",
        ),
        ("odataRelativeUri", "Products/$filter(@foo)/Special.Cluster?@foo=Age gt 3"),
        ("propertyPathExpr", "Products/$filter(Age gt 3)(ID='Sugar')"),
        ("odataRelativeUri", "Categories?$filter=Products/$filter(Age gt 3)/$count lt 10"),
        ("filter", "$filter=Addresses/$filter(endswith(Street,'St'))/$count lt 10"),
        ("odataRelativeUri", "Products/$filter(@foo)/$each"),
        ("odataRelativeUri", "Products/$filter(@foo)/$each/Special.Discount?@foo=Age gt 3"),
    ],
    "$count with query options": [
        ("filter", "$filter=Products/$count($filter=Price gt 5.00) gt 2"),
    ],
    "$crossjoin": [
        (
            "odataRelativeUri",
            "$crossjoin(Customers,Countries)?$expand=Customers($select=Name),Countries($select=Name)"
            "&$filter=Customers/CountryCode eq Countries/CountryCode and Countries/Name eq 'USA'",
        ),
        ("odataRelativeUri", "$crossjoin(Customers,Countries)/$query"),
    ],
    "$id system query option": [
        ("odataRelativeUri", "$entity?$id=http://host/path"),
        ("odataRelativeUri", "$entity?$id=urn:some:id"),
        ("odataRelativeUri", "$entity?id=urn:some:id"),
        (
            "odataRelativeUri",
            "$entity/Model.Customer?$id=http://myservice/Customers('ALFKI')"
            "&$select=CompanyName,ContactName&$expand=Orders",
        ),
        ("odataRelativeUri", "Categories(1)/Products/$ref?$id=Products(0)"),
    ],
    "function signatures in $select": [
        ("select", "$select=Model.ActionName,Model.MostPopularName(Location,Kind)"),
        ("select", "$select=ActionName,MostPopularName(Location,Kind)"),
    ],
    "dates outside the years 1 to 9999": [
        ("date", "0000-01-01"),
        ("date", "-10000-04-01"),
        ("dateTimeOffsetValue", "0000-01-01T00:00Z"),
        ("dateTimeOffsetValue", "-10000-04-01T00:00Z"),
    ],
}
_NOT_IMPLEMENTED_BY_CASE = {case: what for what, cases in NOT_IMPLEMENTED.items() for case in cases}

# Rules whose inputs are read as one expression after percent-decoding.
_EXPRESSION_RULES = {
    "commonExpr", "boolcommonExpr", "firstMemberExpr", "propertyPathExpr", "isofExpr", "notExpr",
    "primitiveLiteral", "null", "boolean", "guid", "date", "dateTimeOffsetLiteral", "dateTimeOffsetValueInUrl",
    "timeOfDayLiteral", "decimalLiteral", "doubleLiteral", "singleLiteral", "sbyteLiteral", "int16Literal",
    "int32Literal", "int64Literal", "stringLiteral", "durationLiteral", "enumLiteral", "binaryLiteral",
}  # fmt: skip
# The payload forms of literals: not percent-encoded, read as they are.
_VALUE_RULES = {
    "booleanValue", "dateValue", "dateTimeOffsetValue", "timeOfDayValue", "decimalValue", "doubleValue",
    "singleValue", "byteValue", "sbyteValue", "int16Value", "int32Value", "int64Value",
}  # fmt: skip
_QUERY_RULES = {
    "queryOptions", "systemQueryOption", "customQueryOption", "filter", "expand", "select", "orderby",
    "orderBy", "search", "compute", "skiptoken", "deltatoken",
}  # fmt: skip

_NUMBERS = {"Edm.Int32", "Edm.Int64", "Edm.Decimal", "Edm.Double"}
# The literal types each literal rule accepts.
_LITERAL_TYPES: dict[str, set[Optional[str]]] = {
    "null": {None},
    "boolean": {"Edm.Boolean"},
    "booleanValue": {"Edm.Boolean"},
    "guid": {"Edm.Guid"},
    "date": {"Edm.Date"},
    "dateValue": {"Edm.Date"},
    "dateTimeOffsetLiteral": {"Edm.DateTimeOffset"},
    "dateTimeOffsetValue": {"Edm.DateTimeOffset"},
    "dateTimeOffsetValueInUrl": {"Edm.DateTimeOffset"},
    "timeOfDayLiteral": {"Edm.TimeOfDay"},
    "timeOfDayValue": {"Edm.TimeOfDay"},
    "stringLiteral": {"Edm.String"},
    # Without its prefix a duration is a string literal, as the ABNF orders them.
    "durationLiteral": {"Edm.Duration", "Edm.String"},
    "durationValue": {"Edm.Duration"},
    "binaryLiteral": {"Edm.Binary"},
    **{
        rule: set(_NUMBERS)
        for rule in (
            "decimalLiteral", "doubleLiteral", "singleLiteral", "sbyteLiteral", "int16Literal",
            "int32Literal", "int64Literal", "decimalValue", "doubleValue", "singleValue", "byteValue",
            "sbyteValue", "int16Value", "int32Value", "int64Value",
        )
    },
}  # fmt: skip


def split_query(query: str) -> list[tuple[str, str]]:
    """As the web layer does: split at raw "&" and the first "=", then decode once."""
    pairs = []
    for part in query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((unquote(name), unquote(value)))
    return pairs


def run(parser: QueryParser, rule: str, text: str) -> object:
    if rule in _EXPRESSION_RULES or rule.startswith(("geography", "geometry")):
        return parser.parse_expression(unquote(text))
    if rule in _VALUE_RULES or rule == "odataIdentifier":
        return parser.parse_expression(text)
    if rule == "boolCommonExpr":
        return parser.parse_filter(unquote(text))
    if rule == "durationValue":
        return parser.parse_expression(f"duration'{text}'")
    if rule == "enumValue":
        return parser.parse_expression(f"Namespace.Type'{text}'")
    if rule == "anyExpr":
        return parser.parse_expression("Items/" + unquote(text))
    if rule == "stringInUrl":
        return parser.parse_expression("[" + unquote(text) + "]")
    if rule == "searchExpr":
        return parser.parse_search(unquote(text))
    if rule in _QUERY_RULES:
        return parser.parse_query(split_query(text))
    if rule in ("resourcePath", "entitySetName"):
        return parser.parse_path(text)
    if rule == "functionParameter":
        return parser.parse_path(f"Function({text})")
    assert rule == "odataRelativeUri", rule
    path, _, query = text.partition("?")
    return parser.parse_path(path), parser.parse_query(split_query(query))


def matches_rule(rule: str, text: str, result: object) -> bool:
    """Whether what the parser made of ``text`` is what ``rule`` describes."""
    if rule in _LITERAL_TYPES:
        return isinstance(result, Literal) and result.type in _LITERAL_TYPES[rule]
    if rule.startswith(("geography", "geometry")):
        return isinstance(result, Literal) and result.type == "Edm." + rule[0].upper() + rule[1:]
    if rule == "enumLiteral":
        return isinstance(result, EnumLiteral) or (isinstance(result, Literal) and result.type == "Edm.String")
    if rule == "enumValue":
        return isinstance(result, EnumLiteral)
    if rule == "odataIdentifier":
        return (
            isinstance(result, PathExpr)
            and result.root is None
            and [segment.name for segment in result.segments] == [text]
        )
    return True


def accepts(parser: QueryParser, rule: str, text: str) -> bool:
    try:
        result = run(parser, rule, text)
    except BadRequest:
        return False
    return matches_rule(rule, text, result)


def _case_id(index: int, case: dict[str, Any]) -> str:
    name = re.sub(r"[^0-9A-Za-z$]+", "-", case["Name"]).strip("-")
    return f"{index:03d}-{case['Rule']}-{name[:50]}"


@pytest.fixture(scope="module")
def parser() -> QueryParser:
    return QueryParser()


@pytest.mark.parametrize(
    "case", CASES, ids=[_case_id(index, case) for index, case in enumerate(CASES)]
)
def test_abnf_case(parser: QueryParser, case: dict[str, Any]) -> None:
    rule, text = case["Rule"], case["Input"]
    if rule in OUT_OF_SCOPE:
        pytest.skip(OUT_OF_SCOPE[rule])
    if (rule, text) in SKIPPED:
        pytest.skip(SKIPPED[(rule, text)])
    unsupported = _NOT_IMPLEMENTED_BY_CASE.get((rule, text))
    if unsupported is not None:
        with pytest.raises(NotImplementedYet, match=re.escape(unsupported)):
            run(parser, rule, text)
    elif "FailAt" in case:
        assert not accepts(parser, rule, text)
    else:
        assert accepts(parser, rule, text)


def test_the_lists_of_exceptions_name_real_cases() -> None:
    """Every skipped or 501 case exists in the file, and the docstring's counts hold."""
    cases = {(case["Rule"], case["Input"]) for case in CASES}
    assert set(SKIPPED) <= cases
    assert set(_NOT_IMPLEMENTED_BY_CASE) <= cases
    out_of_scope = [case for case in CASES if case["Rule"] in OUT_OF_SCOPE]
    assert (len(CASES), len(out_of_scope), len(SKIPPED), len(_NOT_IMPLEMENTED_BY_CASE)) == (840, 130, 15, 96)
