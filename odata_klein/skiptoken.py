"""
Opaque ``$skiptoken`` values for server-driven paging.

A token carries everything the next page needs (the provider's cursor and
the page size), so any instance behind a load balancer can serve it without
shared state.  It is not signed: a client can only ever ask for data its own
credentials can read, and a token coming back is validated like any other
input.  It never holds a credential.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from .errors import BadRequest
from .interfaces import Cursor

_VERSION = 1
_MAX_TOKEN_LENGTH = 4096


@dataclass(frozen=True)
class SkipToken:
    cursor: Cursor
    page_size: int


def encode_skiptoken(token: SkipToken) -> str:
    payload = json.dumps(
        {"v": _VERSION, "c": token.cursor, "p": token.page_size}, separators=(",", ":")
    ).encode("utf-8")
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode("ascii")


def decode_skiptoken(text: str, max_page_size: int) -> SkipToken:
    def invalid(why: str) -> BadRequest:
        return BadRequest(
            f"$skiptoken is not valid ({why}); use the @odata.nextLink of the previous page as it is",
            target="$skiptoken",
        )

    if len(text) > _MAX_TOKEN_LENGTH:
        raise invalid("too long")
    try:
        payload = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data = json.loads(payload)
    except (binascii.Error, ValueError):
        raise invalid("not a token of this service")
    if not isinstance(data, dict) or data.get("v") != _VERSION or "c" not in data:
        raise invalid("not a token of this service")
    page_size = data.get("p")
    if type(page_size) is not int or not 1 <= page_size <= max_page_size:
        raise invalid("bad page size")
    return SkipToken(cursor=data["c"], page_size=page_size)
