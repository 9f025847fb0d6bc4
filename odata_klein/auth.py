"""Reading the caller's credentials from the Authorization header."""

from __future__ import annotations

import base64
import binascii
from typing import Optional

from .errors import Unauthorized
from .interfaces import Credentials


# Longer credentials are refused before they are passed on: API tokens are
# tens of characters, and upstream servers close connections whose headers
# run past 8 or 16 KiB (the service would retry that as a broken connection).
MAX_CREDENTIALS_LENGTH = 4096


def credentials_from_header(header: Optional[str]) -> Optional[Credentials]:
    """
    ``Basic`` (user name and password) or ``Bearer`` credentials; None when
    the header is absent.  A header that is present but unreadable, or
    longer than `MAX_CREDENTIALS_LENGTH`, is rejected, without echoing any
    of it back.
    """
    if header is None or not header.strip():
        return None
    if len(header) > MAX_CREDENTIALS_LENGTH:
        raise Unauthorized(f"the credentials are longer than {MAX_CREDENTIALS_LENGTH} characters")
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer" and value:
        return Credentials(scheme="bearer", user=None, secret=value)
    if scheme == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("the Basic credentials are not base64 of UTF-8 user:password")
        user, colon, password = decoded.partition(":")
        if not colon:
            raise Unauthorized("the Basic credentials are not of the form user:password")
        return Credentials(scheme="basic", user=user, secret=password)
    raise Unauthorized("use Basic or Bearer authentication")
