"""
``$root`` paths in expressions: ``Hours gt $root/TimeEntries('x')/Hours``.

A ``$root`` path names one value of the service, the same for every row, so
it is read once, before binding, and replaced by a literal of its value.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from . import syntax
from .errors import BadRequest
from .executor import Executor, PropertyResult
from .model import Model
from .resource import bind_path


def root_paths(node: Any) -> list[syntax.Path]:
    """
    The ``$root`` paths in a syntax tree.  It walks every node: for a filter
    of a megabyte, a third of a second (the service does it off the reactor).
    """
    if isinstance(node, syntax.Path):
        found = [node] if node.root == "$root" else []
        return found + [p for segment in node.segments for p in root_paths(segment)]
    if dataclasses.is_dataclass(node):
        return [p for field in dataclasses.fields(node) for p in root_paths(getattr(node, field.name))]
    if isinstance(node, tuple):
        return [p for item in node for p in root_paths(item)]
    return []


def _replaced(node: Any, values: Mapping[syntax.Path, syntax.Literal]) -> Any:
    if isinstance(node, syntax.Path) and node in values:
        return values[node]
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        changes = {
            field.name: _replaced(getattr(node, field.name), values)
            for field in dataclasses.fields(node)
        }
        return dataclasses.replace(node, **changes)
    if isinstance(node, tuple):
        return tuple(_replaced(item, values) for item in node)
    return node


async def resolve_root_paths(
    expr: syntax.Expr,
    paths: list[syntax.Path],
    executor: Executor,
    model: Model,
    aliases: Mapping[str, syntax.Expr],
    option: str,
) -> syntax.Expr:
    """``expr`` with its ``$root/...`` paths (``paths``, from `root_paths`) read and replaced by their values."""
    if not paths:
        return expr
    values: dict[syntax.Path, syntax.Literal] = {}
    for path in paths:
        if path in values:
            continue
        resolved = await executor.resolve(bind_path(syntax.ResourcePath(path.segments), model, aliases))
        if not isinstance(resolved, PropertyResult) or resolved.property.edm is None:
            raise BadRequest(
                f"{option} at position {path.pos}: a $root path must end at a primitive property", target=option
            )
        values[path] = syntax.Literal(resolved.value, resolved.property.type if resolved.value is not None else None, pos=path.pos)
    return _replaced(expr, values)
