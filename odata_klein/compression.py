"""
gzip response encoding that keeps streamed responses flowing.

Twisted's own ``GzipEncoderFactory`` compresses at level 9 and lets zlib hold
output back until its buffer fills, so the first entities of a streamed
response could wait behind the rest.  This encoder flushes each written chunk
and reads ``Accept-Encoding`` with its quality values.

It compresses at level 1, as nginx does by default: on OData JSON that is
less than half the CPU time of level 6 for output about a quarter larger
(6.9 times smaller than the JSON instead of 8.8), and compression is the
largest single cost of a gzip response after parsing the upstream's.
"""

from __future__ import annotations

import zlib
from typing import Optional

from twisted.web.iweb import IRequest, _IRequestEncoder, _IRequestEncoderFactory
from zope.interface import implementer


def accepts_gzip(accept_encoding: str) -> bool:
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip"):
            continue
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        return quality > 0
    return False


@implementer(_IRequestEncoder)
class _FlushingGzipEncoder:
    def __init__(self, level: int, request: IRequest) -> None:
        # wbits 16+MAX_WBITS: a gzip header and trailer, not a bare zlib stream.
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        self._request = request

    def encode(self, data: bytes) -> bytes:
        if not self._request.startedWriting:  # type: ignore[attr-defined]
            # A length set for the plain body (static files set one) would
            # leave the client waiting for bytes that never come.
            self._request.responseHeaders.removeHeader(b"Content-Length")
        return self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._compressor.flush(zlib.Z_FINISH)


@implementer(_IRequestEncoderFactory)
class StreamingGzipEncoderFactory:
    def __init__(self, level: int = 1) -> None:
        self._level = level

    def encoderForRequest(self, request: IRequest) -> Optional[_FlushingGzipEncoder]:
        request.responseHeaders.addRawHeader(b"Vary", b"Accept-Encoding")
        accept = b",".join(request.requestHeaders.getRawHeaders(b"Accept-Encoding", []))
        if not accepts_gzip(accept.decode("latin-1")):
            return None
        request.responseHeaders.setRawHeaders(b"Content-Encoding", [b"gzip"])
        return _FlushingGzipEncoder(self._level, request)
