"""The OData URL parser: from query options and paths to `odata_klein.syntax` trees."""

from __future__ import annotations

import datetime
import re
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from parsimonious.expressions import Regex

from odata_klein.errors import BadRequest, ErrorDetail, NotImplementedYet, ODataError
from odata_klein.parser import (
    FUNCTION_ARITY,
    MAX_DEPTH,
    MAX_DIGITS,
    MAX_NESTING,
    ODataSyntaxError,
    QueryParser,
    grammar_expressions,
)
from odata_klein.syntax import (
    Alias,
    BinaryOp,
    Call,
    ComputeItem,
    EnumLiteral,
    ExpandItem,
    Expr,
    In,
    JsonValue,
    KeyPredicate,
    Lambda,
    ListExpr,
    Literal,
    OrderByItem,
    Path,
    PathSegment,
    QueryOptions,
    ResourcePath,
    SearchBinary,
    SearchNot,
    SearchTerm,
    SelectItem,
    TypeName,
    UnaryOp,
)


@pytest.fixture(scope="module")
def parser() -> QueryParser:
    return QueryParser()


def path(text: str, root: str | None = None) -> Path:
    return Path(tuple(PathSegment(name) for name in text.split("/")) if text else (), root=root)


def lit(value: Any, type_name: str | None) -> Literal:
    return Literal(value, type_name)


def int32(value: int) -> Literal:
    return Literal(value, "Edm.Int32")


def string(value: str) -> Literal:
    return Literal(value, "Edm.String")


def op(name: str, left: Expr, right: Expr) -> BinaryOp:
    return BinaryOp(name, left, right)


def syntax_error(parse: Callable[[], object]) -> ODataSyntaxError:
    with pytest.raises(ODataSyntaxError) as caught:
        parse()
    return caught.value


# --- Precedence -----------------------------------------------------------------------------


A, B, C, D = path("A"), path("B"), path("C"), path("D")


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("A add B mul C", op("add", A, op("mul", B, C))),
        ("A mul B add C", op("add", op("mul", A, B), C)),
        ("A sub B sub C", op("sub", op("sub", A, B), C)),
        ("A div B divby C mod D", op("mod", op("divby", op("div", A, B), C), D)),
        ("A add B gt C", op("gt", op("add", A, B), C)),
        ("A gt B eq C lt D", op("eq", op("gt", A, B), op("lt", C, D))),
        ("A eq B and C ne D", op("and", op("eq", A, B), op("ne", C, D))),
        ("A or B and C", op("or", A, op("and", B, C))),
        ("A and B or C", op("or", op("and", A, B), C)),
        ("(A or B) and C", op("and", op("or", A, B), C)),
        ("A mul (B add C)", op("mul", A, op("add", B, C))),
        # Unary operators bind tighter than every binary operator but "has" and "in".
        ("not A eq B", op("eq", UnaryOp("not", A), B)),
        ("not (A eq B)", UnaryOp("not", op("eq", A, B))),
        ("-A mul B", op("mul", UnaryOp("-", A), B)),
        ("- A", UnaryOp("-", A)),
        ("not not A", UnaryOp("not", UnaryOp("not", A))),
        ("not(A)", UnaryOp("not", A)),
        ("-A in (1,2)", UnaryOp("-", In(A, (int32(1), int32(2))))),
        ("not A has Ns.E'x'", UnaryOp("not", op("has", A, EnumLiteral("Ns.E", ("x",))))),
        ("(-A) in (1)", In(UnaryOp("-", A), (int32(1),))),
        ("A add B in (1)", op("add", A, In(B, (int32(1),)))),
        ("A in (B) eq true", op("eq", In(A, B), lit(True, "Edm.Boolean"))),
        ("A EQ B AND C Or D", op("or", op("and", op("eq", A, B), C), D)),
    ],
)
def test_precedence(parser: QueryParser, text: str, tree: Expr) -> None:
    assert parser.parse_filter(text) == tree


def test_chains_of_and_and_or_are_balanced(parser: QueryParser) -> None:
    a, b, c, d, e = (path(name) for name in "abcde")
    assert parser.parse_filter("a and b and c") == op("and", op("and", a, b), c)
    assert parser.parse_filter("a or b or c or d") == op("or", op("or", a, b), op("or", c, d))
    assert parser.parse_filter("a or b or c or d or e") == op("or", op("or", op("or", a, b), c), op("or", d, e))


def test_a_long_or_list_makes_a_shallow_tree(parser: QueryParser) -> None:
    text = " or ".join(f"JobID eq '{n}'" for n in range(1000))
    tree = parser.parse_filter(text)
    depth = 0
    while isinstance(tree, BinaryOp) and tree.op == "or":
        tree, depth = tree.left, depth + 1
    assert depth == 10


def test_operator_positions(parser: QueryParser) -> None:
    tree = parser.parse_filter("Name eq 'x' and not Hours gt 2")
    assert isinstance(tree, BinaryOp) and tree.pos == 12
    assert isinstance(tree.left, BinaryOp) and tree.left.pos == 5
    assert isinstance(tree.right, BinaryOp) and tree.right.pos == 26
    assert isinstance(tree.right.left, UnaryOp) and tree.right.left.pos == 16
    assert [tree.left.left.pos, tree.left.right.pos] == [0, 8]


# --- Literals -----------------------------------------------------------------------------------


UTC = datetime.timezone.utc
PLUS_ONE = datetime.timezone(datetime.timedelta(hours=1))


@pytest.mark.parametrize(
    ("text", "value", "type_name"),
    [
        ("null", None, None),
        ("true", True, "Edm.Boolean"),
        ("FALSE", False, "Edm.Boolean"),
        ("42", 42, "Edm.Int32"),
        ("-2147483648", -(2**31), "Edm.Int32"),
        ("2147483648", 2**31, "Edm.Int64"),
        ("+7", 7, "Edm.Int32"),
        ("-9223372036854775808", -(2**63), "Edm.Int64"),
        ("9223372036854775808", Decimal(2**63), "Edm.Decimal"),
        ("1.50", Decimal("1.50"), "Edm.Decimal"),
        ("-0.5", Decimal("-0.5"), "Edm.Decimal"),
        ("1e3", 1000.0, "Edm.Double"),
        ("-1.5E-2", -0.015, "Edm.Double"),
        ("INF", float("inf"), "Edm.Double"),
        ("-INF", float("-inf"), "Edm.Double"),
        ("'It''s'", "It's", "Edm.String"),
        ("''", "", "Edm.String"),
        ("'a&b#c/d'", "a&b#c/d", "Edm.String"),
        ("duration'P1DT2H3M4.5S'", datetime.timedelta(days=1, hours=2, minutes=3, seconds=4.5), "Edm.Duration"),
        ("duration'-PT0.1234567S'", -datetime.timedelta(microseconds=123456), "Edm.Duration"),
        ("Duration'P2D'", datetime.timedelta(days=2), "Edm.Duration"),
        ("2026-02-03", datetime.date(2026, 2, 3), "Edm.Date"),
        (
            "2026-02-03T00:00:00+01:00",
            datetime.datetime(2026, 2, 3, tzinfo=PLUS_ONE),
            "Edm.DateTimeOffset",
        ),
        ("2026-02-03T10:20Z", datetime.datetime(2026, 2, 3, 10, 20, tzinfo=UTC), "Edm.DateTimeOffset"),
        (
            "2026-02-03t10:20:30.123456789012z",
            datetime.datetime(2026, 2, 3, 10, 20, 30, 123456, tzinfo=UTC),
            "Edm.DateTimeOffset",
        ),
        (
            "2026-02-03T10:20:30.5-05:30",
            datetime.datetime(
                2026, 2, 3, 10, 20, 30, 500000, tzinfo=datetime.timezone(-datetime.timedelta(hours=5, minutes=30))
            ),
            "Edm.DateTimeOffset",
        ),
        (
            "1972-06-30T23:59:60Z",
            datetime.datetime(1972, 6, 30, 23, 59, 59, 999999, tzinfo=UTC),
            "Edm.DateTimeOffset",
        ),
        ("13:45", datetime.time(13, 45), "Edm.TimeOfDay"),
        ("13:45:07.25", datetime.time(13, 45, 7, 250000), "Edm.TimeOfDay"),
        (
            "01234567-89ab-cdef-0123-456789ABCDEF",
            uuid.UUID("01234567-89ab-cdef-0123-456789abcdef"),
            "Edm.Guid",
        ),
        ("binary'Zm9vYg'", b"foob", "Edm.Binary"),
        ("BINARY'Zm9vYmE='", b"fooba", "Edm.Binary"),
        ("binary''", b"", "Edm.Binary"),
        ("binary'-_8'", b"\xfb\xff", "Edm.Binary"),
        ("geography'SRID=4326;Point(142.1 64.1)'", "SRID=4326;Point(142.1 64.1)", "Edm.GeographyPoint"),
        ("geometry'SRID=0;MultiPoint()'", "SRID=0;MultiPoint()", "Edm.GeometryMultiPoint"),
        (
            "geography'SRID=0;Polygon((1 1,1 2,2 2,1 1))'",
            "SRID=0;Polygon((1 1,1 2,2 2,1 1))",
            "Edm.GeographyPolygon",
        ),
    ],
)
def test_literal_values(parser: QueryParser, text: str, value: Any, type_name: str | None) -> None:
    assert parser.parse_expression(text) == Literal(value, type_name)


def test_nan_is_a_double(parser: QueryParser) -> None:
    literal = parser.parse_expression("NaN")
    assert isinstance(literal, Literal) and literal.type == "Edm.Double"
    assert literal.value != literal.value


def test_literal_positions(parser: QueryParser) -> None:
    tree = parser.parse_filter("Date ge 2026-02-03T00:00:00+01:00")
    assert isinstance(tree, BinaryOp) and tree.right.pos == 8


def test_enumeration_literals(parser: QueryParser) -> None:
    assert parser.parse_expression("Sales.Pattern'Yellow'") == EnumLiteral("Sales.Pattern", ("Yellow",))
    assert parser.parse_expression("Sales.Pattern'Solid,Yellow,+42,-1'") == EnumLiteral(
        "Sales.Pattern", ("Solid", "Yellow", "42", "-1")
    )
    # Without a type name an enumeration literal reads as a string, as the ABNF orders them.
    assert parser.parse_expression("'Yellow'") == string("Yellow")
    assert parser.parse_expression("'P1D'") == string("P1D")


def test_json_arrays_and_objects(parser: QueryParser) -> None:
    assert parser.parse_expression('["a", \'b\', 1, null, [true]]') == ListExpr(
        (string("a"), string("b"), int32(1), lit(None, None), ListExpr((lit(True, "Edm.Boolean"),)))
    )
    assert parser.parse_expression('{ "Name" : "x\\"y", "Tags":["t"], "Sum": 2 add 3, "@odata.id":"u" }') == JsonValue(
        (
            ("Name", string('x"y')),
            ("Tags", ListExpr((string("t"),))),
            ("Sum", op("add", int32(2), int32(3))),
            ("@odata.id", string("u")),
        )
    )
    assert parser.parse_expression("{}") == JsonValue(())
    assert parser.parse_expression("[]") == ListExpr(())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-02-30", "Syntax error in expression at position 0: '2026-02-30' is not a date of the calendar"),
        ("2026-13-01", "Syntax error in expression at position 4: expected an operator or end of input after "
         "'2026', found '-13-01'"),
        ("24:00", "Syntax error in expression at position 2: expected an operator or end of input after '24', "
         "found ':00'"),
        ("'O'Neil'", "Syntax error in expression at position 3: expected an operator or end of input after "
         "\"'O'\", found 'Neil'"),
        # A literal with a prefix that does not follow it reads as a name.
        ("binary'Zh'", "Syntax error in expression at position 6: expected an operator, '(' or end of input "
         "after 'binary', found \"'Zh'\""),
        ("duration'P1Y'", "Syntax error in expression at position 8: expected an operator, '(' or end of input "
         "after 'duration', found \"'P1Y'\""),
        ("2026-02-03T10:00:00", "Syntax error in expression at position 10: expected an operator or end of input "
         "after '2026-02-03', found 'T10:00:00'"),
        ("1.", "Syntax error in expression at position 0: expected an expression, found '1.'"),
        ("10:00:00.1234567890123", "Syntax error in expression at position 21: expected an operator or end of "
         "input after '00.123456789012', found '3'"),
    ],
)
def test_invalid_literals(parser: QueryParser, text: str, message: str) -> None:
    assert syntax_error(lambda: parser.parse_expression(text)).message == message


LONG = "1" * 5000  # Python refuses int() of over 4,300 digits


@pytest.mark.parametrize(
    "option, text",
    [
        ("$filter", f"Hours lt {LONG}"),
        ("$filter", f"Hours lt -{LONG}.5"),
        ("$filter", f"Hours lt 1e{LONG}"),
        ("$filter", f"Date eq {LONG}-01-01"),
        ("$filter", f"Hours lt duration'P{LONG}D'"),
        ("$filter", f"substring(Comment,{LONG}) eq 'x'"),
        ("$filter", f"Hours in (1,{LONG})"),
        ("$top", LONG),
        ("$skip", LONG),
        ("$expand", f"Job($levels={LONG})"),
        ("$compute", f"Hours mul {LONG} as X"),
    ],
)
def test_numbers_of_thousands_of_digits_are_400_not_500(parser: QueryParser, option: str, text: str) -> None:
    error = syntax_error(lambda: parser.parse_query([(option, text)]))
    assert f"numbers may have at most {MAX_DIGITS} digits, this one has 5000" in error.message


def test_a_number_of_the_most_digits_is_read() -> None:
    digits = "9" * MAX_DIGITS
    assert QueryParser().parse_expression(digits) == Literal(Decimal(digits), "Edm.Decimal", pos=0)
    assert QueryParser().parse_query([("$top", digits)]).top == int(digits)


def test_keys_of_thousands_of_digits_are_400(parser: QueryParser) -> None:
    assert "at most" in syntax_error(lambda: parser.parse_path(f"/TimeEntries({LONG})")).message


def test_threads_may_share_a_parser() -> None:
    # The service parses long URLs in worker threads; the cache is shared.
    parser = QueryParser(cache_size=8)
    texts = [f"Hours gt {i} and JobID eq 'j{i % 13}'" for i in range(400)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parsed = list(pool.map(parser.parse_filter, texts * 3))
    reference = QueryParser()
    assert parsed == [reference.parse_filter(text) for text in texts * 3]


def test_the_grammar_s_terminals_are_matched_by_the_standard_library(parser: QueryParser) -> None:
    # The regex module's match() scans for a required literal to the end of
    # the text first, which made long in-lists quadratic to parse.
    terminals = [e for e in grammar_expressions(parser._grammar) if isinstance(e, Regex)]
    assert terminals and all(isinstance(e.re, re.Pattern) for e in terminals)


def test_dates_outside_python_s_range_are_not_implemented(parser: QueryParser) -> None:
    with pytest.raises(NotImplementedYet, match="at position 5: dates outside the years 1 to 9999"):
        parser.parse_filter("D eq 0000-01-01T00:00Z")


# --- Functions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FUNCTION_ARITY))
def test_every_canonical_function(parser: QueryParser, name: str) -> None:
    least, most = FUNCTION_ARITY[name]
    args = ", ".join(f"P{n}" for n in range(most))
    mixed_case = "".join(c.upper() if n % 2 else c for n, c in enumerate(name))
    assert parser.parse_expression(f"{mixed_case}({args})") == Call(
        name, tuple(path(f"P{n}") for n in range(most))
    )
    if least > 0:
        too_few = ", ".join(f"P{n}" for n in range(least - 1))
        error = syntax_error(lambda: parser.parse_expression(f"{name}({too_few})"))
        assert f"{name} takes {least}" in error.message


def test_substring_takes_two_or_three_arguments(parser: QueryParser) -> None:
    assert syntax_error(lambda: parser.parse_filter("substring(a,1,2,3) eq 'x'")).message == (
        "Syntax error in $filter at position 0: substring takes 2 or 3 arguments, found 4"
    )


def test_a_name_that_is_not_a_canonical_function_is_a_property(parser: QueryParser) -> None:
    assert parser.parse_filter("year eq 2026") == op("eq", path("year"), int32(2026))
    # A parenthesised literal after a name is a key predicate.
    assert parser.parse_expression("yearly(1)") == Path((PathSegment("yearly", KeyPredicate((int32(1),))),))
    with pytest.raises(NotImplementedYet, match="calls of functions defined by a model"):
        parser.parse_expression("yearly()")


def test_cast_isof_and_case(parser: QueryParser) -> None:
    assert parser.parse_expression("cast(Hours, Edm.Int32)") == Call(
        "cast", (path("Hours"), TypeName("Edm.Int32"))
    )
    assert parser.parse_expression("CAST(ClickTime.Job)") == Call("cast", (TypeName("ClickTime.Job"),))
    assert parser.parse_expression("isof(Collection(Edm.String))") == Call(
        "isof", (TypeName("Collection(Edm.String)"),)
    )
    assert parser.parse_expression("case(A gt 0:'up', true:'down')") == Call(
        "case", (op("gt", A, int32(0)), string("up"), lit(True, "Edm.Boolean"), string("down"))
    )


# --- Paths and lambdas -------------------------------------------------------------------------


def test_member_paths(parser: QueryParser) -> None:
    assert parser.parse_expression("Job/Client/Name") == path("Job/Client/Name")
    assert parser.parse_expression("Address/Model.Home/Street") == path("Address/Model.Home/Street")
    assert parser.parse_expression("Model.Manager/Reports") == path("Model.Manager/Reports")
    assert parser.parse_expression("$it") == Path((), root="$it")
    assert parser.parse_expression("$it/Hours") == path("Hours", root="$it")
    assert parser.parse_expression("$this/Street") == path("Street", root="$this")
    assert parser.parse_expression("Items/$count") == path("Items/$count")
    assert parser.parse_expression("Price/@Measures.Currency#Reporting") == path("Price/@Measures.Currency#Reporting")
    assert parser.parse_expression("Items(1)/Name") == Path(
        (PathSegment("Items", KeyPredicate((int32(1),))), PathSegment("Name"))
    )


def test_root_paths_with_keys(parser: QueryParser) -> None:
    tree = parser.parse_filter("UserID eq $root/Users('x')/ID")
    assert tree == op(
        "eq",
        path("UserID"),
        Path((PathSegment("Users", KeyPredicate((string("x"),))), PathSegment("ID")), root="$root"),
    )
    assert parser.parse_expression("$root/Lines(OrderID=1,Item=@i)") == Path(
        (PathSegment("Lines", KeyPredicate((int32(1), Alias("i")), ("OrderID", "Item"))),), root="$root"
    )


def test_segment_positions(parser: QueryParser) -> None:
    tree = parser.parse_filter("Job/Client/Name eq 'x'")
    assert isinstance(tree, BinaryOp) and isinstance(tree.left, Path)
    assert [segment.pos for segment in tree.left.segments] == [0, 4, 11]


def test_aliases_in_expressions(parser: QueryParser) -> None:
    assert parser.parse_filter("Name eq @name") == op("eq", path("Name"), Alias("name"))
    assert parser.parse_expression("@a/Street") == path("Street", root="@a")


def test_lambdas(parser: QueryParser) -> None:
    assert parser.parse_filter("TimeEntries/any(t: t/Hours gt 8)") == Lambda(
        path("TimeEntries"), "any", "t", op("gt", path("Hours", root="t"), int32(8))
    )
    assert parser.parse_filter("Tags/ALL(tag:tag eq 'x')") == Lambda(
        path("Tags"), "all", "tag", op("eq", Path((), root="tag"), string("x"))
    )
    assert parser.parse_filter("Items/any()") == Lambda(path("Items"), "any", None, None)
    assert parser.parse_filter("Items/any( )") == Lambda(path("Items"), "any", None, None)
    assert parser.parse_filter("$it/Items/any(i:i/Price gt $it/Limit)") == Lambda(
        path("Items", root="$it"), "any", "i", op("gt", path("Price", root="i"), path("Limit", root="$it"))
    )


def test_lambda_variables_have_a_scope(parser: QueryParser) -> None:
    tree = parser.parse_filter("A/any(a: a/B/all(b: b/X eq a/Y)) and a/Z")
    inner = Lambda(
        path("B", root="a"), "all", "b", op("eq", path("X", root="b"), path("Y", root="a"))
    )
    assert tree == op("and", Lambda(path("A"), "any", "a", inner), path("a/Z"))


def test_lambdas_need_a_collection_and_all_needs_a_variable(parser: QueryParser) -> None:
    assert syntax_error(lambda: parser.parse_filter("any()")).message == (
        "Syntax error in $filter at position 0: expected an expression, found 'any'"
    )
    assert syntax_error(lambda: parser.parse_filter("Items/all()")).message == (
        "Syntax error in $filter at position 10: expected a name after '(', found ')'"
    )


def test_in_takes_lists_json_arrays_aliases_and_paths(parser: QueryParser) -> None:
    assert parser.parse_filter("A in ('a', 'b')") == In(A, (string("a"), string("b")))
    assert parser.parse_filter("A in ()") == In(A, ())
    assert parser.parse_filter('A in ["a","b"]') == In(A, (string("a"), string("b")))
    assert parser.parse_filter("A in @list") == In(A, Alias("list"))
    assert parser.parse_filter("A in B/C") == In(A, path("B/C"))
    # Lists hold literals only, and only "in" takes them.
    assert syntax_error(lambda: parser.parse_filter("A in (B, C)")).position == 7
    assert syntax_error(lambda: parser.parse_filter("A eq ('a', 'b')")).position == 9


def test_has_takes_an_enumeration_literal(parser: QueryParser) -> None:
    assert parser.parse_filter("Style has Sales.Pattern'Red'") == op(
        "has", path("Style"), EnumLiteral("Sales.Pattern", ("Red",))
    )
    assert syntax_error(lambda: parser.parse_filter("Style has 3")).message == (
        "Syntax error in $filter at position 10: expected an enumeration literal after 'has'"
    )


def test_model_functions_and_filter_segments_are_not_implemented(parser: QueryParser) -> None:
    with pytest.raises(NotImplementedYet) as caught:
        parser.parse_filter("Items/Model.Top(N=$it/Limit)/$count gt 1")
    assert caught.value.message == (
        "Not supported in $filter at position 6: calls of functions defined by a model (Model.Top)"
    )
    assert caught.value.target == "$filter"
    with pytest.raises(NotImplementedYet, match="at position 6: \\$filter path segments"):
        parser.parse_filter("Items/$filter(A eq 1)/$count gt 1")
    with pytest.raises(NotImplementedYet, match="\\$count with query options"):
        parser.parse_filter("Items/$count($filter=A eq 1) gt 1")


# --- $orderby, $compute, $search -------------------------------------------------------------


def test_orderby(parser: QueryParser) -> None:
    assert parser.parse_orderby("Date desc,Job/Name,Hours mul 2 ASC,length(Comment)\tdesc") == (
        OrderByItem(path("Date"), True),
        OrderByItem(path("Job/Name")),
        OrderByItem(op("mul", path("Hours"), int32(2))),
        OrderByItem(Call("length", (path("Comment"),)), True),
    )


def test_compute(parser: QueryParser) -> None:
    assert parser.parse_compute("Hours mul Rate as Cost,year(Date) AS Year") == (
        ComputeItem(op("mul", path("Hours"), path("Rate")), "Cost"),
        ComputeItem(Call("year", (path("Date"),)), "Year"),
    )
    assert syntax_error(lambda: parser.parse_compute("Hours mul Rate")).message == (
        "Syntax error in $compute at position 14: expected a space after 'Rate', found end of input"
    )


def word(text: str) -> SearchTerm:
    return SearchTerm(text)


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("blue", word("blue")),
        ("blue green", SearchBinary("and", word("blue"), word("green"))),
        ("blue AND green OR red", SearchBinary("or", SearchBinary("and", word("blue"), word("green")), word("red"))),
        ("red OR blue green", SearchBinary("or", word("red"), SearchBinary("and", word("blue"), word("green")))),
        ("NOT blue green", SearchBinary("and", SearchNot(word("blue")), word("green"))),
        ("NOT (blue OR green)", SearchNot(SearchBinary("or", word("blue"), word("green")))),
        ("NOT NOT", SearchNot(word("NOT"))),
        ("NOT NOT blue", word("blue")),
        ("NOT NOT NOT blue", SearchNot(word("blue"))),
        ("NOT " * 5000 + "blue", word("blue")),  # no tree 5,000 levels deep
        ("AND OR NOT", SearchBinary("or", word("AND"), word("NOT"))),
        ("not and or", SearchBinary("and", SearchBinary("and", word("not"), word("and")), word("or"))),
        ('"blue green"', SearchTerm("blue green", phrase=True)),
        ('"say \\"hi\\" \\\\ bye"', SearchTerm('say "hi" \\ bye', phrase=True)),
        ("'\"unbalanced'", SearchTerm('"unbalanced', phrase=True)),
        ("  Daniel's café&co", SearchBinary("and", word("Daniel's"), word("café&co"))),
    ],
)
def test_search(parser: QueryParser, text: str, tree: object) -> None:
    assert parser.parse_search(text) == tree


def test_search_errors(parser: QueryParser) -> None:
    assert syntax_error(lambda: parser.parse_search('"blue')).position == 0
    assert syntax_error(lambda: parser.parse_search("blue )")).message == (
        "Syntax error in $search at position 5: expected a search term or '(' after 'blue', found ')'"
    )


# --- $select and $expand -------------------------------------------------------------------------


def test_select(parser: QueryParser) -> None:
    assert parser.parse_select("*,ClickTime.*,Name,Address/City,Model.Manager/Reports") == (
        SelectItem((), star=True),
        SelectItem(("ClickTime",), star=True),
        SelectItem(("Name",)),
        SelectItem(("Address", "City")),
        SelectItem(("Model.Manager", "Reports")),
    )


def test_select_with_nested_options(parser: QueryParser) -> None:
    (item,) = parser.parse_select("Addresses($filter=City eq @c;$orderby=City desc;$top=2;$skip=1;$count=true;"
                                  "$search=x;$select=City;$compute=1 as One;@c='Bonn')")
    assert item == SelectItem(
        ("Addresses",),
        options=QueryOptions(
            filter=op("eq", path("City"), Alias("c")),
            orderby=(OrderByItem(path("City"), True),),
            top=2,
            skip=1,
            count=True,
            search=word("x"),
            select=(SelectItem(("City",)),),
            compute=(ComputeItem(int32(1), "One"),),
            aliases=(("c", string("Bonn")),),
        ),
    )


def test_expand(parser: QueryParser) -> None:
    assert parser.parse_expand("Job,Job/Client,*,*/$ref,*($levels=max),Items/$ref,Items/$count,$value") == (
        ExpandItem(("Job",)),
        ExpandItem(("Job", "Client")),
        ExpandItem((), star=True),
        ExpandItem((), star=True, ref=True),
        ExpandItem((), star=True, levels="max"),
        ExpandItem(("Items",), ref=True),
        ExpandItem(("Items",), count=True),
        ExpandItem(("$value",)),
    )


def test_expand_with_nested_options_in_either_spelling(parser: QueryParser) -> None:
    items = parser.parse_expand(
        "Job($select=Name;$expand=Client($select=Name);$filter=Active;$levels=2),"
        "Items/$ref($filter=A;$top=1),Items/$count(search=x),Tasks(SELECT=Name;orderby=Name)"
    )
    assert items == (
        ExpandItem(
            ("Job",),
            options=QueryOptions(
                select=(SelectItem(("Name",)),),
                expand=(ExpandItem(("Client",), options=QueryOptions(select=(SelectItem(("Name",)),))),),
                filter=path("Active"),
            ),
            levels=2,
        ),
        ExpandItem(("Items",), ref=True, options=QueryOptions(filter=A, top=1)),
        ExpandItem(("Items",), count=True, options=QueryOptions(search=word("x"))),
        ExpandItem(
            ("Tasks",), options=QueryOptions(select=(SelectItem(("Name",)),), orderby=(OrderByItem(path("Name")),))
        ),
    )


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("Items/$ref($select=A)", 11),  # $ref takes no $select
        ("Items/$count($top=1)", 13),  # $count takes only $filter and $search
        ("Items($levels=01)", 14),
        ("Items($top=1;$top=2)", 13),
        ("Items($top=-1)", 11),
        ("Items(@a=1;@a=2)", 11),
        ("Items,", 6),
    ],
)
def test_expand_errors(parser: QueryParser, text: str, position: int) -> None:
    assert syntax_error(lambda: parser.parse_expand(text)).position == position


def test_duplicate_nested_option_message(parser: QueryParser) -> None:
    assert syntax_error(lambda: parser.parse_expand("Items($top=1;top=2)")).message == (
        "Syntax error in $expand at position 13: query option top is given more than once"
    )


def test_nested_positions_count_from_the_start_of_the_option(parser: QueryParser) -> None:
    (item,) = parser.parse_expand("Job($filter=Name eq 'x')")
    assert item.options is not None and isinstance(item.options.filter, BinaryOp)
    assert item.options.filter.pos == 17
    assert syntax_error(lambda: parser.parse_expand("Job($filter=Name eq )")).position == 20


# --- Query options -------------------------------------------------------------------------------


def test_parse_query(parser: QueryParser) -> None:
    options = parser.parse_query(
        [
            ("$filter", "Hours gt @h"),
            ("@h", "8"),
            ("$select", "Hours"),
            ("$orderby", "Date"),
            ("$top", "10"),
            ("$skip", "20"),
            ("$count", "TRUE"),
            ("$search", "x"),
            ("$compute", "1 as One"),
            ("$levels", "3"),
            ("$skiptoken", "abc=="),
            ("$deltatoken", "d&1"),
            ("$format", "JSON"),
            ("$index", "-2"),
            ("$schemaversion", "1.0"),
            ("$apply", "groupby((Job))"),
            ("$expand", "Job"),
            ("mine", "anything goes ("),
            ("Other", ""),
        ]
    )
    assert options == QueryOptions(
        filter=op("gt", path("Hours"), Alias("h")),
        select=(SelectItem(("Hours",)),),
        expand=(ExpandItem(("Job",)),),
        orderby=(OrderByItem(path("Date")),),
        top=10,
        skip=20,
        count=True,
        search=word("x"),
        compute=(ComputeItem(int32(1), "One"),),
        levels=3,
        skiptoken="abc==",
        deltatoken="d&1",
        format="json",
        index=-2,
        schemaversion="1.0",
        apply="groupby((Job))",
        aliases=(("h", int32(8)),),
        custom=(("mine", "anything goes ("), ("Other", "")),
    )


def test_system_options_without_dollar_and_in_any_case(parser: QueryParser) -> None:
    options = parser.parse_query([("filter", "A"), ("TOP", "1"), ("$OrderBy", "B"), ("Select", "C"), ("count", "false")])
    assert (options.filter, options.top, options.orderby, options.select, options.count) == (
        A,
        1,
        (OrderByItem(B),),
        (SelectItem(("C",)),),
        False,
    )
    assert options.custom == ()


def test_format_values(parser: QueryParser) -> None:
    assert parser.parse_query([("$format", "Atom")]).format == "atom"
    media_type = "application/json;odata.metadata=minimal"
    assert parser.parse_query([("$format", media_type)]).format == media_type
    assert syntax_error(lambda: parser.parse_query([("$format", "csv")])).target == "$format"


def test_skiptoken_and_deltatoken_need_the_dollar(parser: QueryParser) -> None:
    options = parser.parse_query([("skiptoken", "a"), ("deltatoken", "b")])
    assert options.skiptoken is None and options.deltatoken is None
    assert options.custom == (("skiptoken", "a"), ("deltatoken", "b"))


def test_levels_and_schemaversion(parser: QueryParser) -> None:
    assert parser.parse_query([("levels", "MAX"), ("schemaversion", "*")]) == QueryOptions(
        levels="max", schemaversion="*"
    )


def test_empty_pairs_are_ignored(parser: QueryParser) -> None:
    assert parser.parse_query([("", ""), ("$top", "1")]) == QueryOptions(top=1)


@pytest.mark.parametrize(
    ("pairs", "message", "target"),
    [
        ([("$filter", "A"), ("filter", "B")], "System query option filter is given more than once", "filter"),
        ([("$top", "1"), ("$TOP", "2")], "System query option $TOP is given more than once", "$TOP"),
        ([("@p", "1"), ("@p", "2")], "Parameter alias @p is given more than once", "@p"),
        ([("$frobnicate", "1")], "Unknown system query option $frobnicate", "$frobnicate"),
        ([("", "1")], "A query option has no name (value '1')", None),
        ([("$skiptoken", "")], "Syntax error in $skiptoken at position 0: expected a value, found end of input",
         "$skiptoken"),
        ([("$top", "-1")], "Syntax error in $top at position 0: expected a non-negative integer, found '-1'", "$top"),
        ([("top", "1.5")], "Syntax error in top at position 0: expected a non-negative integer, found '1.5'", "top"),
        ([("$count", "yes")], "Syntax error in $count at position 0: expected true or false, found 'yes'", "$count"),
        ([("$levels", "0")], "Syntax error in $levels at position 0: expected a positive integer or max, found '0'",
         "$levels"),
        ([("@1p", "1")], "Syntax error in @1p at position 0: expected a parameter alias such as @p, found '@1p'",
         "@1p"),
        ([("@p", "1 add")], "Syntax error in @p at position 5: expected a space after 'add', found end of input",
         "@p"),
    ],
)
def test_query_option_errors(
    parser: QueryParser, pairs: list[tuple[str, str]], message: str, target: str | None
) -> None:
    with pytest.raises(BadRequest) as caught:
        parser.parse_query(pairs)
    assert (caught.value.message, caught.value.target) == (message, target)


def test_id_is_not_implemented(parser: QueryParser) -> None:
    with pytest.raises(NotImplementedYet) as caught:
        parser.parse_query([("$id", "Products(0)")])
    assert caught.value.target == "$id"


# --- Syntax errors -----------------------------------------------------------------------------


def test_syntax_error_message_position_and_detail(parser: QueryParser) -> None:
    error = syntax_error(lambda: parser.parse_filter("Category eq )"))
    message = "Syntax error in $filter at position 12: expected an expression after 'eq', found ')'"
    assert (error.message, error.position, error.target, error.status) == (message, 12, "$filter", 400)
    assert error.details == (ErrorDetail(code="SyntaxError", message=message, target="$filter"),)
    assert isinstance(error, BadRequest)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "at position 0: expected an expression, found end of input"),
        ("Name eq", "at position 7: expected a space after 'eq', found end of input"),
        ("Name eq 'x' an B", "at position 12: expected an operator or end of input after \"'x'\", found 'an'"),
        ("contains(Name 'x')", "at position 14: expected ')' or ',' after 'Name', found \"'x'\""),
        ("contains(Name,'x'", "at position 17: expected ')' after \"'x'\", found end of input"),
        ("(Name eq 'x'", "at position 12: expected ')' after \"'x'\", found end of input"),
        ("Name eq 'x')", "at position 11: expected an operator or end of input after \"'x'\", found ')'"),
        (" Name eq 1", "at position 0: expected an expression, found ' '"),
        ("Name eq 'abc", "at position 8: expected an expression after 'eq', found an unclosed string \"'abc\""),
        ("Items/any(x:", "at position 12: expected an expression after ':', found end of input"),
        ("Job/", "at position 4: expected a name after '/', found end of input"),
        ("Model.Available", "at position 15: expected '(' after 'Model.Available', found end of input"),
    ],
)
def test_syntax_error_messages(parser: QueryParser, text: str, message: str) -> None:
    assert syntax_error(lambda: parser.parse_filter(text)).message == "Syntax error in $filter " + message


def test_an_error_names_the_option_as_the_client_wrote_it(parser: QueryParser) -> None:
    error = syntax_error(lambda: parser.parse_query([("Filter", "A eq")]))
    assert (error.target, error.message) == (
        "Filter",
        "Syntax error in Filter at position 4: expected a space after 'eq', found end of input",
    )


def test_nesting_is_limited(parser: QueryParser) -> None:
    deep = "(" * MAX_NESTING + "A" + ")" * MAX_NESTING
    assert parser.parse_filter(deep) == A
    error = syntax_error(lambda: parser.parse_filter("(" + deep + ")"))
    assert error.message == (
        f"Syntax error in $filter at position {MAX_NESTING}: nesting deeper than {MAX_NESTING} levels is not supported"
    )
    # Brackets inside strings do not count.
    assert parser.parse_filter("A eq '" + "(" * 100 + "'") == op("eq", A, string("(" * 100))


def test_long_operator_chains_are_limited(parser: QueryParser) -> None:
    assert syntax_error(lambda: parser.parse_filter("not " * MAX_DEPTH + "A")).message == (
        f"Syntax error in $filter at position 0: the expression is nested more than {MAX_DEPTH} levels deep"
    )
    assert syntax_error(lambda: parser.parse_filter(" add ".join(["A"] * (MAX_DEPTH + 1)) + " eq 1")).position == 0
    assert isinstance(parser.parse_filter("not " * (MAX_DEPTH - 1) + "A"), UnaryOp)


def _at_stack_depth(depth: int, call: Callable[[], object]) -> object:
    return call() if depth == 0 else _at_stack_depth(depth - 1, call)


def test_the_deepest_nesting_parses_from_a_deep_stack(parser: QueryParser) -> None:
    # Lambdas cost the most stack per level; a server's own stack is a few hundred frames.
    lambdas = "".join(f"L{n}/any(v{n}:" for n in range(MAX_NESTING)) + "true" + ")" * MAX_NESTING
    assert isinstance(_at_stack_depth(150, lambda: parser.parse_filter(lambdas)), Lambda)


def test_running_out_of_stack_is_a_bad_request(parser: QueryParser) -> None:
    lambdas = "".join(f"L{n}/any(v{n}:" for n in range(MAX_NESTING)) + "true" + ")" * MAX_NESTING
    almost_full = sys.getrecursionlimit() - 100
    error = syntax_error(lambda: _at_stack_depth(almost_full, lambda: parser.parse_expression(lambdas)))
    assert error.message == "Syntax error in expression at position 0: the text is nested too deeply"


@settings(derandomize=True, database=None, max_examples=400, deadline=None)
@given(text=st.text(alphabet="ab12AF%/ ()[]{}'\",:$@-*.eqndotrIN\\;=", max_size=40))
def test_any_text_parses_or_fails_cleanly(parser: QueryParser, text: str) -> None:
    """Whatever the text, a parse returns a tree or raises a 400 or a 501, never anything else."""
    parses: list[Callable[[str], object]] = [
        parser.parse_filter, parser.parse_orderby, parser.parse_select, parser.parse_expand,
        parser.parse_search, parser.parse_compute, parser.parse_path,
    ]
    for parse in parses:
        try:
            parse(text)
        except ODataError as error:
            assert isinstance(error, (BadRequest, NotImplementedYet))


# --- The cache -----------------------------------------------------------------------------------


def test_the_same_text_gives_the_same_object() -> None:
    parser = QueryParser()
    first = parser.parse_filter("Name eq 'x'")
    assert parser.parse_filter("Name eq 'x'") is first
    assert parser.parse_query([("$filter", "Name eq 'x'")]).filter is first
    # The same text read as another option is another tree.
    assert parser.parse_orderby("Name eq 'x'") != first
    assert parser.parse_path("Customers(1)") is parser.parse_path("Customers(1)")


def test_the_cache_is_bounded_and_forgets_the_least_recently_used() -> None:
    parser = QueryParser(cache_size=2)
    a = parser.parse_filter("a")
    b = parser.parse_filter("b")
    assert parser.parse_filter("a") is a  # now "b" is the least recently used
    parser.parse_filter("c")
    assert parser.parse_filter("a") is a
    b_again = parser.parse_filter("b")
    assert b_again == b and b_again is not b


def test_each_parser_has_its_own_cache() -> None:
    assert QueryParser().parse_filter("a") is not QueryParser().parse_filter("a")


def test_errors_are_raised_every_time() -> None:
    parser = QueryParser()
    for _ in range(2):
        with pytest.raises(ODataSyntaxError):
            parser.parse_filter("a eq")


# --- Resource paths ------------------------------------------------------------------------------


def seg(name: str, *values: Expr, names: tuple[str, ...] | None = None) -> PathSegment:
    return PathSegment(name, KeyPredicate(values, names) if values else None)


@pytest.mark.parametrize(
    ("raw", "segments"),
    [
        ("", ()),
        ("/", ()),
        ("TimeEntries", (seg("TimeEntries"),)),
        ("/TimeEntries('abc')", (seg("TimeEntries", string("abc")),)),
        ("People('It''s')", (seg("People", string("It's")),)),
        ("People(%27O%27%27Neil%27)", (seg("People", string("O'Neil")),)),
        ("People%28'x'%29/Friends", (seg("People", string("x")), seg("Friends"))),
        ("Categories('Smartphone%2FTablet')", (seg("Categories", string("Smartphone/Tablet")),)),
        ("Orders(1)/Items(OrderID=1,ItemID=2)", (
            seg("Orders", int32(1)), seg("Items", int32(1), int32(2), names=("OrderID", "ItemID")))),
        ("Orders(@key)", (seg("Orders", Alias("key")),)),
        ("Orders(2026-02-03T10:00:00Z)", (
            seg("Orders", Literal(datetime.datetime(2026, 2, 3, 10, tzinfo=UTC), "Edm.DateTimeOffset")),)),
        ("Orders/1/Items", (seg("Orders"), seg("1"), seg("Items"))),
        ("People/O'Neil", (seg("People"), seg("O'Neil"))),
        ("Customers/Smartphone%2FTablet", (seg("Customers"), seg("Smartphone/Tablet"))),
        ("Orders(1)/Model.Special/Lines/$count", (seg("Orders", int32(1)), seg("Model.Special"), seg("Lines"),
                                                  seg("$count"))),
        ("Orders(1)/Customer/$ref", (seg("Orders", int32(1)), seg("Customer"), seg("$ref"))),
        ("Photos(1)/$value", (seg("Photos", int32(1)), seg("$value"))),
        ("Orders/$each", (seg("Orders"), seg("$each"))),
        ("$metadata", (seg("$metadata"),)),
        ("$batch", (seg("$batch"),)),
        ("$entity/Model.Customer", (seg("$entity"), seg("Model.Customer"))),
        ("$all", (seg("$all"),)),
        ("Caf%C3%A9s", (seg("Cafés"),)),
    ],
)
def test_parse_path(parser: QueryParser, raw: str, segments: tuple[PathSegment, ...]) -> None:
    assert parser.parse_path(raw) == ResourcePath(segments)


def test_path_positions_are_offsets_in_the_raw_path(parser: QueryParser) -> None:
    (people, friends) = parser.parse_path("People(%27x%27)/Friends").segments
    assert people.key is not None and (people.pos, people.key.pos, people.key.values[0].pos, friends.pos) == (
        0, 6, 7, 16,
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        # A raw "/" ends the segment: a slash in a key is written %2F.
        ("Categories('Tablet/Slate')", "at position 11: expected a literal, a name, a parameter alias such as @p or "
         "')' after '(', found an unclosed string \"'Tablet\""),
        ("Customers('O%27Neil')", "at position 15: expected ')' after \"'O'\", found 'Neil'"),
        ("Categories(ID=wrong)", "at position 14: expected a literal or a parameter alias such as @p after '=', "
         "found 'wrong'"),
        ("Items(A=1;B=2)", "at position 9: expected ')' or ',' after '1', found ';'"),
        ("Items(1)(2)", "at position 8: expected end of input after ')', found '('"),
        ("Model.Rejection", "at position 5: expected '(' or end of input after 'Model', found '.Rejection'"),
        (".Products", "at position 0: expected a name, found '.Products'"),
        ("Products/$count/x", "at position 16: nothing may follow $count"),
        ("Products/$ref/$count", "at position 14: nothing may follow $ref"),
        ("$metadata/x", "at position 10: nothing may follow $metadata"),
        ("Products/$metadata", "at position 9: $metadata may only start the path"),
        ("Products/$crossjoin(A)", "at position 9: $crossjoin may only start the path"),
        ("Products//x", "at position 9: expected a path segment, found an empty one"),
        ("Products/", "at position 9: expected a path segment, found an empty one"),
        ("Products/$counts", "at position 9: expected"),
        ("Products%2", "at position 8: '%' must start a percent-encoded byte"),
        ("Caf%C3", "at position 3: percent-encoded bytes are not UTF-8"),
    ],
)
def test_path_errors(parser: QueryParser, raw: str, message: str) -> None:
    error = syntax_error(lambda: parser.parse_path(raw))
    assert error.message.startswith("Syntax error in the resource path " + message)
    assert error.target is None
    assert error.position == int(re.search(r"position (\d+)", message).group(1))  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("raw", "what"),
    [
        ("$crossjoin(Customers,Orders)", "$crossjoin"),
        ("Products/$filter(Price%20gt%205)", "$filter path segments"),
        ("Products/Model.MostExpensive()", "calls of functions defined by a model (Model.MostExpensive)"),
        ("TopProducts(n=3)(1)", "calls of functions defined by a model (TopProducts)"),
    ],
)
def test_paths_that_are_not_implemented(parser: QueryParser, raw: str, what: str) -> None:
    with pytest.raises(NotImplementedYet, match=re.escape(what)):
        parser.parse_path(raw)
