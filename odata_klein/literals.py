"""Key values: checking a key literal against the key property's type."""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal, InvalidOperation
from typing import Mapping

from . import syntax
from .errors import BadRequest
from .model import INTEGER_TYPES, Edm, Property

_ACCEPTED_LITERAL_TYPES: Mapping[Edm, tuple[type, ...]] = {
    Edm.STRING: (str,),
    Edm.GUID: (uuid.UUID,),
    Edm.DATE: (datetime.date,),
    Edm.BOOLEAN: (bool,),
    Edm.DECIMAL: (Decimal, int),
}


def key_value_from_literal(
    expr: syntax.Expr, prop: Property, aliases: Mapping[str, syntax.Expr]
) -> object:
    """The Python value of a key given in parentheses, checked against the key property."""
    if isinstance(expr, syntax.Alias):
        if expr.name not in aliases:
            raise BadRequest(f"the key uses alias @{expr.name}, which the query does not define", target=prop.name)
        expr = aliases[expr.name]
    if not isinstance(expr, syntax.Literal) or expr.value is None:
        raise BadRequest(f"the key {prop.name} must be a {prop.type} literal", target=prop.name)
    value = expr.value
    edm = prop.edm
    if edm in INTEGER_TYPES:
        if type(value) is int:
            return value
    elif edm is Edm.DATE:
        if type(value) is datetime.date:
            return value
    elif edm is not None and edm in _ACCEPTED_LITERAL_TYPES:
        if isinstance(value, _ACCEPTED_LITERAL_TYPES[edm]) and not (edm is not Edm.BOOLEAN and isinstance(value, bool)):
            return Decimal(value) if isinstance(value, int) and edm is Edm.DECIMAL else value
    raise BadRequest(
        f"the key {prop.name} is of type {prop.type}; {expr.type or 'null'} given", target=prop.name
    )


def key_value_from_segment(text: str, prop: Property) -> object:
    """The value of a key given as a path segment (``TimeEntries/abc``), already percent-decoded."""
    edm = prop.edm
    try:
        if edm is Edm.STRING:
            return text
        if edm in INTEGER_TYPES:
            return int(text)
        if edm is Edm.GUID:
            return uuid.UUID(text)
        if edm is Edm.DATE:
            return datetime.date.fromisoformat(text)
        if edm is Edm.DECIMAL:
            return Decimal(text)
    except (ValueError, InvalidOperation):
        pass
    raise BadRequest(f"{text!r} is not a valid {prop.type} key", target=prop.name)
