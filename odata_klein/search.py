"""
``$search``: free-text search over an entity's text properties.

OData leaves the meaning of a search term to the service.  Here a term or a
phrase matches an entity when any of its Edm.String properties contains it,
ignoring case (Unicode case folding); ``AND``, ``OR``, ``NOT`` and
juxtaposition (AND) combine terms.  Every string property counts, custom
field columns included, so an administrator can find entries by comment,
name or custom field text alike.
"""

from __future__ import annotations

from typing import Callable

from .interfaces import Row
from .model import Edm, EntityType
from .syntax import SearchBinary, SearchExpr, SearchNot, SearchTerm

Haystack = Callable[[Row], str]
Matcher = Callable[[str], bool]


def _haystack(entity_type: EntityType) -> Haystack:
    names = [p.name for p in entity_type.properties if p.edm is Edm.STRING and not p.collection]

    def text_of(row: Row) -> str:
        # A separator no term can contain keeps matches inside one property.
        return "\0".join(value for name in names if type(value := row.get(name)) is str).casefold()

    return text_of


def _matcher(expr: SearchExpr) -> Matcher:
    if isinstance(expr, SearchTerm):
        needle = expr.text.casefold()
        return lambda text: needle in text
    if isinstance(expr, SearchNot):
        inner = _matcher(expr.operand)
        return lambda text: not inner(text)
    assert isinstance(expr, SearchBinary)
    left, right = _matcher(expr.left), _matcher(expr.right)
    if expr.op == "or":
        return lambda text: left(text) or right(text)
    return lambda text: left(text) and right(text)


def compile_search(expr: SearchExpr, entity_type: EntityType) -> Callable[[Row], bool]:
    """A predicate over rows of ``entity_type`` that holds when the row matches ``expr``."""
    text_of = _haystack(entity_type)
    matches = _matcher(expr)
    return lambda row: matches(text_of(row))
