"""Reading the caller's credentials from the Authorization header."""

from __future__ import annotations

import base64
import binascii
from typing import Optional

from .errors import Unauthorized
from .interfaces import Credentials


def credentials_from_header(header: Optional[str]) -> Optional[Credentials]:
    """
    ``Basic`` (user name and password) or ``Bearer`` credentials; None when
    the header is absent.  A header that is present but unreadable is
    rejected, without echoing any of it back.
    """
    if header is None or not header.strip():
        return None
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer" and value:
        return Credentials(scheme="bearer", user=None, secret=value)
    if scheme == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("the Basic credentials are not valid base64 of user:password")
        user, colon, password = decoded.partition(":")
        if not colon:
            raise Unauthorized("the Basic credentials are not of the form user:password")
        return Credentials(scheme="basic", user=user, secret=password)
    raise Unauthorized("use Basic or Bearer authentication")
