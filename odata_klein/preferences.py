"""The ``Prefer`` request header (RFC 7240) as far as OData reads it."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Preferences:
    max_page_size: Optional[int] = None
    # odata.include-annotations patterns ("*", "Ns.*", "Ns.term", "-Ns.term").
    include_annotations: tuple[str, ...] = ()

    def includes_annotation(self, term: str) -> bool:
        """Whether the client asked for the instance annotation ``term`` (exclusions win)."""
        included = False
        for pattern in self.include_annotations:
            excluded = pattern.startswith("-")
            if fnmatch.fnmatchcase(term, pattern.lstrip("-")):
                if excluded:
                    return False
                included = True
        return included


def _split_preferences(header: str) -> list[tuple[str, str]]:
    """(name, value) pairs; commas inside quoted values do not split."""
    items: list[str] = []
    current: list[str] = []
    quoted = False
    for char in header:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    pairs = []
    for item in items:
        token = item.split(";")[0].strip()
        name, _, value = token.partition("=")
        pairs.append((name.strip().lower(), value.strip().strip('"')))
    return pairs


def parse_prefer(header: Optional[str]) -> Preferences:
    """
    Read ``odata.maxpagesize`` and ``odata.include-annotations`` (also without
    the ``odata.`` prefix, as 4.01 allows).  Preferences are hints: one that
    cannot be read is ignored, as RFC 7240 asks, rather than failing the request.
    """
    max_page_size: Optional[int] = None
    annotations: tuple[str, ...] = ()
    for name, value in _split_preferences(header or ""):
        if name in ("odata.maxpagesize", "maxpagesize"):
            try:
                parsed = int(value)
            except ValueError:
                continue
            if parsed > 0:
                max_page_size = parsed
        elif name in ("odata.include-annotations", "include-annotations"):
            annotations = tuple(p.strip() for p in value.split(",") if p.strip())
    return Preferences(max_page_size=max_page_size, include_annotations=annotations)
