"""The ``Prefer`` request header (RFC 7240) as far as OData reads it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Preferences:
    max_page_size: Optional[int] = None


def parse_prefer(header: Optional[str]) -> Preferences:
    """
    Read ``odata.maxpagesize`` (also without the ``odata.`` prefix, as 4.01
    allows).  Preferences are hints: one that cannot be read is ignored, as
    RFC 7240 asks, rather than failing the request.
    """
    max_page_size: Optional[int] = None
    for item in (header or "").split(","):
        token = item.split(";")[0].strip()
        name, _, value = token.partition("=")
        name = name.strip().lower()
        if name in ("odata.maxpagesize", "maxpagesize"):
            try:
                parsed = int(value.strip().strip('"'))
            except ValueError:
                continue
            if parsed > 0:
                max_page_size = parsed
    return Preferences(max_page_size=max_page_size)
