"""
Exact spelling of the OData header names on the wire.

Twisted writes header names in a canonical capitalisation, which would turn
``OData-Version`` into ``Odata-Version``.  HTTP says names are case-insensitive,
but Power BI has been seen to break on the unconventional spelling, and every
OData server it is tested against sends ``OData-Version``.  Twisted's name
encoder has a table for exactly such names (``_caseMappings``, beside
``ETag`` and ``WWW-Authenticate``); registering ours there is idempotent.
It is private, so a test reads the raw bytes on the wire to catch any change.
"""

from __future__ import annotations

from twisted.web import http_headers

ODATA_VERSION_HEADER = "OData-Version"
ODATA_MAX_VERSION_HEADER = "OData-MaxVersion"

_SPELLINGS = {
    b"Odata-Version": b"OData-Version",
    b"Odata-Maxversion": b"OData-MaxVersion",
    b"Odata-Entityid": b"OData-EntityId",
    b"Odata-Isolation": b"OData-Isolation",
}


def install_header_spellings() -> None:
    http_headers._NameEncoder._caseMappings.update(_SPELLINGS)
    # Names encoded before the table knew ours would stay cached as Odata-...
    cache = http_headers._nameEncoder._canonicalHeaderCache
    for name in [n for n, encoded in cache.items() if encoded in _SPELLINGS]:
        del cache[name]
