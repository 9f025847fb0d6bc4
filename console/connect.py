"""
What a BI tool needs to open one OData URL: Power Query M for Power BI and
Excel, a server URL for Tableau, and the .pbids and .odc files that open it.

Everything here is built from the URL alone: no credential ever goes into a
connection; each tool asks its user for the token when it connects.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit
from xml.sax.saxutils import escape

# Options Tableau has no use for: it pages by itself, reads whole rows and
# cannot read the nested results of $expand.
_TABLEAU_DROPS = frozenset({"top", "skip", "count", "expand", "select", "orderby", "skiptoken", "format"})


class NotAFeedURL(ValueError):
    """The text is not an absolute http(s) URL."""


@dataclass(frozen=True)
class Feed:
    """An absolute OData URL and what the connections derived from it are named."""

    url: str

    @classmethod
    def parse(cls, text: str) -> "Feed":
        url = text.strip()
        if any(character in url for character in "\r\n\t"):
            raise NotAFeedURL("a URL holds no line breaks or tabs")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise NotAFeedURL("an absolute http:// or https:// URL is needed")
        return cls(url)

    @property
    def name(self) -> str:
        """The entity set the URL reads, or the service's host: a name for the query in Excel."""
        parts = urlsplit(self.url)
        segment = unquote(parts.path.rstrip("/").rsplit("/", 1)[-1])
        name = re.sub(r"[^A-Za-z0-9_]", "", segment.split("(", 1)[0])
        return name or "OData"

    def power_query(self) -> str:
        """The M expression for Power BI and Excel (Power Query's OData.Feed, version 4, implementation 2.0)."""
        return (
            "let\n"
            f"    Source = OData.Feed({_m_string(self.url)}, null, [Implementation = \"2.0\", ODataVersion = 4])\n"
            "in\n"
            "    Source"
        )

    def tableau_url(self) -> str:
        """The URL without the options Tableau cannot use; the filter and search stay."""
        parts = urlsplit(self.url)
        kept = [
            pair for pair in parts.query.split("&")
            if pair and unquote(pair.split("=", 1)[0]).lower().lstrip("$") not in _TABLEAU_DROPS
        ]
        return urlunsplit(parts._replace(query="&".join(kept), fragment=""))

    def pbids(self) -> bytes:
        """A Power BI data source file: opening it starts Power BI Desktop's OData connection."""
        document = {
            "version": "0.1",
            "connections": [
                {
                    "details": {"protocol": "odata", "address": {"url": self.url}},
                    "options": {},
                    "mode": "Import",
                }
            ],
        }
        return json.dumps(document, indent=2).encode("utf-8")

    def mashup(self) -> str:
        """The Power Query document an .odc file carries: one query named after the entity set."""
        return (
            '<Mashup xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            'xmlns="http://schemas.microsoft.com/DataMashup">'
            "<Client>EXCEL</Client><Version>2.x</Version><MinVersion>2.x</MinVersion>"
            "<Culture>en-US</Culture><SafeCombine>true</SafeCombine><Items>"
            f'<Query Name="{escape(self.name)}"><Formula>{escape(self.power_query())}</Formula>'
            '<IsParameterQuery xsi:nil="true" /><IsDirectQuery xsi:nil="true" /></Query>'
            "</Items></Mashup>"
        )


def _m_string(text: str) -> str:
    """A Power Query M text literal: quotes doubled, control characters as #(cr) and the like."""
    body = text.replace('"', '""').replace("#(", "#(#)(")
    body = body.replace("\r", "#(cr)").replace("\n", "#(lf)").replace("\t", "#(tab)")
    return f'"{body}"'


__all__ = ["Feed", "NotAFeedURL"]
