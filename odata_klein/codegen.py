"""
Functions generated from source text, like ``dataclasses`` generates
``__init__``: the hot paths of every response (writing entities, reading
records) are straight-line functions made for the properties at hand.

Compiling their source costs about a millisecond, far more than the few
rows a small response holds, while one service generates the same few
sources again and again (per entity type, selection and format).  So each
source is compiled once (a bounded cache of code objects, which hold
nothing but the source's own text), and every caller gets a function of its
own, with its own globals.
"""

from __future__ import annotations

from functools import lru_cache
from types import CodeType
from typing import Any, Callable


@lru_cache(maxsize=512)
def _compiled(source: str) -> CodeType:
    return compile(source, "<generated>", "exec")


def define(source: str, name: str, namespace: dict[str, Any]) -> Callable[..., Any]:
    """The function ``name`` that ``source`` defines, with ``namespace`` as its globals."""
    exec(_compiled(source), namespace)
    return namespace[name]


__all__ = ["define"]
