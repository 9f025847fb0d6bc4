"""
Exact spelling of the OData header names on the wire.

Twisted writes header names in a canonical capitalisation, which would turn
``OData-Version`` into ``Odata-Version``.  HTTP says names are case-insensitive,
but Power BI has been seen to break on the unconventional spelling, and every
OData server it is tested against sends ``OData-Version``.  Twisted's
``Headers._caseMappings`` table exists for exactly such names; registering
ours there is idempotent.
"""

from __future__ import annotations

from twisted.web.http_headers import Headers

ODATA_VERSION_HEADER = "OData-Version"
ODATA_MAX_VERSION_HEADER = "OData-MaxVersion"

_SPELLINGS = {
    b"Odata-Version": b"OData-Version",
    b"Odata-Maxversion": b"OData-MaxVersion",
    b"Odata-Entityid": b"OData-EntityId",
    b"Odata-Isolation": b"OData-Isolation",
}


def install_header_spellings() -> None:
    Headers._caseMappings.update(_SPELLINGS)
