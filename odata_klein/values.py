"""
The meaning of primitive values in expressions (OData 4.01 Part 2, 5.1.1):
numeric promotion, arithmetic, the text forms that ``cast`` reads and writes,
and the loose comparison of untyped (dynamic) values.

Values are the Python values of `odata_klein.model.Property`; ``None`` is
null.  Operations here never see null (callers propagate it) and signal an
undefined result by raising `ArithmeticError`, `TypeError` or `ValueError`,
which the evaluator turns into null: OData says such requests fail (integer
division by zero, ``mod`` zero, overflow), but a filter must not fail half way
through a response because of one row's data, so the row's value is null
instead.  The binder rejects the cases a literal makes certain
(``Hours div 0``).
"""

from __future__ import annotations

import base64
import datetime
import math
import re
import struct
import uuid
from dataclasses import dataclass
from decimal import (
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)
from typing import Any, Callable, Optional

from .bound import BoundExpr, BoundProperty
from .model import INTEGER_TYPES, NUMERIC_TYPES, Edm
from .serializer import encode_json_value

# Edm.Decimal arithmetic: 34 significant digits (IEEE 754 decimal128), so that
# sums and products of ordinary amounts are exact; the traps turn division by
# zero and overflow into exceptions (see the module docstring).
DECIMAL_CONTEXT = Context(
    prec=34,
    rounding=ROUND_HALF_EVEN,
    Emax=6144,
    Emin=-6143,
    traps=[InvalidOperation, DivisionByZero, Overflow],
)

INT_RANGES: dict[Edm, tuple[int, int]] = {
    Edm.BYTE: (0, 255),
    Edm.SBYTE: (-128, 127),
    Edm.INT16: (-(2**15), 2**15 - 1),
    Edm.INT32: (-(2**31), 2**31 - 1),
    Edm.INT64: (-(2**63), 2**63 - 1),
}
_INT64_MIN, _INT64_MAX = INT_RANGES[Edm.INT64]

TEMPORAL_TYPES = frozenset({Edm.DATE, Edm.DATE_TIME_OFFSET, Edm.TIME_OF_DAY, Edm.DURATION})


@dataclass(frozen=True)
class TypeRef:
    """The type of an expression: a qualified type name (None for ``null``), maybe a collection."""

    name: Optional[str]
    collection: bool = False

    @property
    def edm(self) -> Optional[Edm]:
        """The primitive type of the value (or of the items), None when not primitive."""
        try:
            return Edm(self.name)
        except ValueError:
            return None

    @property
    def is_null(self) -> bool:
        return self.name is None

    @property
    def is_untyped(self) -> bool:
        return self.name == Edm.UNTYPED.value and not self.collection

    def __str__(self) -> str:
        if self.name is None:
            return "null"
        return f"Collection({self.name})" if self.collection else self.name

    @classmethod
    def parse(cls, text: Optional[str]) -> "TypeRef":
        """Read ``Collection(X)`` or ``X`` as written in bound nodes' ``type``."""
        if text is not None and text.startswith("Collection(") and text.endswith(")"):
            return cls(text[len("Collection(") : -1], True)
        return cls(text)

    @classmethod
    def of(cls, expr: BoundExpr) -> "TypeRef":
        """The type of a bound expression."""
        if isinstance(expr, BoundProperty):
            return cls(expr.type, expr.collection)
        return cls.parse(expr.type)


def edm_of_value(value: object) -> Optional[Edm]:
    """The primitive type a Python value stands for (for untyped data), None for structures."""
    if isinstance(value, bool):
        return Edm.BOOLEAN
    if isinstance(value, int):
        return Edm.INT64
    if isinstance(value, Decimal):
        return Edm.DECIMAL
    if isinstance(value, float):
        return Edm.DOUBLE
    if isinstance(value, str):
        return Edm.STRING
    if isinstance(value, datetime.datetime):
        return Edm.DATE_TIME_OFFSET
    if isinstance(value, datetime.date):
        return Edm.DATE
    if isinstance(value, datetime.time):
        return Edm.TIME_OF_DAY
    if isinstance(value, datetime.timedelta):
        return Edm.DURATION
    if isinstance(value, uuid.UUID):
        return Edm.GUID
    if isinstance(value, bytes):
        return Edm.BINARY
    return None


# --- Numeric promotion ----------------------------------------------------------

# Part 2, "Numeric Promotion": the first type of this list that either operand
# has wins.  Byte and SByte together do not fit either, so they meet in Int16.
_PROMOTION_ORDER = (Edm.DOUBLE, Edm.SINGLE, Edm.DECIMAL, Edm.INT64, Edm.INT32, Edm.INT16)


def promote(left: Edm, right: Edm) -> Edm:
    """The common type of two numeric types."""
    for candidate in _PROMOTION_ORDER:
        if candidate in (left, right):
            return candidate
    return left if left == right else Edm.INT16


def to_decimal(value: Any) -> Decimal:
    """An integer or decimal as a Decimal, exactly; a float by its shortest text (0.1 -> 0.1)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        return Decimal(repr(value))
    return Decimal(value)


def checked_int(value: int, edm: Edm = Edm.INT64) -> int:
    low, high = INT_RANGES[edm]
    if not low <= value <= high:
        raise OverflowError(f"{value} is out of the range of {edm.value}")
    return value


def round_half_away(value: Decimal) -> Decimal:
    return value.to_integral_value(rounding=ROUND_HALF_UP)


def convert_number(value: Any, target: Edm) -> Any:
    """
    A number converted to another numeric type as ``cast`` does: rounding to
    the nearest (half away from zero) for integer targets; ValueError or
    OverflowError when the integer part does not fit.
    """
    if target in INTEGER_TYPES:
        if isinstance(value, int):
            return checked_int(value, target)
        return checked_int(int(round_half_away(to_decimal(value))), target)
    if target is Edm.DECIMAL:
        return to_decimal(value)
    result = float(value)
    if target is Edm.SINGLE:
        # Rounds to single precision (beyond its range: to infinity).
        result = struct.unpack("f", struct.pack("f", result))[0]
    if math.isinf(result) and math.isfinite(value):
        raise OverflowError(f"{value} does not fit into {target.value}")
    return result


# --- Arithmetic -----------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """
    How an operator applies to operands of given types: the type of the result
    and the function computing it from two non-null operands.
    """

    result: str
    apply: Callable[[Any, Any], Any]


def _int_div(left: int, right: int) -> int:
    # Truncates toward zero, as in C# (Python's // floors).
    quotient = abs(left) // abs(right)
    return checked_int(quotient if (left < 0) == (right < 0) else -quotient)


def _int_mod(left: int, right: int) -> int:
    # The remainder takes the sign of the dividend (Python's % takes the divisor's).
    remainder = abs(left) % abs(right)
    return remainder if left >= 0 else -remainder


def _float_div(left: Any, right: Any) -> float:
    dividend, divisor = float(left), float(right)
    if divisor == 0.0:
        # Part 2, "Division": positive div zero is INF, negative -INF, zero (or NaN) NaN.
        if math.isnan(dividend) or dividend == 0.0:
            return math.nan
        return math.inf if dividend > 0 else -math.inf
    return dividend / divisor


def _decimal_divby(left: Any, right: Any) -> Decimal:
    left, right = to_decimal(left), to_decimal(right)
    if right == 0:
        # divby never fails: like a floating division it gives INF, -INF or NaN.
        if left == 0 or left.is_nan():
            return Decimal("NaN")
        return Decimal("Infinity") if left > 0 else Decimal("-Infinity")
    return DECIMAL_CONTEXT.divide(left, right)


def _float_mod(left: Any, right: Any) -> float:
    # math.fmod truncates like C; fmod(x, 0) raises ValueError, which makes the result null.
    return math.fmod(float(left), float(right))


_INTEGER_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "add": lambda a, b: checked_int(a + b),
    "sub": lambda a, b: checked_int(a - b),
    "mul": lambda a, b: checked_int(a * b),
    "div": _int_div,
    "divby": _decimal_divby,
    "mod": _int_mod,
}
_DECIMAL_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "add": lambda a, b: DECIMAL_CONTEXT.add(to_decimal(a), to_decimal(b)),
    "sub": lambda a, b: DECIMAL_CONTEXT.subtract(to_decimal(a), to_decimal(b)),
    "mul": lambda a, b: DECIMAL_CONTEXT.multiply(to_decimal(a), to_decimal(b)),
    "div": lambda a, b: DECIMAL_CONTEXT.divide(to_decimal(a), to_decimal(b)),
    "divby": _decimal_divby,
    "mod": lambda a, b: DECIMAL_CONTEXT.remainder(to_decimal(a), to_decimal(b)),
}
_FLOAT_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "add": lambda a, b: float(a) + float(b),
    "sub": lambda a, b: float(a) - float(b),
    "mul": lambda a, b: float(a) * float(b),
    "div": _float_div,
    "divby": _float_div,
    "mod": _float_mod,
}


def _midnight(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time())


def _scale_duration(duration: datetime.timedelta, factor: Any) -> datetime.timedelta:
    """A duration times a number, exactly to the microsecond (half-even)."""
    microseconds = Decimal(duration // datetime.timedelta(microseconds=1))
    exact = factor if isinstance(factor, (int, Decimal)) else Decimal(float(factor))
    scaled = DECIMAL_CONTEXT.multiply(microseconds, exact)
    return datetime.timedelta(microseconds=int(scaled.to_integral_value(rounding=ROUND_HALF_EVEN)))


def _divide_duration(duration: datetime.timedelta, divisor: Any) -> datetime.timedelta:
    exact = divisor if isinstance(divisor, (int, Decimal)) else Decimal(float(divisor))
    if exact == 0:
        raise ZeroDivisionError("duration divided by zero")
    return _scale_duration(duration, DECIMAL_CONTEXT.divide(Decimal(1), exact))


# (operator, left type, right type) -> (result type, function) for the
# time-related operands of Part 2, "Addition" to "Division".  Adding a duration
# to a date goes through midnight of that date, as XML Schema 2 (E.3.3) says:
# today plus PT1H is today, today minus PT1H is yesterday.
_DTO, _DATE, _DURATION = Edm.DATE_TIME_OFFSET, Edm.DATE, Edm.DURATION
_TEMPORAL_OPS: dict[tuple[str, Edm, Edm], tuple[Edm, Callable[[Any, Any], Any]]] = {
    ("add", _DTO, _DURATION): (_DTO, lambda a, b: a + b),
    ("add", _DURATION, _DURATION): (_DURATION, lambda a, b: a + b),
    ("add", _DATE, _DURATION): (_DATE, lambda a, b: (_midnight(a) + b).date()),
    ("sub", _DTO, _DURATION): (_DTO, lambda a, b: a - b),
    ("sub", _DURATION, _DURATION): (_DURATION, lambda a, b: a - b),
    ("sub", _DTO, _DTO): (_DURATION, lambda a, b: a - b),
    ("sub", _DATE, _DURATION): (_DATE, lambda a, b: (_midnight(a) - b).date()),
    ("sub", _DATE, _DATE): (_DURATION, lambda a, b: a - b),
}


def binary_operation(op: str, left: TypeRef, right: TypeRef) -> Optional[Operation]:
    """
    The operation ``left op right`` for arithmetic operators (add sub mul div
    divby mod), or None when OData does not define it for these types.
    ``null`` operands fit anything; untyped operands are resolved per row.
    """
    if left.collection or right.collection:
        return None
    if left.is_untyped or right.is_untyped:
        return Operation(Edm.UNTYPED.value, _dynamic_operation(op))
    if left.is_null or right.is_null:
        # The result is null whatever it would have been: a number keeps its
        # type; with a date, time or duration the result's type is unknown.
        known = right if left.is_null else left
        if known.edm in NUMERIC_TYPES:
            return Operation(known.edm.value, lambda a, b: None)
        if known.is_null or known.edm in TEMPORAL_TYPES:
            return Operation(Edm.UNTYPED.value, lambda a, b: None)
        return None
    lt, rt = left.edm, right.edm
    if lt is None or rt is None:
        return None
    return _typed_operation(op, lt, rt)


def _typed_operation(op: str, lt: Edm, rt: Edm) -> Optional[Operation]:
    if lt in NUMERIC_TYPES and rt in NUMERIC_TYPES:
        common = promote(lt, rt)
        if common in (Edm.DOUBLE, Edm.SINGLE):
            return Operation(common.value, _FLOAT_OPS[op])
        if common is Edm.DECIMAL:
            return Operation(common.value, _DECIMAL_OPS[op])
        result = Edm.DECIMAL if op == "divby" else common
        return Operation(result.value, _INTEGER_OPS[op])
    temporal = _TEMPORAL_OPS.get((op, lt, rt))
    if temporal is not None:
        return Operation(temporal[0].value, temporal[1])
    if op == "mul" and lt is _DURATION and rt in NUMERIC_TYPES:
        return Operation(_DURATION.value, _scale_duration)
    if op == "mul" and lt in NUMERIC_TYPES and rt is _DURATION:
        return Operation(_DURATION.value, lambda a, b: _scale_duration(b, a))
    if op in ("div", "divby") and lt is _DURATION and rt in NUMERIC_TYPES:
        return Operation(_DURATION.value, _divide_duration)
    return None


def _dynamic_operation(op: str) -> Callable[[Any, Any], Any]:
    def apply(left: Any, right: Any) -> Any:
        lt, rt = edm_of_value(left), edm_of_value(right)
        operation = _typed_operation(op, lt, rt) if lt is not None and rt is not None else None
        if operation is None:
            raise TypeError(f"{op} is not defined for {lt} and {rt}")
        return operation.apply(left, right)

    return apply


def negation(operand: TypeRef) -> Optional[Operation]:
    """Unary minus: numbers and durations (Part 2, "Negation")."""
    edm = operand.edm
    if operand.collection:
        return None
    if operand.is_untyped:
        return Operation(Edm.UNTYPED.value, lambda value, _: _negate_dynamic(value))
    if operand.is_null:
        return Operation(Edm.UNTYPED.value, lambda value, _: None)
    if edm in INTEGER_TYPES:
        return Operation(edm.value, lambda value, _: checked_int(-value))
    if edm is Edm.DECIMAL:
        return Operation(edm.value, lambda value, _: DECIMAL_CONTEXT.minus(value))
    if edm in (Edm.DOUBLE, Edm.SINGLE, Edm.DURATION):
        return Operation(edm.value, lambda value, _: -value)
    return None


def _negate_dynamic(value: Any) -> Any:
    edm = edm_of_value(value)
    operation = negation(TypeRef(edm.value)) if edm is not None and edm is not Edm.UNTYPED else None
    if operation is None:
        raise TypeError("negation of a non-number")
    return operation.apply(value, None)


# --- Text forms -------------------------------------------------------------------

_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
_DECIMAL_TEXT = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_SPECIAL_NUMBERS = {"INF": math.inf, "-INF": -math.inf, "NaN": math.nan}
_DATE_TEXT = re.compile(r"-?[0-9]{4,}-[0-9]{2}-[0-9]{2}")
_TIME_TEXT = r"([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,12}))?)?"
_TIME_OF_DAY_TEXT = re.compile(_TIME_TEXT)
_DATE_TIME_TEXT = re.compile(
    r"(-?[0-9]{4,}-[0-9]{2}-[0-9]{2})T" + _TIME_TEXT + r"(Z|[+-][0-9]{2}:[0-9]{2})?", re.I
)
_DURATION_TEXT = re.compile(
    r"(-)?P(?:([0-9]+)D)?(?:T(?=[0-9])(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)(?:\.([0-9]+))?S)?)?", re.I
)
_GUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_BINARY_TEXT = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def _time_of_day(hour: str, minute: str, second: Optional[str], fraction: Optional[str]) -> datetime.time:
    # Fractions beyond microseconds are truncated: Python keeps six digits.
    micro = int((fraction or "").ljust(6, "0")[:6])
    return datetime.time(int(hour), int(minute), int(second or 0), micro)


def _parse_duration(text: str) -> datetime.timedelta:
    match = _DURATION_TEXT.fullmatch(text)
    if match is None or match.group(0).upper() in ("P", "-P"):
        raise ValueError(f"{text!r} is not a duration")
    sign, days, hours, minutes, seconds, fraction = match.groups()
    micro = int((fraction or "").ljust(6, "0")[:6])
    total = datetime.timedelta(
        days=int(days or 0),
        hours=int(hours or 0),
        minutes=int(minutes or 0),
        seconds=int(seconds or 0),
        microseconds=micro,
    )
    return -total if sign else total


def _parse_date_time(text: str) -> datetime.datetime:
    match = _DATE_TIME_TEXT.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a date-time")
    day, hour, minute, second, fraction, offset = match.groups()
    moment = datetime.datetime.combine(
        datetime.date.fromisoformat(day), _time_of_day(hour, minute, second, fraction)
    )
    # Cast rule 11: a date-time without an offset is UTC.
    zone = datetime.timezone.utc
    if offset is not None and offset.upper() != "Z":
        delta = datetime.timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6]))
        zone = datetime.timezone(-delta if offset[0] == "-" else delta)
    return moment.replace(tzinfo=zone)


def parse_text(edm: Edm, text: str) -> Any:
    """
    The value of ``text`` in the literal form OData payloads use for ``edm``
    (what ``cast`` of a string reads).  Raises ValueError (or OverflowError)
    when the text is not such a literal.
    """
    if edm is Edm.STRING or edm is Edm.UNTYPED:
        return text
    if edm is Edm.BOOLEAN:
        lowered = text.lower()
        if lowered not in ("true", "false"):
            raise ValueError(f"{text!r} is not a boolean")
        return lowered == "true"
    if edm in INTEGER_TYPES:
        if not _INTEGER_TEXT.fullmatch(text):
            raise ValueError(f"{text!r} is not an integer")
        return checked_int(int(text), edm)
    if edm in NUMERIC_TYPES:
        if text in _SPECIAL_NUMBERS:
            special = _SPECIAL_NUMBERS[text]
            return Decimal(text.replace("INF", "Infinity")) if edm is Edm.DECIMAL else special
        if not _DECIMAL_TEXT.fullmatch(text):
            raise ValueError(f"{text!r} is not a number")
        return convert_number(Decimal(text), edm) if edm is not Edm.DECIMAL else Decimal(text)
    if edm is Edm.DATE:
        if not _DATE_TEXT.fullmatch(text):
            raise ValueError(f"{text!r} is not a date")
        return datetime.date.fromisoformat(text)
    if edm is Edm.TIME_OF_DAY:
        match = _TIME_OF_DAY_TEXT.fullmatch(text)
        if match is None:
            raise ValueError(f"{text!r} is not a time of day")
        return _time_of_day(*match.groups())
    if edm is Edm.DATE_TIME_OFFSET:
        return _parse_date_time(text)
    if edm is Edm.DURATION:
        return _parse_duration(text)
    if edm is Edm.GUID:
        if not _GUID_TEXT.fullmatch(text):
            raise ValueError(f"{text!r} is not a GUID")
        return uuid.UUID(text)
    if edm is Edm.BINARY:
        if not _BINARY_TEXT.fullmatch(text):
            raise ValueError(f"{text!r} is not base64url")
        try:
            return base64.urlsafe_b64decode(text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4))
        except (ValueError, TypeError) as error:
            raise ValueError(str(error)) from None
    raise ValueError(f"no text form for {edm.value}")


def payload_text(value: Any) -> str:
    """A primitive value in the literal form of JSON payloads (what ``cast`` to Edm.String writes)."""
    if isinstance(value, str):
        return value
    # The serializer's JSON forms of non-string primitives hold no character
    # that JSON escapes, so dropping the quotes gives the literal.
    return encode_json_value(value).strip('"')


# --- Cast (Part 2, "cast", assignment rules 1 to 5 and 11) -----------------------------------


def cast_primitive(value: Any, source: Optional[Edm], target: Edm) -> Any:
    """
    ``cast(value, target)`` for a non-null primitive ``value`` of type
    ``source`` (``Edm.Untyped``: whatever the Python value is).  Returns None
    when the cast fails.
    """
    if source is Edm.UNTYPED or source is None:
        source = edm_of_value(value)
        if source is None:
            # A structure (JSON object or array) is not a primitive.
            return value if target is Edm.UNTYPED else None
    if target is Edm.UNTYPED or source is target:
        return value
    try:
        if target is Edm.STRING:
            return payload_text(value)
        if source is Edm.STRING:
            return parse_text(target, value)
        if source in NUMERIC_TYPES and target in NUMERIC_TYPES:
            return convert_number(value, target)
    except (ValueError, ArithmeticError):
        return None
    return None


# --- Loose comparison of untyped values ---------------------------------------------------


def loose_pair(left: Any, right: Any) -> Optional[tuple[Any, Any]]:
    """
    Two non-null values at least one of which is untyped, made comparable; None
    when they cannot be compared (then ``eq`` is false, ``ne`` true and the
    order operators false).  Numbers compare with numbers, booleans with
    booleans; a string compared with a value of another primitive type is read
    as a literal of that type (dynamic properties often hold dates as text).
    """
    lt, rt = edm_of_value(left), edm_of_value(right)
    if lt is None or rt is None:
        both_mappings = isinstance(left, dict) and isinstance(right, dict)
        both_lists = isinstance(left, list) and isinstance(right, list)
        return (left, right) if both_mappings or both_lists else None
    if lt is rt or (lt in NUMERIC_TYPES and rt in NUMERIC_TYPES):
        return left, right
    try:
        if lt is Edm.STRING:
            return parse_text(Edm.DECIMAL if rt in NUMERIC_TYPES else rt, left), right
        if rt is Edm.STRING:
            return left, parse_text(Edm.DECIMAL if lt in NUMERIC_TYPES else lt, right)
    except (ValueError, ArithmeticError):
        return None
    return None
