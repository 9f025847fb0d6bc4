"""
The streaming gzip encoder, with each deflate implementation the service
may use: every chunk decodes as soon as it is sent, and the whole is one
valid gzip member.
"""

from __future__ import annotations

import gzip
import zlib
from types import ModuleType

import pytest
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyChannel

from odata_klein.compression import FASTEST_DEFLATE, StreamingGzipEncoderFactory

isal_zlib: ModuleType | None
try:
    from isal import isal_zlib
except ImportError:
    isal_zlib = None

BACKENDS = [
    pytest.param(zlib, id="zlib"),
    pytest.param(isal_zlib, id="isal", marks=pytest.mark.skipif(isal_zlib is None, reason="the speedups extra is not installed")),
]
CHUNKS = [b'{"value":[', b",".join([b'{"ID":"%d","Comment":"\xc3\xa9t\xc3\xa9"}' % n for n in range(2000)]), b"]}"]


def gzip_request() -> Request:
    request = Request(DummyChannel())
    request.requestHeaders.setRawHeaders(b"Accept-Encoding", [b"gzip"])
    return request


@pytest.mark.parametrize("deflate", BACKENDS)
def test_every_chunk_decodes_as_soon_as_it_is_sent(deflate: ModuleType) -> None:
    request = gzip_request()
    encoder = StreamingGzipEncoderFactory(deflate=deflate).encoderForRequest(request)
    assert encoder is not None
    assert request.responseHeaders.getRawHeaders(b"Content-Encoding") == [b"gzip"]
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    sent, decoded = b"", b""
    for count, chunk in enumerate(CHUNKS, 1):
        encoded = encoder.encode(chunk)
        sent += encoded
        decoded += decoder.decompress(encoded)
        assert decoded == b"".join(CHUNKS[:count])
    sent += encoder.finish()
    assert gzip.decompress(sent) == b"".join(CHUNKS)
    assert len(sent) * 5 < len(b"".join(CHUNKS))


def test_the_fastest_deflate_available_is_the_default() -> None:
    assert FASTEST_DEFLATE is (isal_zlib or zlib)


def test_no_encoder_unless_gzip_is_accepted() -> None:
    request = Request(DummyChannel())
    request.requestHeaders.setRawHeaders(b"Accept-Encoding", [b"gzip;q=0, br"])
    assert StreamingGzipEncoderFactory().encoderForRequest(request) is None
    assert request.responseHeaders.getRawHeaders(b"Vary") == [b"Accept-Encoding"]
