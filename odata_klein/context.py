"""
The select list of context URLs: ``#TimeEntries(Hours,Job,Job(Name))``.

OData 4.01 Part 1, section 10 ("Context URL"), "Collection of Expanded
Entities" and "Expanded Entity", with the ABNF's ``selectList`` rule:

* the list holds what ``$select`` listed (properties, navigation properties,
  ``*``), as the request listed it;
* then every expanded navigation property, suffixed with the parenthesised
  list of what is selected and expanded in its entities, recursively, and
  with empty parentheses when its expansion has no nested ``$select`` or
  ``$expand`` (``TimeEntries(Job())``): a navigation property both selected
  and expanded appears twice, bare and suffixed (``Hours,Job,Job(Name)``);
* a recursive expansion (``$levels``) is written once, with ``+`` before its
  parentheses (``Manager+(Name)``); ``$expand=*`` is written as the
  navigation properties it expands, there being no shortcut for it;
* with neither ``$select`` nor ``$expand`` there is no list at all.

The spec lets a 4.0 response leave out an expanded navigation property
without nested options; 4.01 requires ``Nav()``.  This service writes
``Nav()`` in its 4.0 responses as well, as current Microsoft.OData (the
library behind ASP.NET Core OData, whose feeds Power BI and Excel read) does
for both versions: a list with only expanded navigation properties still
means that all structural properties are selected.
"""

from __future__ import annotations

from typing import Optional, Sequence

from .expansion import ExpandNode


def select_expand_fragment(select_list: Optional[str], nodes: Sequence[ExpandNode]) -> str:
    """
    The parenthesised select list to append to the entity set name, or "".
    ``select_list`` is the comma-separated ``$select`` list (None without
    ``$select``); ``nodes`` are the request's expansions.
    """
    items = _items(select_list, nodes)
    return "(" + ",".join(items) + ")" if items else ""


def _items(select_list: Optional[str], nodes: Sequence[ExpandNode]) -> list[str]:
    items = [select_list] if select_list else []
    for node in nodes:
        # The copy of itself that $levels nests inside a recursive node is what "+" stands for.
        nested = [n for n in node.expand if not (node.recursive and n.name == node.name)]
        marker = "+" if node.recursive else ""
        items.append(f"{node.name}{marker}(" + ",".join(_items(node.selection.listed, nested)) + ")")
    return items


__all__ = ["select_expand_fragment"]
