"""
Parse OData 4.01 URLs into the syntax tree of `odata_klein.syntax`.

The grammar lives in ``odata.peg`` beside this module and follows the rule
names of the OASIS ABNF; this module walks its parse trees top-down and
builds the frozen nodes of `odata_klein.syntax`.

What the parser reads:

- Query options arrive as ``(name, value)`` pairs, split from the raw query
  at ``&`` and at the first ``=`` and then percent-decoded exactly once, as
  Part 2, "URL Parsing", prescribes.  ``+`` must NOT have been turned into a
  space: OData URLs are not form-encoded, and ``+`` is a sign in literals.
- The resource path arrives RAW (still percent-encoded), because only a raw
  ``/`` separates segments: ``Categories('a%2Fb')`` is one segment whose key
  holds a slash, while ``Categories('a/b')`` is two broken segments.  Each
  segment is decoded here, after splitting.

Positions: every node's ``pos``, and every error's ``position``, is the
zero-based offset in the text it came from: the decoded option value, or the
raw path.

Errors: text that breaks the ABNF raises `ODataSyntaxError` (a
`BadRequest`) whose message says where and what was expected.  Text that is
valid OData but that the syntax tree cannot represent raises
`NotImplementedYet` (501), as OData's conformance rules ask: calls of
functions defined by a model, ``/$filter(...)`` path segments, ``$count``
with options inside an expression, ``$crossjoin``, function signatures in
``$select``, ``$id``, and dates outside the years 1 to 9999.

Model-free choices the binder should know about:

- ``@name`` alone is an `Alias`; ``@name/Prop`` is a `Path` whose root is
  ``"@name"``.  Instance annotations (``@Core.Messages``,
  ``Price/@Measures.Currency``) are path segments whose name starts with
  ``@``.
- ``Nav(Key=1)`` with literal values is a key predicate, whatever ``Nav``
  turns out to be; ``Name()`` and parameters that are not literals make a
  function call.
- A duration or enumeration literal written without its prefix
  (``'P1D'``, ``'Yellow'``) is a string literal, as the ABNF's rule order
  says; binding converts it to the type it is compared with.
- A JSON array is a `ListExpr`; a JSON object is a `JsonValue` whose value
  is a tuple of ``(member name, expression)`` pairs.  On the right of
  ``in`` a list, parenthesised or JSON, becomes the tuple `In.values`.
- ``case(c1:v1,c2:v2)`` is ``Call("case", (c1, v1, c2, v2))``.
- In ``$select``, ``Namespace.*`` is a star item whose path is
  ``("Namespace",)``.  ``$levels`` inside ``$expand`` goes to
  `ExpandItem.levels`.
- Chains of ``and`` or of ``or`` become balanced trees, so that the long
  or-lists BI tools send do not make deep trees.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
import threading
import uuid
from collections import OrderedDict, defaultdict
from decimal import Decimal
from importlib import resources
from typing import Callable, Optional, Sequence, TypeVar, Union

from parsimonious.expressions import Expression, Regex
from parsimonious.grammar import Grammar
from parsimonious.nodes import Node, RegexNode

from .errors import BadRequest, ErrorDetail, NotImplementedYet
from .syntax import (
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
    SearchExpr,
    SearchNot,
    SearchTerm,
    SelectItem,
    TypeName,
    UnaryOp,
)

__all__ = [
    "FUNCTION_ARITY",
    "MAX_DEPTH",
    "MAX_DIGITS",
    "MAX_NESTING",
    "MAX_ORDERBY_ITEMS",
    "ODataSyntaxError",
    "QueryParser",
]


class ODataSyntaxError(BadRequest):
    """
    Text that does not follow the OData ABNF.  ``position`` is the zero-based
    offset of the error in the option value (or raw path) it came from; the
    message says it too, as "at position N".
    """

    def __init__(self, message: str, *, position: int, target: Optional[str]) -> None:
        super().__init__(
            message,
            target=target,
            details=(ErrorDetail(code="SyntaxError", message=message, target=target),),
        )
        self.position = position


# Deeper nesting of parentheses, brackets and braces is refused before
# parsing.  Parsimonious recurses about twenty Python frames per level in the
# worst case (a lambda inside a lambda), so this keeps a parse well inside
# Python's default recursion limit even when the caller's stack is deep.
MAX_NESTING = 32
# Digits a number in a URL may have in a row (Edm.Decimal has at most 34
# significant ones, Edm.Int64 19).
MAX_DIGITS = 100
# Items of one $orderby: every one is evaluated for every row and compared in
# every step of the sort, and no ordering needs more.
MAX_ORDERBY_ITEMS = 32
_DIGIT_RUNS = re.compile(r"[0-9]+")

# Long chains of operators need no recursion to parse, but "a add b add ..."
# or "not not ... x" would make trees too deep for the recursive code that
# reads them (chains of "and" and "or" are balanced, so long BI or-lists are
# shallow): the depth of one expression's tree is bounded too.
MAX_DEPTH = 100

# System query options, by lower-case name without "$", and the grammar entry
# that reads each one's value; None: the value is kept as raw text.
_SYSTEM_OPTIONS: dict[str, Optional[str]] = {
    "filter": "entry_filter",
    "select": "entry_select",
    "expand": "entry_expand",
    "orderby": "entry_orderby",
    "top": "entry_nonNegativeInteger",
    "skip": "entry_nonNegativeInteger",
    "count": "entry_count",
    "search": "entry_search",
    "compute": "entry_compute",
    "levels": "entry_levels",
    "index": "entry_index",
    "format": "entry_format",
    "schemaversion": "entry_schemaversion",
    "skiptoken": None,
    "deltatoken": None,
    "apply": None,
    "id": None,
}
# The ABNF writes these two with "$" only: without it they are custom options.
_DOLLAR_ONLY = frozenset({"skiptoken", "deltatoken"})

# Canonical functions: (least, most) arguments.  The grammar's methodName
# lists the same names.
FUNCTION_ARITY: dict[str, tuple[int, int]] = {
    "concat": (2, 2),
    "contains": (2, 2),
    "endswith": (2, 2),
    "indexof": (2, 2),
    "length": (1, 1),
    "matchespattern": (2, 2),
    "startswith": (2, 2),
    "substring": (2, 3),
    "tolower": (1, 1),
    "toupper": (1, 1),
    "trim": (1, 1),
    "year": (1, 1),
    "month": (1, 1),
    "day": (1, 1),
    "hour": (1, 1),
    "minute": (1, 1),
    "second": (1, 1),
    "fractionalseconds": (1, 1),
    "totalseconds": (1, 1),
    "date": (1, 1),
    "time": (1, 1),
    "totaloffsetminutes": (1, 1),
    "mindatetime": (0, 0),
    "maxdatetime": (0, 0),
    "now": (0, 0),
    "round": (1, 1),
    "floor": (1, 1),
    "ceiling": (1, 1),
    "hassubset": (2, 2),
    "hassubsequence": (2, 2),
    "geo.distance": (2, 2),
    "geo.intersects": (2, 2),
    "geo.length": (1, 1),
}

# Binary operators from the loosest to the tightest (Part 2, 5.1.1.15);
# "has" and "in" are primary operators, tighter than "-" and "not".
_BINARY_LEVELS: tuple[frozenset[str], ...] = (
    frozenset({"or"}),
    frozenset({"and"}),
    frozenset({"eq", "ne"}),
    frozenset({"gt", "ge", "lt", "le"}),
    frozenset({"add", "sub"}),
    frozenset({"mul", "div", "divby", "mod"}),
)
_LEVEL_OF = {name: level for level, names in enumerate(_BINARY_LEVELS) for name in names}
_ASSOCIATIVE = frozenset({"and", "or"})

_INT32 = range(-(2**31), 2**31)
_INT64 = range(-(2**63), 2**63)

_GEO_KINDS = {
    "collectionLiteral": "Collection",
    "lineStringLiteral": "LineString",
    "multiLineStringLiteral": "MultiLineString",
    "multiPointLiteral": "MultiPoint",
    "multiPolygonLiteral": "MultiPolygon",
    "pointLiteral": "Point",
    "polygonLiteral": "Polygon",
}

# Rules that wrap the choice of one nested query option.
_OPTION_CHOICES = frozenset({"selectOption", "expandOption", "expandRefOption", "expandCountOption"})

# What to call a rule that failed, for "expected ..." in error messages, in
# the order they are listed.  Rules not named here are too small to mention,
# and the ways an operand can start are not listed when an expression was
# expected there.
_EXPECTATIONS: dict[str, str] = {
    "unaryExpr": "an expression",
    "primaryTerm": "an expression",
    "commonExpr": "an expression",
    "selectItem": "a property, '*' or a qualified name",
    "expandItem": "a navigation property or '*'",
    "searchUnary": "a search term",
    "searchPrimary": "a search term",
    "selectOption": "a query option",
    "expandOption": "a query option",
    "expandRefOption": "a query option",
    "expandCountOption": "a query option",
    "keyPropertyValue": "a literal",
    "primitiveLiteral": "a literal",
    "stringInUrl": "a JSON string",
    "odataIdentifier": "a name",
    "headName": "a name",
    "memberName": "a name",
    "segmentName": "a name",
    "optionallyQualifiedTypeName": "a type name",
    "parameterAlias": "a parameter alias such as @p",
    "nonNegativeInteger": "a non-negative integer",
    "indexValue": "an integer",
    "boolean": "true or false",
    "levelsValue": "a positive integer or max",
    "formatValue": "json, xml, atom or a media type",
    "schemaversionValue": "'*' or a schema version",
    "binaryOperator": "an operator",
    "sortOrder": "asc or desc",
    "asKeyword": "'as'",
    "OPEN": "'('",
    "CLOSE": "')'",
    "COMMA": "','",
    "SEMI": "';'",
    "COLON": "':'",
    "EQ": "'='",
    "STAR": "'*'",
    "RWS": "a space",
    "EOF": "end of input",
}

# Expectations that go without saying when a broader one is listed.
_IMPLIED = {
    "an expression": frozenset(
        {"a literal", "true or false", "a JSON string", "a name", "a parameter alias such as @p", "'('"}
    ),
    "a literal": frozenset({"true or false"}),
}

# The token an error was found at, and the one before it, for messages.
_TOKEN = re.compile(r"""'(?:[^']|'')*'?|"(?:[^"\\]|\\.)*"?|[^\s()\[\]{},;=']+|\s+|.""", re.DOTALL)
_TOKEN_BEFORE = re.compile(r"(?:'(?:[^']|'')*'|[^\s()\[\]{},;=':/]+|\S)\Z")
_NESTING = re.compile(r"""'(?:[^']|'')*'?|"(?:[^"\\]|\\.)*"?|[()\[\]{}]""", re.DOTALL)
_PERCENT_RUN = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
_TERMINAL_SEGMENTS = frozenset({"$metadata", "$batch", "$count", "$value", "$ref"})
_FIRST_ONLY_SEGMENTS = frozenset({"$metadata", "$batch", "$entity", "$all", "$crossjoin"})


class QueryParser:
    """
    Parses query options and resource paths.

    Option values are given DECODED (``%20`` already a space, ``%2B`` a plus),
    paths RAW; see the module's docstring.  ``target`` names the option in
    error messages, as the client spelled it.

    One instance serves all requests; it keeps a bounded LRU cache of parsed
    texts (BI tools send the same ``$filter`` for every page), and a cached
    result is returned as the very same object, so callers must not rely on
    identity to tell requests apart.  It may be used from several threads at
    once (the service parses long URLs in a worker thread).
    """

    def __init__(self, cache_size: int = 512) -> None:
        grammar = resources.files("odata_klein").joinpath("odata.peg").read_text(encoding="utf-8")
        self._grammar = _with_standard_regexes(Grammar(grammar))
        self._cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str], object] = OrderedDict()
        self._cache_lock = threading.Lock()

    # --- Query options -------------------------------------------------------

    def parse_query(self, pairs: Sequence[tuple[str, str]]) -> QueryOptions:
        """
        The query options of one request, from its decoded ``(name, value)``
        pairs in order.  System options are recognised with or without "$"
        and in any case (4.01); a name without "$" that is not a system
        option is a custom option.  A system option given twice, or an
        unknown name starting with "$", is an error.
        """
        fields: dict[str, object] = {}
        aliases: dict[str, Expr] = {}
        custom: list[tuple[str, str]] = []
        for name, value in pairs:
            if not name:
                if value:
                    raise BadRequest(f"A query option has no name (value {value!r})")
                continue
            if name.startswith("@"):
                alias: Alias = self._parse("entry_aliasName", name, target=name)  # type: ignore[assignment]
                if alias.name in aliases:
                    raise BadRequest(f"Parameter alias {name} is given more than once", target=name)
                aliases[alias.name] = self.parse_expression(value, target=name)
                continue
            option = _system_option(name)
            if option is None:
                custom.append((name, value))
            elif option in fields:
                raise BadRequest(f"System query option {name} is given more than once", target=name)
            else:
                fields[option] = self._option_value(option, name, value)
        return QueryOptions(
            **fields, aliases=tuple(aliases.items()), custom=tuple(custom)  # type: ignore[arg-type]
        )

    def parse_filter(self, text: str, *, target: str = "$filter") -> Expr:
        return self._parse("entry_filter", text, target)  # type: ignore[return-value]

    def parse_expression(self, text: str, *, target: str = "expression") -> Expr:
        """A parameter alias value or any other single expression (JSON allowed)."""
        return self._parse("entry_expression", text, target)  # type: ignore[return-value]

    def parse_orderby(self, text: str, *, target: str = "$orderby") -> tuple[OrderByItem, ...]:
        return self._parse("entry_orderby", text, target)  # type: ignore[return-value]

    def parse_select(self, text: str, *, target: str = "$select") -> tuple[SelectItem, ...]:
        return self._parse("entry_select", text, target)  # type: ignore[return-value]

    def parse_expand(self, text: str, *, target: str = "$expand") -> tuple[ExpandItem, ...]:
        return self._parse("entry_expand", text, target)  # type: ignore[return-value]

    def parse_search(self, text: str, *, target: str = "$search") -> SearchExpr:
        return self._parse("entry_search", text, target)  # type: ignore[return-value]

    def parse_compute(self, text: str, *, target: str = "$compute") -> tuple[ComputeItem, ...]:
        return self._parse("entry_compute", text, target)  # type: ignore[return-value]

    # --- Resource path ---------------------------------------------------------

    def parse_path(self, raw_path: str) -> ResourcePath:
        """
        The resource path after the service root, still percent-encoded; one
        leading "/" is ignored, and the empty path (the service document) has
        no segments.  Segments are split at raw "/" and decoded one by one.
        """
        key = ("path", raw_path)
        cached = self._cached(key)
        if cached is None:
            cached = self._remember(key, self._parse_path(raw_path))
        return cached  # type: ignore[return-value]

    def _parse_path(self, raw_path: str) -> ResourcePath:
        start = 1 if raw_path.startswith("/") else 0
        if start == len(raw_path):
            return ResourcePath(segments=())
        segments: list[PathSegment] = []
        for raw_segment in raw_path[start:].split("/"):
            if segments and segments[-1].name in _TERMINAL_SEGMENTS:
                raise _path_error(start, f"nothing may follow {segments[-1].name}")
            if not raw_segment:
                raise _path_error(start, "expected a path segment, found an empty one")
            text, offsets = _percent_decode(raw_segment, start)
            if not segments:
                segments.append(self._segment("entry_firstSegment", text, offsets))
            elif text.partition("(")[0] in _FIRST_ONLY_SEGMENTS:
                raise _path_error(start, f"{text.partition('(')[0]} may only start the path")
            elif text.startswith("$") or "(" in text:
                segments.append(self._segment("entry_nextSegment", text, offsets))
            else:
                # A property, type cast or key-as-segment: binding decides.
                segments.append(PathSegment(name=text, pos=start))
            start += len(raw_segment) + 1
        return ResourcePath(segments=tuple(segments))

    def _segment(self, rule: str, text: str, offsets: list[int]) -> PathSegment:
        builder = _TreeBuilder(text, where="in the resource path", target=None, offsets=offsets)
        return self._build(rule, builder)  # type: ignore[return-value]

    # --- Machinery ---------------------------------------------------------------

    def _option_value(self, option: str, name: str, value: str) -> object:
        if option == "id":
            raise NotImplementedYet("The $id system query option is not supported", target=name)
        rule = _SYSTEM_OPTIONS[option]
        if rule is None:
            if not value:
                raise ODataSyntaxError(
                    f"Syntax error in {name} at position 0: expected a value, found end of input",
                    position=0,
                    target=name,
                )
            return value
        return self._parse(rule, value, name)

    def _parse(self, rule: str, text: str, target: str) -> object:
        key = (rule, text)
        cached = self._cached(key)
        if cached is None:
            builder = _TreeBuilder(text, where=f"in {target}", target=target)
            cached = self._remember(key, self._build(rule, builder))
        return cached

    def _cached(self, key: tuple[str, str]) -> object:
        with self._cache_lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
            return found

    def _remember(self, key: tuple[str, str], value: object) -> object:
        with self._cache_lock:
            self._cache[key] = value
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return value

    def _build(self, rule: str, builder: _TreeBuilder) -> object:
        text = builder.text
        depth, deepest = _nesting(text)
        if depth > MAX_NESTING:
            raise builder.error(deepest, f"nesting deeper than {MAX_NESTING} levels is not supported")
        failure = _FurthestFailure()
        try:
            # The stubs want a ParseError and a cache of nodes; Parsimonious
            # only sets a failure's expr and pos, and keeps a dict per position.
            node = self._grammar[rule].match_core(text, 0, defaultdict(dict), failure)  # type: ignore[arg-type]
            if node is None:
                raise builder.syntax_error(failure)
            return builder.visit(node)
        except RecursionError:
            raise builder.error(0, "the text is nested too deeply") from None


def _system_option(name: str) -> Optional[str]:
    """The canonical name of a system option, None for a custom option."""
    lowered = name.lower()
    if lowered.startswith("$"):
        bare = lowered[1:]
        if bare not in _SYSTEM_OPTIONS:
            raise BadRequest(f"Unknown system query option {name}", target=name)
        return bare
    if lowered in _SYSTEM_OPTIONS and lowered not in _DOLLAR_ONLY:
        return lowered
    return None


def _path_error(position: int, what: str) -> ODataSyntaxError:
    return ODataSyntaxError(
        f"Syntax error in the resource path at position {position}: {what}",
        position=position,
        target=None,
    )


def _percent_decode(raw: str, start: int) -> tuple[str, list[int]]:
    """
    Decode one path segment; also give, for each decoded character and for
    the end, its offset in the raw path (``start`` is the segment's).
    """
    pieces: list[str] = []
    offsets: list[int] = []
    index = 0
    for run in [*_PERCENT_RUN.finditer(raw), None]:
        plain_end = len(raw) if run is None else run.start()
        plain = raw[index:plain_end]
        if "%" in plain:
            raise _path_error(start + index + plain.index("%"), "'%' must start a percent-encoded byte")
        pieces.append(plain)
        offsets.extend(range(start + index, start + plain_end))
        if run is None:
            break
        data = bytes.fromhex(run.group().replace("%", ""))
        try:
            decoded = data.decode("utf-8")
        except UnicodeDecodeError as error:
            position = start + run.start() + 3 * error.start
            raise _path_error(position, "percent-encoded bytes are not UTF-8") from None
        byte = 0
        for character in decoded:
            offsets.append(start + run.start() + 3 * byte)
            byte += len(character.encode("utf-8"))
        pieces.append(decoded)
        index = run.end()
    offsets.append(start + len(raw))
    return "".join(pieces), offsets


def _nesting(text: str) -> tuple[int, int]:
    """The deepest nesting of brackets outside string literals, and where it is reached."""
    depth = deepest = where = 0
    for match in _NESTING.finditer(text):
        token = match.group()
        if token in "([{":
            depth += 1
            if depth > deepest:
                deepest, where = depth, match.start()
        elif token in ")]}":
            depth -= 1
    return deepest, where


class _FurthestFailure:
    """
    Stands in for Parsimonious's ParseError while matching.  Parsimonious
    sets ``expr`` and then ``pos`` whenever a rule fails at or beyond the
    furthest position seen so far; this keeps every rule that failed at the
    furthest position, not only the last one, to say what was expected.
    """

    __slots__ = ("_pos", "_expr", "rules")

    def __init__(self) -> None:
        self._pos = -1
        self._expr: Optional[Expression] = None
        self.rules: list[str] = []

    @property
    def expr(self) -> Optional[Expression]:
        return self._expr

    @expr.setter
    def expr(self, expr: Expression) -> None:
        self._expr = expr

    @property
    def pos(self) -> int:
        return self._pos

    @pos.setter
    def pos(self, pos: int) -> None:
        name = self._expr.name if self._expr is not None else ""
        if pos > self._pos:
            self._pos = pos
            self.rules = [name]
        else:
            self.rules.append(name)


def _regex_match(node: Node) -> "re.Match[str]":
    """The match of a node that a regular expression of the grammar made."""
    assert isinstance(node, RegexNode), node.expr_name
    return node.match


def _parts(node: Node, found: Optional[list[Node]] = None) -> list[Node]:
    """The named nodes under ``node``, in order, looking through anonymous groups."""
    if found is None:
        found = []
    for child in node.children:
        if child.expr.name:
            found.append(child)
        else:
            _parts(child, found)
    return found


def _named(parts: list[Node], name: str) -> list[Node]:
    return [part for part in parts if part.expr_name == name]


# A filter's or a $search's syntax tree.
_Tree = TypeVar("_Tree")


def _balanced(
    terms: Sequence[_Tree],
    joins: Sequence[tuple[str, int]],
    make: Callable[[str, _Tree, _Tree, int], _Tree],
) -> _Tree:
    """Join ``terms`` with the associative operators ``joins`` as a balanced tree."""
    if len(terms) == 1:
        return terms[0]
    middle = (len(terms) + 1) // 2
    operator, position = joins[middle - 1]
    left = _balanced(terms[:middle], joins[: middle - 1], make)
    right = _balanced(terms[middle:], joins[middle:], make)
    return make(operator, left, right, position)


# An operand of commonExpr: its prefix operators ("not", "-") with their
# positions, and the operand itself; a literal list after "in" is a tuple.
_Operand = tuple[tuple[tuple[str, int], ...], Union[Expr, tuple[Expr, ...]]]


class _TreeBuilder:
    """
    Builds syntax nodes from one parse tree, top-down: each ``visit_<rule>``
    method reads the parts it needs and ignores punctuation.  One builder
    serves one parse; it tracks the lambda variables in scope.
    """

    def __init__(
        self, text: str, *, where: str, target: Optional[str], offsets: Optional[list[int]] = None
    ) -> None:
        self.text = text
        self._where = where
        self._target = target
        self._offsets = offsets
        self._lambda_variables: list[str] = []
        # How many commonExpr are being built, one inside the other.
        self._expression_level = 0

    # --- Errors ------------------------------------------------------------------

    def position(self, index: int) -> int:
        return index if self._offsets is None else self._offsets[index]

    def error(self, index: int, what: str) -> ODataSyntaxError:
        position = self.position(index)
        return ODataSyntaxError(
            f"Syntax error {self._where} at position {position}: {what}",
            position=position,
            target=self._target,
        )

    def unsupported(self, node: Node, what: str) -> NotImplementedYet:
        return NotImplementedYet(
            f"Not supported {self._where} at position {self.position(node.start)}: {what}",
            target=self._target,
        )

    def syntax_error(self, failure: _FurthestFailure) -> ODataSyntaxError:
        text = self.text
        index = max(failure.pos, 0)
        failed = set(failure.rules)
        described = dict.fromkeys(d for rule, d in _EXPECTATIONS.items() if rule in failed)
        implied = set().union(*(_IMPLIED.get(d, ()) for d in described))
        expected = [d for d in described if d not in implied] or ["valid syntax"]
        if "an operator" in expected:
            # An operator's rule starts at the blanks before it: point past them.
            while index < len(text) and text[index] in " \t":
                index += 1
        found = "end of input"
        if index < len(text):
            token = _TOKEN.match(text, index).group()  # type: ignore[union-attr]
            found = repr(token if len(token) <= 20 else token[:20] + "...")
            if token[0] in "'\"" and (len(token) == 1 or token[-1] != token[0]):
                found = f"an unclosed string {found}"
        before = _TOKEN_BEFORE.search(text[max(0, index - 60) : index].rstrip())
        after = f" after {before.group()!r}" if before else ""
        wanted = expected[0] if len(expected) == 1 else ", ".join(expected[:-1]) + " or " + expected[-1]
        return self.error(index, f"expected {wanted}{after}, found {found}")

    # --- Dispatch ----------------------------------------------------------------

    def visit(self, node: Node) -> object:
        method: Callable[[Node], object] = getattr(self, "visit_" + node.expr.name)
        return method(node)

    def expr(self, node: Node) -> Expr:
        return self.visit(node)  # type: ignore[return-value]

    def _entry(self, node: Node) -> object:
        """An entry point: build what it holds between blanks and the end."""
        content = [part for part in _parts(node) if part.expr.name not in ("BWS", "EOF")]
        return self.visit(content[0])

    visit_entry_filter = visit_entry_expression = visit_entry_orderby = _entry
    visit_entry_select = visit_entry_expand = visit_entry_search = visit_entry_compute = _entry
    visit_entry_nonNegativeInteger = visit_entry_levels = visit_entry_index = visit_entry_format = _entry
    visit_entry_schemaversion = visit_entry_aliasName = _entry

    def _choice(self, node: Node) -> object:
        """A rule that chooses among named rules: build the one that matched."""
        return self.visit(node.children[0])

    visit_primaryTerm = visit_arrayOrObject = visit_valueInUrl = _choice
    visit_keyPropertyValue = visit_keyPredicate = visit_searchPrimary = _choice

    def _key_predicate(self, node: Node) -> KeyPredicate:
        key = self.visit_keyPredicate(node)
        assert isinstance(key, KeyPredicate)
        return key

    def visit_primitiveLiteral(self, node: Node) -> Expr:
        # &literalStart, then the choice of literal forms.
        return self.expr(node.children[1].children[0])

    def visit_entry_count(self, node: Node) -> bool:
        return self._flag(_parts(node)[0])

    # --- Expressions ---------------------------------------------------------------

    def visit_commonExpr(self, node: Node) -> Expr:
        self._expression_level += 1
        try:
            result = self._common_expr(node)
        finally:
            self._expression_level -= 1
        if self._expression_level == 0 and _depth(result) > MAX_DEPTH:
            raise self.error(node.start, f"the expression is nested more than {MAX_DEPTH} levels deep")
        return result

    def _common_expr(self, node: Node) -> Expr:
        parts = _parts(node)
        operands: list[_Operand] = [self._operand(parts[0])]
        operators: list[tuple[str, int]] = []
        for operation in parts[1:]:
            operator, _, right = _parts(operation)
            name = operator.text.lstrip(" \t").lower()
            operators.append((name, self.position(operator.end - len(name))))
            if right.expr_name == "listExpr":
                operands.append(((), self._literal_list(right)))
            else:
                operands.append(self._operand(right))
        return self._by_precedence(operands, operators)

    def _operand(self, node: Node) -> _Operand:
        first = node.children[0]
        if first.expr.name == "primaryTerm":
            return (), self.expr(first)
        parts = _parts(node)
        prefixes = tuple(
            ("not" if part.text[0] in "nN" else "-", self.position(part.start)) for part in parts[:-1]
        )
        return prefixes, self.expr(parts[-1])

    def _by_precedence(self, operands: list[_Operand], operators: list[tuple[str, int]]) -> Expr:
        # Start at the loosest level any operator here belongs to.
        level = len(_BINARY_LEVELS)
        for name, _ in operators:
            level = min(level, _LEVEL_OF.get(name, level))
        if level == len(_BINARY_LEVELS):
            return self._primary_chain(operands, operators)
        names = _BINARY_LEVELS[level]
        groups: list[tuple[list[_Operand], list[tuple[str, int]]]] = [([operands[0]], [])]
        joins: list[tuple[str, int]] = []
        for operator, operand in zip(operators, operands[1:]):
            if operator[0] in names:
                joins.append(operator)
                groups.append(([operand], []))
            else:
                groups[-1][0].append(operand)
                groups[-1][1].append(operator)
        terms = [self._by_precedence(group, between) for group, between in groups]
        if names <= _ASSOCIATIVE:
            return _balanced(terms, joins, _binary)
        result = terms[0]
        for (name, position), term in zip(joins, terms[1:]):
            result = BinaryOp(name, result, term, pos=position)
        return result

    def _primary_chain(self, operands: list[_Operand], operators: list[tuple[str, int]]) -> Expr:
        """Operands joined by "has" and "in", which bind tighter than "not" and "-"."""
        prefixes, first = operands[0]
        result: Expr = first  # type: ignore[assignment]
        for (operator, position), (right_prefixes, right) in zip(operators, operands[1:]):
            if isinstance(right, tuple):
                result = In(result, right, pos=position)
                continue
            right = _with_prefixes(right_prefixes, right)
            if operator == "in":
                values = right.items if isinstance(right, ListExpr) else right
                result = In(result, values, pos=position)
            elif _is_enumeration(right):
                result = BinaryOp("has", result, right, pos=position)
            else:
                raise ODataSyntaxError(
                    f"Syntax error {self._where} at position {right.pos}: "
                    "expected an enumeration literal after 'has'",
                    position=right.pos,
                    target=self._target,
                )
        return _with_prefixes(prefixes, result)

    def _literal_list(self, node: Node) -> tuple[Expr, ...]:
        return tuple(self.expr(part) for part in _named(_parts(node), "primitiveLiteral"))

    def visit_parenExpr(self, node: Node) -> Expr:
        return self.expr(_named(_parts(node), "commonExpr")[0])

    def visit_methodCallExpr(self, node: Node) -> Call:
        parts = _parts(node)
        name = parts[0].text.lower()
        args = tuple(self.expr(part) for part in _named(parts, "commonExpr"))
        least, most = FUNCTION_ARITY[name]
        if not least <= len(args) <= most:
            wanted = str(least) if least == most else f"{least} or {most}"
            noun = "argument" if wanted == "1" else "arguments"
            raise self.error(node.start, f"{name} takes {wanted} {noun}, found {len(args)}")
        return Call(name, args, pos=self.position(node.start))

    def visit_castExpr(self, node: Node) -> Call:
        return self._type_function("cast", node)

    def visit_isofExpr(self, node: Node) -> Call:
        return self._type_function("isof", node)

    def _type_function(self, name: str, node: Node) -> Call:
        parts = _parts(node)
        args = [self.expr(part) for part in _named(parts, "commonExpr")]
        type_node = _named(parts, "optionallyQualifiedTypeName")[0]
        args.append(TypeName(type_node.text, pos=self.position(type_node.start)))
        return Call(name, tuple(args), pos=self.position(node.start))

    def visit_caseMethodCallExpr(self, node: Node) -> Call:
        args: list[Expr] = []
        for branch in _named(_parts(node), "caseBranch"):
            args.extend(self.expr(part) for part in _named(_parts(branch), "commonExpr"))
        return Call("case", tuple(args), pos=self.position(node.start))

    # --- Paths ---------------------------------------------------------------------

    def visit_simplePropertyPath(self, node: Node) -> Path:
        segments: list[PathSegment] = []
        index = node.start
        for name in node.text.split("/"):
            segments.append(PathSegment(name, pos=self.position(index)))
            index += len(name) + 1
        return self._path(segments, None, node.start)

    def visit_rootExpr(self, node: Node) -> Expr:
        return self._member_expr(_parts(node)[0], "$root", node.start)

    def visit_firstMemberExpr(self, node: Node) -> Expr:
        parts = _parts(node)
        if parts[0].expr_name == "memberExpr":
            return self._member_expr(parts[0], None, node.start)
        variable = _parts(parts[0])[0]
        if variable.expr_name == "parameterAlias":
            if len(parts) == 1:
                return Alias(variable.text[1:], pos=self.position(node.start))
            return self._member_expr(parts[1], variable.text, node.start)
        if len(parts) == 1:
            return Path((), root=variable.text, pos=self.position(node.start))
        return self._member_expr(parts[1], variable.text, node.start)

    def _member_expr(self, node: Node, root: Optional[str], start: int) -> Expr:
        parts = _parts(node)
        segments = [self._member_segment(part) for part in parts if part.expr_name != "memberEnd"]
        end = _named(parts, "memberEnd")
        if not end:
            return self._path(segments, root, start)
        last = _parts(end[0])[0]
        if last.expr_name == "count":
            if _parts(last):
                raise self.unsupported(last, "$count with query options inside an expression")
            segments.append(PathSegment("$count", pos=self.position(last.start)))
            return self._path(segments, root, start)
        collection = self._path(segments, root, start)
        return self._lambda(collection, last)

    def _member_segment(self, node: Node) -> PathSegment:
        parts = _parts(node)
        first = parts[0]
        if first.expr_name == "filterExpr":
            raise self.unsupported(first, "$filter path segments")
        key = None
        if len(parts) > 1:
            suffix = _parts(parts[1])[0]
            if suffix.expr_name == "functionExprParameters":
                raise self.unsupported(first, f"calls of functions defined by a model ({first.text})")
            key = self._key_predicate(suffix)
        return PathSegment(first.text, key=key, pos=self.position(first.start))

    def _path(self, segments: list[PathSegment], root: Optional[str], start: int) -> Path:
        """A path; a leading plain name that is a lambda variable in scope becomes its root."""
        if (
            root is None
            and segments
            and segments[0].key is None
            and segments[0].name in self._lambda_variables
        ):
            root, segments = segments[0].name, segments[1:]
        return Path(tuple(segments), root=root, pos=self.position(start))

    def _lambda(self, collection: Path, node: Node) -> Lambda:
        parts = _parts(node)
        kind = node.text[:3].lower()
        variables = _named(parts, "odataIdentifier")
        if not variables:
            return Lambda(collection, kind, None, None, pos=self.position(node.start))
        variable = variables[0].text
        self._lambda_variables.append(variable)
        try:
            predicate = self.expr(_named(parts, "commonExpr")[0])
        finally:
            self._lambda_variables.pop()
        return Lambda(collection, kind, variable, predicate, pos=self.position(node.start))

    def visit_parameterAlias(self, node: Node) -> Alias:
        return Alias(node.text[1:], pos=self.position(node.start))

    # --- Keys ----------------------------------------------------------------------

    def visit_simpleKey(self, node: Node) -> KeyPredicate:
        value = self.expr(_parts(node)[1])
        return KeyPredicate((value,), pos=self.position(node.start))

    def visit_compoundKey(self, node: Node) -> KeyPredicate:
        names: list[str] = []
        values: list[Expr] = []
        for pair in _named(_parts(node), "keyValuePair"):
            name, _, value = _parts(pair)
            names.append(name.text)
            values.append(self.expr(value))
        return KeyPredicate(tuple(values), tuple(names), pos=self.position(node.start))

    # --- Literals ------------------------------------------------------------------

    def _digits(self, node: Node, text: Optional[str] = None) -> str:
        """
        ``text`` (default: the node's), refused when it has more than
        `MAX_DIGITS` digits in a row: Python will not make an int of more
        than 4,300 (the conversion takes quadratic time), nor should the
        service spend seconds on one, and no value it handles has that many.
        """
        text = node.text if text is None else text
        longest = max((len(run) for run in _DIGIT_RUNS.findall(text)), default=0)
        if longest > MAX_DIGITS:
            raise self.error(
                node.start, f"numbers may have at most {MAX_DIGITS} digits, this one has {longest}"
            )
        return text

    def _literal(self, node: Node, value: object, type_name: Optional[str]) -> Literal:
        return Literal(value, type_name, pos=self.position(node.start))

    def visit_null(self, node: Node) -> Literal:
        return self._literal(node, None, None)

    def visit_boolean(self, node: Node) -> Literal:
        return self._literal(node, self._flag(node), "Edm.Boolean")

    @staticmethod
    def _flag(node: Node) -> bool:
        return node.text.lower() == "true"

    def visit_guid(self, node: Node) -> Literal:
        return self._literal(node, uuid.UUID(node.text), "Edm.Guid")

    def visit_stringLiteral(self, node: Node) -> Literal:
        return self._literal(node, node.text[1:-1].replace("''", "'"), "Edm.String")

    def visit_stringInUrl(self, node: Node) -> Literal:
        return self._literal(node, json.loads(node.text), "Edm.String")

    def visit_decimalLiteral(self, node: Node) -> Literal:
        text = self._digits(node)
        if text in ("INF", "-INF", "NaN"):
            return self._literal(node, float(text.lower()), "Edm.Double")
        if "e" in text or "E" in text:
            return self._literal(node, float(text), "Edm.Double")
        if "." in text:
            return self._literal(node, Decimal(text), "Edm.Decimal")
        number = int(text)
        if number in _INT32:
            return self._literal(node, number, "Edm.Int32")
        if number in _INT64:
            return self._literal(node, number, "Edm.Int64")
        return self._literal(node, Decimal(number), "Edm.Decimal")

    def visit_date(self, node: Node) -> Literal:
        return self._literal(node, self._date(node), "Edm.Date")

    def visit_timeOfDayLiteral(self, node: Node) -> Literal:
        return self._literal(node, self._time(node), "Edm.TimeOfDay")

    def visit_dateTimeOffsetLiteral(self, node: Node) -> Literal:
        offset = _regex_match(node).group("offset")
        if offset in ("Z", "z"):
            zone = datetime.timezone.utc
        else:
            sign = -1 if offset[0] == "-" else 1
            hours, minutes = int(offset[1:3]), int(offset[4:6])
            zone = datetime.timezone(sign * datetime.timedelta(hours=hours, minutes=minutes))
        value = datetime.datetime.combine(self._date(node), self._time(node), tzinfo=zone)
        return self._literal(node, value, "Edm.DateTimeOffset")

    def _date(self, node: Node) -> datetime.date:
        match = _regex_match(node)
        year = int(self._digits(node, match.group("year")))
        if not datetime.MINYEAR <= year <= datetime.MAXYEAR:
            raise self.unsupported(node, f"dates outside the years 1 to 9999 ({node.text})")
        try:
            return datetime.date(year, int(match.group("month")), int(match.group("day")))
        except ValueError:
            raise self.error(node.start, f"{node.text!r} is not a date of the calendar") from None

    @staticmethod
    def _time(node: Node) -> datetime.time:
        """A time of day; fractions are truncated to microseconds, a leap second ":60" to ":59.999999"."""
        match = _regex_match(node)
        second = int(match.group("second") or 0)
        fraction = match.group("fraction") or ""
        microsecond = int((fraction + "000000")[:6])
        if second == 60:
            second, microsecond = 59, 999999
        return datetime.time(int(match.group("hour")), int(match.group("minute")), second, microsecond)

    def visit_durationLiteral(self, node: Node) -> Literal:
        self._digits(node)
        match = _regex_match(node)
        fraction = match.group("fraction") or ""
        try:
            value = datetime.timedelta(
                days=int(match.group("days") or 0),
                hours=int(match.group("hours") or 0),
                minutes=int(match.group("minutes") or 0),
                seconds=int(match.group("seconds") or 0),
                microseconds=int((fraction + "000000")[:6]),
            )
        except OverflowError:
            raise self.error(node.start, f"duration {node.text} is too long") from None
        return self._literal(node, -value if match.group("sign") else value, "Edm.Duration")

    def visit_enumLiteral(self, node: Node) -> EnumLiteral:
        self._digits(node)
        match = _regex_match(node)
        members = tuple(
            str(int(member)) if member[0] in "+-0123456789" else member
            for member in match.group("members").split(",")
        )
        return EnumLiteral(match.group("type"), members, pos=self.position(node.start))

    def visit_binaryLiteral(self, node: Node) -> Literal:
        data = _regex_match(node).group("data").rstrip("=")
        value = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        return self._literal(node, value, "Edm.Binary")

    def visit_geographyLiteral(self, node: Node) -> Literal:
        return self._geo("Geography", node)

    def visit_geometryLiteral(self, node: Node) -> Literal:
        return self._geo("Geometry", node)

    def _geo(self, family: str, node: Node) -> Literal:
        """A geo literal keeps its text, ``SRID=0;Point(1 2)``; its type names the shape."""
        body = _named(_parts(node), "geoLiteral")[0]
        kind = _GEO_KINDS[_parts(body)[0].expr_name]
        text = node.text
        return self._literal(node, text[text.index("'") + 1 : -1], f"Edm.{family}{kind}")

    # --- JSON ----------------------------------------------------------------------

    def visit_array(self, node: Node) -> ListExpr:
        parts = _parts(node)
        items = tuple(self.expr(part) for part in _named(parts, "valueInUrl"))
        return ListExpr(items, pos=self.position(node.start + parts[0].text.index("[")))

    def visit_object(self, node: Node) -> JsonValue:
        parts = _parts(node)
        members = []
        for member in _named(parts, "member"):
            name, _, value = _parts(member)
            members.append((json.loads(name.text), self.expr(value)))
        return JsonValue(tuple(members), pos=self.position(node.start + parts[0].text.index("{")))

    # --- $orderby, $compute, $search ---------------------------------------------------

    def visit_orderbyList(self, node: Node) -> tuple[OrderByItem, ...]:
        found = _named(_parts(node), "orderbyItem")
        if len(found) > MAX_ORDERBY_ITEMS:
            raise self.error(
                found[MAX_ORDERBY_ITEMS].start, f"$orderby may name at most {MAX_ORDERBY_ITEMS} items, not {len(found)}"
            )
        items = []
        for item in found:
            parts = _parts(item)
            order = _named(parts, "sortOrder")
            descending = bool(order) and order[0].text.lower() == "desc"
            items.append(OrderByItem(self.expr(parts[0]), descending, pos=self.position(item.start)))
        return tuple(items)

    def visit_computeList(self, node: Node) -> tuple[ComputeItem, ...]:
        items = []
        for item in _named(_parts(node), "computeItem"):
            parts = _parts(item)
            items.append(ComputeItem(self.expr(parts[0]), parts[-1].text, pos=self.position(item.start)))
        return tuple(items)

    def visit_searchExpr(self, node: Node) -> SearchExpr:
        parts = _parts(node)
        # Operands split at OR; each group is joined by AND, explicit or implied.
        groups: list[list[SearchExpr]] = [[self._search_unary(parts[0])]]
        and_joins: list[list[tuple[str, int]]] = [[]]
        or_joins: list[tuple[str, int]] = []
        for operation in parts[1:]:
            pieces = _parts(operation)
            operand = self._search_unary(pieces[-1])
            keyword = pieces[1] if len(pieces) > 2 else pieces[-1]
            if operation.expr_name == "searchOrExpr":
                or_joins.append(("or", self.position(keyword.start)))
                groups.append([operand])
                and_joins.append([])
            else:
                and_joins[-1].append(("and", self.position(keyword.start)))
                groups[-1].append(operand)
        terms = [_balanced(group, joins, _search_binary) for group, joins in zip(groups, and_joins)]
        return _balanced(terms, or_joins, _search_binary)

    def _search_unary(self, node: Node) -> SearchExpr:
        parts = _parts(node)
        result: SearchExpr = self.visit(parts[-1])  # type: ignore[assignment]
        negations = parts[:-1]
        # NOT NOT x is x: a chain of thousands must not make a tree as deep.
        if len(negations) % 2:
            result = SearchNot(result, pos=self.position(negations[0].start))
        return result

    def visit_searchParenExpr(self, node: Node) -> SearchExpr:
        return self.visit_searchExpr(_named(_parts(node), "searchExpr")[0])

    def visit_searchPhrase(self, node: Node) -> SearchTerm:
        text = re.sub(r'\\(["\\])', r"\1", node.text[1:-1])
        return SearchTerm(text, phrase=True, pos=self.position(node.start))

    def visit_searchWord(self, node: Node) -> SearchTerm:
        return SearchTerm(node.text, pos=self.position(node.start))

    def visit_searchExpr_incomplete(self, node: Node) -> SearchTerm:
        """A single-quoted search string: one phrase, taken as written."""
        return SearchTerm(node.text[1:-1].replace("''", "'"), phrase=True, pos=self.position(node.start))

    # --- $select, $expand and their nested options ------------------------------------

    def visit_selectList(self, node: Node) -> tuple[SelectItem, ...]:
        return tuple(self._select_item(item) for item in _named(_parts(node), "selectItem"))

    def _select_item(self, node: Node) -> SelectItem:
        position = self.position(node.start)
        chosen = _parts(node)[0]
        if chosen.expr_name == "STAR":
            return SelectItem((), star=True, pos=position)
        if chosen.expr_name == "allOperationsInSchema":
            return SelectItem((chosen.text[:-2],), star=True, pos=position)
        parts = _parts(chosen)
        path = tuple(segment.text for segment in _named(parts, "selectSegment"))
        tails = _named(parts, "selectPathTail")
        if not tails:
            return SelectItem(path, pos=position)
        tail = _parts(tails[0])
        if _named(tail, "parameterNames"):
            raise self.unsupported(tails[0], "function signatures in $select")
        return SelectItem(path, options=self._options(tail), pos=position)

    def visit_expandList(self, node: Node) -> tuple[ExpandItem, ...]:
        return tuple(self._expand_item(item) for item in _named(_parts(node), "expandItem"))

    def _expand_item(self, node: Node) -> ExpandItem:
        position = self.position(node.start)
        chosen = _parts(node)[0]
        if chosen.expr_name == "expandValueItem":
            return ExpandItem(("$value",), pos=position)
        if chosen.expr_name == "expandStarItem":
            return self._expand_star((), chosen, position)
        parts = _parts(chosen)
        path = tuple(segment.text for segment in _named(parts, "expandSegment"))
        tails = _named(parts, "expandPathTail")
        if not tails:
            return ExpandItem(path, pos=position)
        tail = _parts(tails[0])
        if tail[0].expr_name == "expandStarItem":
            return self._expand_star(path, tail[0], position)
        ref = tail[0].expr_name == "refSegment"
        count = tail[0].expr_name == "countSegment"
        if (ref or count) and len(tail) == 1:
            return ExpandItem(path, ref=ref, count=count, pos=position)
        fields = self._option_fields(tail[1:] if ref or count else tail)
        levels = fields.pop("levels", None)
        options = QueryOptions(**fields)  # type: ignore[arg-type]
        return ExpandItem(
            path, ref=ref, count=count, options=options, levels=levels, pos=position  # type: ignore[arg-type]
        )

    def _expand_star(self, path: tuple[str, ...], node: Node, position: int) -> ExpandItem:
        suffixes = _named(_parts(node), "expandStarSuffix")
        if not suffixes:
            return ExpandItem(path, star=True, pos=position)
        suffix = _parts(suffixes[0])
        if suffix[0].expr_name == "refSegment":
            return ExpandItem(path, star=True, ref=True, pos=position)
        levels = self._option_fields(suffix)["levels"]
        return ExpandItem(path, star=True, levels=levels, pos=position)  # type: ignore[arg-type]

    def _options(self, parts: list[Node]) -> QueryOptions:
        return QueryOptions(**self._option_fields(parts))  # type: ignore[arg-type]

    def _option_fields(self, parts: list[Node]) -> dict[str, object]:
        """The nested options among ``parts`` (punctuation is skipped), by QueryOptions field."""
        fields: dict[str, object] = {}
        aliases: dict[str, Expr] = {}
        for part in parts:
            if part.expr_name in ("OPEN", "CLOSE", "SEMI"):
                continue
            while part.expr_name in _OPTION_CHOICES:
                part = part.children[0]
            pieces = _parts(part)
            if part.expr_name == "aliasAndValue":
                name = pieces[0].text[1:]
                if name in aliases:
                    raise self.error(part.start, f"parameter alias @{name} is given more than once")
                aliases[name] = self.expr(pieces[-1])
                continue
            field = part.expr_name if part.expr_name != "inlinecount" else "count"
            if field in fields:
                written = part.text.split("=", 1)[0]
                raise self.error(part.start, f"query option {written} is given more than once")
            value = pieces[-1]
            fields[field] = self._flag(value) if field == "count" else self.visit(value)
        if aliases:
            fields["aliases"] = tuple(aliases.items())
        return fields

    # --- Simple option values ----------------------------------------------------------

    def visit_nonNegativeInteger(self, node: Node) -> int:
        return int(self._digits(node))

    def visit_indexValue(self, node: Node) -> int:
        return int(self._digits(node))

    def visit_levelsValue(self, node: Node) -> Union[int, str]:
        return "max" if node.text.lower() == "max" else int(self._digits(node))

    def visit_formatValue(self, node: Node) -> str:
        return node.text.lower() if "/" not in node.text else node.text

    def visit_schemaversionValue(self, node: Node) -> str:
        return node.text

    # --- Resource path segments ----------------------------------------------------------

    def visit_entry_firstSegment(self, node: Node) -> PathSegment:
        parts = _parts(node)
        if parts[0].expr_name == "crossjoin":
            raise self.unsupported(parts[0], "$crossjoin")
        return self._path_segment(parts)

    def visit_entry_nextSegment(self, node: Node) -> PathSegment:
        parts = _parts(node)
        if parts[0].expr_name == "filterInPath":
            raise self.unsupported(parts[0], "$filter path segments")
        if parts[0].expr_name == "namedSegment":
            parts = _parts(parts[0])
        return self._path_segment(parts)

    def _path_segment(self, parts: list[Node]) -> PathSegment:
        name = parts[0]
        position = self.position(name.start)
        groups = _parts(parts[1]) if len(parts) > 1 and parts[1].expr_name == "segmentParens" else []
        if not groups:
            return PathSegment(name.text, pos=position)
        if len(groups) > 1 or groups[0].expr_name == "functionParameters":
            raise self.unsupported(name, f"calls of functions defined by a model ({name.text})")
        return PathSegment(name.text, key=self._key_predicate(groups[0]), pos=position)


# The flags the grammar's terminals may carry, the same bits in both modules.
_REGEX_FLAGS = re.IGNORECASE | re.MULTILINE | re.DOTALL | re.VERBOSE | re.ASCII


def _with_standard_regexes(grammar: Grammar) -> Grammar:
    """
    ``grammar`` with its terminals matched by the standard library's ``re``.

    Parsimonious compiles them with the ``regex`` module, whose ``match``
    first looks for a literal the pattern requires anywhere after the
    position: a date literal requires "-", so every number of an ``in`` list
    was first searched for a "-" up to the end of the URL, and parsing grew
    with the square of its length (40,000 numbers, a 230 KB list: 4 s, the
    reactor held all along).  ``re`` tries the match where it stands.  The
    grammar's patterns mean the same in both (the parser's tests check it).
    """
    for expression in grammar_expressions(grammar):
        if isinstance(expression, Regex):
            compiled = re.compile(expression.re.pattern, expression.re.flags & _REGEX_FLAGS)
            expression.re = compiled
            expression.identity_tuple = (expression.name, compiled)
    return grammar


def grammar_expressions(grammar: Grammar) -> list[Expression]:
    """Every expression of ``grammar``, rules and the anonymous ones inside them, once each."""
    found: dict[int, Expression] = {}
    pending: list[Expression] = list(grammar.values())
    while pending:
        expression = pending.pop()
        if id(expression) not in found:
            found[id(expression)] = expression
            pending.extend(getattr(expression, "members", ()))
    return list(found.values())


def _depth(expr: Expr) -> int:
    """The depth of an expression tree, without recursion."""
    deepest = 0
    pending: list[tuple[Expr, int]] = [(expr, 1)]
    while pending:
        node, depth = pending.pop()
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in _subexpressions(node))
    return deepest


def _subexpressions(node: Expr) -> Sequence[Expr]:
    if isinstance(node, BinaryOp):
        return (node.left, node.right)
    if isinstance(node, UnaryOp):
        return (node.operand,)
    if isinstance(node, In):
        return (node.operand, *node.values) if isinstance(node.values, tuple) else (node.operand, node.values)
    if isinstance(node, Call):
        return node.args
    if isinstance(node, Lambda):
        return (node.collection,) if node.predicate is None else (node.collection, node.predicate)
    if isinstance(node, ListExpr):
        return node.items
    if isinstance(node, JsonValue):
        return tuple(value for _, value in node.value)  # type: ignore[attr-defined]
    return ()


def _is_enumeration(expr: Expr) -> bool:
    """An enumeration literal, or a string that binding may read as one (``'Red,Blue'``)."""
    return isinstance(expr, EnumLiteral) or (isinstance(expr, Literal) and expr.type == "Edm.String")


def _with_prefixes(prefixes: tuple[tuple[str, int], ...], operand: Expr) -> Expr:
    for operator, position in reversed(prefixes):
        operand = UnaryOp(operator, operand, pos=position)
    return operand


def _binary(operator: str, left: Expr, right: Expr, position: int) -> Expr:
    return BinaryOp(operator, left, right, pos=position)


def _search_binary(operator: str, left: SearchExpr, right: SearchExpr, position: int) -> SearchExpr:
    return SearchBinary(operator, left, right, pos=position)
