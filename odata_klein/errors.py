"""
OData errors: every failure a client can see, with its HTTP status.

Raise an `ODataError` anywhere in the engine or a provider; the web layer turns
it into the JSON error body ``{"error": {"code", "message", "target",
"details"}}`` before the response starts, or aborts the connection when the
response has already started streaming.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence


@dataclass(frozen=True)
class ErrorDetail:
    code: str
    message: str
    target: Optional[str] = None

    def to_json(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "target": self.target}


class ODataError(Exception):
    status: int = 500
    default_code: str = "InternalError"

    def __init__(
        self,
        message: str,
        *,
        code: Optional[str] = None,
        target: Optional[str] = None,
        details: Sequence[ErrorDetail] = (),
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.target = target
        self.details = tuple(details)
        self.headers: Mapping[str, str] = dict(headers or {})

    def to_json(self) -> dict[str, object]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "target": self.target,
                "details": [detail.to_json() for detail in self.details],
            }
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.code!r}, {self.message!r})"


class BadRequest(ODataError):
    status = 400
    default_code = "BadRequest"


class Unauthorized(ODataError):
    """Missing or rejected credentials; the web layer adds the Basic challenge."""

    status = 401
    default_code = "Unauthorized"


class Forbidden(ODataError):
    status = 403
    default_code = "Forbidden"


class NotFound(ODataError):
    status = 404
    default_code = "NotFound"


class MethodNotAllowed(ODataError):
    status = 405
    default_code = "MethodNotAllowed"

    def __init__(self, message: str, *, allowed: Sequence[str], **kwargs: object) -> None:
        headers = {"Allow": ", ".join(allowed)}
        super().__init__(message, headers=headers, **kwargs)  # type: ignore[arg-type]


class NotAcceptable(ODataError):
    status = 406
    default_code = "NotAcceptable"


class NotImplementedYet(ODataError):
    """Valid OData that this service does not implement (501)."""

    status = 501
    default_code = "NotImplemented"


class BadGateway(ODataError):
    """The upstream answered with something unusable."""

    status = 502
    default_code = "UpstreamError"


class ServiceUnavailable(ODataError):
    """The upstream throttled or failed after retries; ``retry_after`` in seconds."""

    status = 503
    default_code = "UpstreamUnavailable"

    def __init__(self, message: str, *, retry_after: int = 30, **kwargs: object) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)}, **kwargs)  # type: ignore[arg-type]


class GatewayTimeout(ODataError):
    status = 504
    default_code = "UpstreamTimeout"
