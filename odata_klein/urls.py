"""Building the absolute URLs a response carries: context URLs, entity ids, next links."""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal
from typing import Mapping, Sequence
from urllib.parse import quote

from .model import EntityType

# Characters left as they are in query values: enough for OData syntax to stay
# readable (quotes, parentheses, commas, colons) while spaces, '+', '&', '#'
# and '%' are always escaped.
_QUERY_SAFE = "$'(),:;=@/*!"
_PATH_SAFE = "$'(),:;=@*!"


def quote_query_value(value: str) -> str:
    return quote(value, safe=_QUERY_SAFE)


def encode_query(pairs: Sequence[tuple[str, str]]) -> str:
    return "&".join(f"{quote_query_value(name)}={quote_query_value(value)}" for name, value in pairs)


def key_literal(value: object) -> str:
    """The URL literal of a key value: ``'It''s'``, ``42``, ``2026-01-02``."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, (datetime.date, datetime.time, uuid.UUID)):
        return value.isoformat() if not isinstance(value, uuid.UUID) else str(value)
    return quote(str(value), safe="")


def key_predicate(entity_type: EntityType, row: Mapping[str, object]) -> str:
    """``('abc')`` for a single key, ``(A=1,B='x')`` for a composite one, percent-encoded."""
    if len(entity_type.key) == 1:
        inner = key_literal(row[entity_type.key[0]])
    else:
        inner = ",".join(f"{name}={key_literal(row[name])}" for name in entity_type.key)
    return "(" + quote(inner, safe=_PATH_SAFE) + ")"
