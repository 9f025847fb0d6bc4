"""
The canonical functions of OData 4.01 (Part 2, 5.1.1.5 to 5.1.1.9): their
signatures, which the binder checks calls against, and their implementations,
which the evaluator calls.

An implementation receives non-null argument values (a null argument makes the
result null before it is called) and raises TypeError, ValueError or
ArithmeticError when a value is not one it is defined for (an untyped value of
the wrong kind); the evaluator turns that into null.

``now``, ``maxdatetime`` and ``mindatetime`` are constants the binder folds;
``cast`` and ``isof`` take a type name and are handled by the binder and the
evaluator themselves.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, Callable, Optional, Sequence

from .model import INTEGER_TYPES, NUMERIC_TYPES, Edm
from .patterns import PatternMatcher
from .values import DECIMAL_CONTEXT, TypeRef, round_half_away

# --- Signatures ------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """What one argument may be: ``description`` names it in error messages."""

    description: str
    accepts: Callable[[TypeRef], bool]


def _primitive(description: str, *edms: Edm) -> Param:
    allowed = frozenset(edms)
    return Param(
        description,
        lambda t: t.is_null or t.is_untyped or (not t.collection and t.edm in allowed),
    )


STRING = _primitive("Edm.String", Edm.STRING)
INTEGER = _primitive("an integer", *INTEGER_TYPES)
NUMBER = _primitive("a number", *NUMERIC_TYPES)
DATE_LIKE = _primitive("Edm.Date or Edm.DateTimeOffset", Edm.DATE, Edm.DATE_TIME_OFFSET)
TIME_LIKE = _primitive("Edm.DateTimeOffset or Edm.TimeOfDay", Edm.DATE_TIME_OFFSET, Edm.TIME_OF_DAY)
DATE_TIME = _primitive("Edm.DateTimeOffset", Edm.DATE_TIME_OFFSET)
DURATION = _primitive("Edm.Duration", Edm.DURATION)
COLLECTION = Param("a collection", lambda t: t.is_null or t.is_untyped or t.collection)

ResultType = Callable[[Sequence[TypeRef]], TypeRef]


def _fixed(edm: Edm) -> ResultType:
    return lambda args: TypeRef(edm.value)


def _first_collection(args: Sequence[TypeRef]) -> TypeRef:
    for arg in args:
        if arg.collection:
            return arg
    return TypeRef(Edm.UNTYPED.value)


def _rounded(args: Sequence[TypeRef]) -> TypeRef:
    # Edm.Double round(Edm.Double), Edm.Decimal round(Edm.Decimal); integers
    # promote to Edm.Decimal, Edm.Single to Edm.Double.
    (arg,) = args
    if arg.is_untyped:
        return arg
    return TypeRef((Edm.DOUBLE if arg.edm in (Edm.DOUBLE, Edm.SINGLE) else Edm.DECIMAL).value)


@dataclass(frozen=True)
class Signature:
    params: tuple[Param, ...]
    result: ResultType

    def accepts(self, args: Sequence[TypeRef]) -> bool:
        return len(args) == len(self.params) and all(p.accepts(a) for p, a in zip(self.params, args))

    def __str__(self) -> str:
        return "(" + ", ".join(p.description for p in self.params) + ")"


@dataclass(frozen=True)
class CanonicalFunction:
    """
    With ``per_call_site``, ``implementation`` makes the function: the
    evaluator calls it once for each call in an expression it compiles, so
    that the call can keep state for the request (`PatternMatcher` keeps
    its time budget).
    """

    name: str
    signatures: tuple[Signature, ...]
    implementation: Callable[..., Any]
    per_call_site: bool = False

    def signature_for(self, args: Sequence[TypeRef]) -> Optional[Signature]:
        for signature in self.signatures:
            if signature.accepts(args):
                return signature
        return None


# --- Implementations: strings and collections ------------------------------------------------


def _both(left: Any, right: Any, kind: type) -> bool:
    return isinstance(left, kind) and isinstance(right, kind)


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("not an integer")
    return value


def _find(items: list[Any], part: list[Any]) -> int:
    """Index of the first occurrence of ``part`` as a contiguous run of ``items``, or -1."""
    for start in range(len(items) - len(part) + 1):
        if items[start : start + len(part)] == part:
            return start
    return -1


# The longest text or collection concat makes; longer is undefined (null),
# as an overflow is.  Without a bound, nested concats can ask for gigabytes.
MAX_CONCAT_LENGTH = 1 << 20


def concat(left: Any, right: Any) -> Any:
    if _both(left, right, str) or _both(left, right, list):
        if len(left) + len(right) > MAX_CONCAT_LENGTH:
            raise ValueError(f"concat would make more than {MAX_CONCAT_LENGTH:,} characters or items")
        return left + right
    raise TypeError("concat needs two strings or two collections")


def contains(left: Any, right: Any) -> bool:
    if _both(left, right, str):
        return bool(right in left)
    if _both(left, right, list):
        return _find(left, right) >= 0
    raise TypeError("contains needs two strings or two collections")


def startswith(left: Any, right: Any) -> bool:
    if _both(left, right, str):
        return bool(left.startswith(right))
    if _both(left, right, list):
        return bool(left[: len(right)] == right)
    raise TypeError("startswith needs two strings or two collections")


def endswith(left: Any, right: Any) -> bool:
    if _both(left, right, str):
        return bool(left.endswith(right))
    if _both(left, right, list):
        return len(right) <= len(left) and bool(left[len(left) - len(right) :] == right)
    raise TypeError("endswith needs two strings or two collections")


def indexof(left: Any, right: Any) -> int:
    if _both(left, right, str):
        return int(left.find(right))
    if _both(left, right, list):
        return _find(left, right)
    raise TypeError("indexof needs two strings or two collections")


def length(value: Any) -> int:
    if isinstance(value, (str, list)):
        return len(value)
    raise TypeError("length needs a string or a collection")


def substring(value: Any, start: Any, count: Any = None) -> Any:
    """
    Zero-based; a start beyond the end gives an empty result; a negative start
    counts from the end (Part 2 allows it); a negative length is undefined.
    """
    if not isinstance(value, (str, list)):
        raise TypeError("substring needs a string or a collection")
    first = _integer(start)
    if first < 0:
        first = max(len(value) + first, 0)
    if count is None:
        return value[first:]
    size = _integer(count)
    if size < 0:
        raise ValueError("substring with a negative length")
    return value[first : first + size]


def hassubset(left: Any, right: Any) -> bool:
    """Whether ``left`` holds every item of ``right``, as often as ``right`` does."""
    if not _both(left, right, list):
        raise TypeError("hassubset needs two collections")
    remaining = list(left)
    for item in right:
        for index, candidate in enumerate(remaining):
            if candidate == item:
                del remaining[index]
                break
        else:
            return False
    return True


def hassubsequence(left: Any, right: Any) -> bool:
    """Whether ``right``'s items appear in ``left`` in the same order (not necessarily adjacent)."""
    if not _both(left, right, list):
        raise TypeError("hassubsequence needs two collections")
    position = 0
    for item in left:
        if position < len(right) and item == right[position]:
            position += 1
    return position == len(right)


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


# The characters with the Unicode White_Space property ("trim ... according to
# Unicode rules"); str.strip() would also strip U+001C..U+001F.
UNICODE_WHITESPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


def trim(value: Any) -> str:
    return _string(value).strip(UNICODE_WHITESPACE)


def tolower(value: Any) -> str:
    return _string(value).lower()


def toupper(value: Any) -> str:
    return _string(value).upper()


# --- Implementations: dates and times --------------------------------------------------------


def _date_like(value: Any) -> datetime.date:
    if not isinstance(value, datetime.date):
        raise TypeError("not a date")
    return value


def _time_like(value: Any) -> Any:
    if not isinstance(value, (datetime.datetime, datetime.time)):
        raise TypeError("not a date-time or time of day")
    return value


def _date_time(value: Any) -> datetime.datetime:
    if not isinstance(value, datetime.datetime):
        raise TypeError("not a date-time")
    return value


def _seconds(microseconds: int) -> Decimal:
    # Exact, and without trailing zeros: 1500000 -> 1.5, 5400000000 -> 5400, 0 -> 0.
    if microseconds == 0:
        return Decimal(0)
    return DECIMAL_CONTEXT.divide(Decimal(microseconds), Decimal(1_000_000))


def fractionalseconds(value: Any) -> Decimal:
    return _seconds(_time_like(value).microsecond)


def totalseconds(value: Any) -> Decimal:
    if not isinstance(value, datetime.timedelta):
        raise TypeError("not a duration")
    return _seconds(value // datetime.timedelta(microseconds=1))


def totaloffsetminutes(value: Any) -> int:
    offset = _date_time(value).utcoffset()
    if offset is None:
        raise ValueError("a date-time without an offset")
    return offset // datetime.timedelta(minutes=1)


# --- Implementations: arithmetic ---------------------------------------------------------------


def _rounding(
    for_decimal: Callable[[Decimal], Decimal], for_float: Callable[[float], float]
) -> Callable[[Any], Any]:
    def apply(value: Any) -> Any:
        if isinstance(value, bool):
            raise TypeError("not a number")
        if isinstance(value, float):
            return for_float(value) if math.isfinite(value) else value
        if isinstance(value, (int, Decimal)):
            number = Decimal(value)
            return for_decimal(number) if number.is_finite() else number
        raise TypeError("not a number")

    return apply


def _round_float(value: float) -> float:
    # Through the exact decimal value, so that 0.49999999999999994 is not
    # rounded up as floor(x + 0.5) would.
    return float(round_half_away(Decimal(value)))


# --- The table -------------------------------------------------------------------------------


def _function(
    name: str,
    implementation: Callable[..., Any],
    *signatures: tuple[tuple[Param, ...], ResultType],
    per_call_site: bool = False,
) -> CanonicalFunction:
    return CanonicalFunction(
        name, tuple(Signature(params, result) for params, result in signatures), implementation, per_call_site
    )


_BOOLEAN, _INT32 = _fixed(Edm.BOOLEAN), _fixed(Edm.INT32)
_STRING_OR_COLLECTION_TEST = (((STRING, STRING), _BOOLEAN), ((COLLECTION, COLLECTION), _BOOLEAN))

FUNCTIONS: dict[str, CanonicalFunction] = {
    f.name: f
    for f in (
        _function(
            "concat",
            concat,
            ((STRING, STRING), _fixed(Edm.STRING)),
            ((COLLECTION, COLLECTION), _first_collection),
        ),
        _function("contains", contains, *_STRING_OR_COLLECTION_TEST),
        _function("startswith", startswith, *_STRING_OR_COLLECTION_TEST),
        _function("endswith", endswith, *_STRING_OR_COLLECTION_TEST),
        _function("indexof", indexof, ((STRING, STRING), _INT32), ((COLLECTION, COLLECTION), _INT32)),
        _function("length", length, ((STRING,), _INT32), ((COLLECTION,), _INT32)),
        _function(
            "substring",
            substring,
            ((STRING, INTEGER), _fixed(Edm.STRING)),
            ((STRING, INTEGER, INTEGER), _fixed(Edm.STRING)),
            ((COLLECTION, INTEGER), _first_collection),
            ((COLLECTION, INTEGER, INTEGER), _first_collection),
        ),
        _function("hassubset", hassubset, ((COLLECTION, COLLECTION), _BOOLEAN)),
        _function("hassubsequence", hassubsequence, ((COLLECTION, COLLECTION), _BOOLEAN)),
        _function("matchespattern", PatternMatcher, ((STRING, STRING), _BOOLEAN), per_call_site=True),
        _function("tolower", tolower, ((STRING,), _fixed(Edm.STRING))),
        _function("toupper", toupper, ((STRING,), _fixed(Edm.STRING))),
        _function("trim", trim, ((STRING,), _fixed(Edm.STRING))),
        _function("date", lambda v: _date_time(v).date(), ((DATE_TIME,), _fixed(Edm.DATE))),
        _function("time", lambda v: _date_time(v).time(), ((DATE_TIME,), _fixed(Edm.TIME_OF_DAY))),
        _function("year", lambda v: _date_like(v).year, ((DATE_LIKE,), _INT32)),
        _function("month", lambda v: _date_like(v).month, ((DATE_LIKE,), _INT32)),
        _function("day", lambda v: _date_like(v).day, ((DATE_LIKE,), _INT32)),
        _function("hour", lambda v: _time_like(v).hour, ((TIME_LIKE,), _INT32)),
        _function("minute", lambda v: _time_like(v).minute, ((TIME_LIKE,), _INT32)),
        _function("second", lambda v: _time_like(v).second, ((TIME_LIKE,), _INT32)),
        _function("fractionalseconds", fractionalseconds, ((TIME_LIKE,), _fixed(Edm.DECIMAL))),
        _function("totaloffsetminutes", totaloffsetminutes, ((DATE_TIME,), _INT32)),
        _function("totalseconds", totalseconds, ((DURATION,), _fixed(Edm.DECIMAL))),
        _function("round", _rounding(round_half_away, _round_float), ((NUMBER,), _rounded)),
        _function(
            "floor",
            _rounding(lambda d: d.to_integral_value(rounding=ROUND_FLOOR), lambda f: float(math.floor(f))),
            ((NUMBER,), _rounded),
        ),
        _function(
            "ceiling",
            _rounding(lambda d: d.to_integral_value(rounding=ROUND_CEILING), lambda f: float(math.ceil(f))),
            ((NUMBER,), _rounded),
        ),
    )
}

# Functions the binder replaces by their value (one instant per request).
CONSTANT_FUNCTIONS = frozenset({"now", "maxdatetime", "mindatetime"})
TYPE_FUNCTIONS = frozenset({"cast", "isof"})
