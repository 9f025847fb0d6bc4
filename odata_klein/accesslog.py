"""One access-log line per request, through twisted.logger, never holding a credential."""

from __future__ import annotations

from dataclasses import dataclass

from twisted.logger import Logger

_log = Logger(namespace="odata_klein.access")


@dataclass(frozen=True)
class AccessRecord:
    method: str
    target: str  # path and query as received; credentials never travel there
    status: int
    bytes_sent: int
    seconds: float
    upstream_requests: int
    # The page was read ahead, before the request came (its upstream requests are counted here).
    read_ahead: bool = False


def log_access(record: AccessRecord) -> None:
    _log.info(
        "{method} {target} {status} {bytes_sent}B {milliseconds:.1f}ms upstream={upstream_requests}{read_ahead}",
        method=record.method,
        target=record.target,
        status=record.status,
        bytes_sent=record.bytes_sent,
        milliseconds=record.seconds * 1000,
        upstream_requests=record.upstream_requests,
        read_ahead=" read-ahead" if record.read_ahead else "",
        access=record,
    )
