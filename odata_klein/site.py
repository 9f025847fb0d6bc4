"""
The HTTP/1.1 server side: a Twisted ``Site`` whose channel reads request
heads as BI tools send them and refuses, with an OData error, those it
cannot read.

Twisted's own channel reads heads of 16 KiB at most and answers a longer or
malformed one with a bare ``400`` or nothing at all; Power BI folds long
lists of chosen values into URLs far longer than that.  Twisted also bounds
only the wait between two bytes, so a client sending a byte now and then
could hold a connection, and enough such clients every file descriptor the
service has.  `ODataSite`'s channel reads lines and heads of up to
`MAX_REQUEST_HEAD`, gives each head `HEAD_SECONDS` from its first byte, and
answers what it refuses with the OData JSON error and ``OData-Version``
(400, 408, 414 or 431), then drains the connection and closes it.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IDelayedCall, ITCPTransport
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.resource import IResource
from twisted.web.server import Site

from .errors import ODataError
from .headers import ODATA_VERSION_HEADER
from .negotiation import ODATA_VERSION

# Request lines and headers up to this size are read, each and all together.
MAX_REQUEST_HEAD = 1024 * 1024

# How long a client may take to send a request's head, from its first byte
# (nginx's client_header_timeout).
HEAD_SECONDS = 60.0

# How long a connection whose request was refused may go on sending before
# it is closed.
_DRAIN_SECONDS = 15

# Beside the access log's lines: these heads never became requests.
_log = Logger(namespace="odata_klein.access")

# The start of a request line: its method and a space.
_REQUEST_LINE_START = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ ")


class _ODataChannel(HTTPChannel):
    MAX_LENGTH = MAX_REQUEST_HEAD
    # Twisted counts too, but answers with a bare 400: lineReceived counts first.
    totalHeadersSize = MAX_REQUEST_HEAD
    site: "ODataSite"
    _head_deadline: Optional[IDelayedCall] = None
    _head_size = 0
    _refused = False

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        # Bytes read as lines start a head, perhaps one whose first line
        # trickles in.  (While a request is being answered, Twisted reads in
        # raw mode and keeps what comes for when the answer is done.)
        if self.line_mode:
            self._start_head_deadline()
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if self._refused:
            return
        if line:
            # A head sent right behind another, in the same bytes, starts here.
            self._start_head_deadline()
        self._head_size += len(line)
        if self._head_size > MAX_REQUEST_HEAD:
            self._refuse(
                431, "Request Header Fields Too Large", "RequestHeaderFieldsTooLarge",
                f"the request head is longer than {MAX_REQUEST_HEAD:,} bytes in all",
            )
            return
        super().lineReceived(line)

    def rawDataReceived(self, data: bytes) -> None:
        if not self._refused:
            super().rawDataReceived(data)

    def allHeadersReceived(self) -> None:
        self._stop_head_deadline()
        self._head_size = 0
        super().allHeadersReceived()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stop_head_deadline()
        super().connectionLost(reason)

    def _start_head_deadline(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.callLater(self.site.head_seconds, self._head_too_slow)

    def _stop_head_deadline(self) -> None:
        if self._head_deadline is not None:
            if self._head_deadline.active():
                self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        seconds = self.site.head_seconds
        self._refuse(408, "Request Timeout", "RequestTimeout", f"the request head took longer than {seconds:g} seconds")

    def lineLengthExceeded(self, line: bytes) -> None:
        """A request line or header line longer than `MAX_REQUEST_HEAD`: 414 for a URL, 431 for a header."""
        if _REQUEST_LINE_START.match(line):
            self._refuse(414, "URI Too Long", "URITooLong", f"the URL is longer than {MAX_REQUEST_HEAD:,} bytes")
        else:
            self._refuse(
                431, "Request Header Fields Too Large", "RequestHeaderFieldsTooLarge",
                f"a request header is longer than {MAX_REQUEST_HEAD:,} bytes",
            )

    def _respondToBadRequestAndDisconnect(self) -> None:
        # Where Twisted finds the request malformed: a request line, a header
        # or a body's framing it cannot read, or too many headers.
        self._refuse(400, "Bad Request", "BadRequest", "the request is not HTTP/1.1 that this service can read")

    def _refuse(self, status: int, reason: str, code: str, message: str) -> None:
        """
        Answer a request whose head could not be read with an OData error,
        then stop writing and ignore what else comes: a client still sending
        would otherwise meet a reset, and lose the answer with it.
        """
        self._refused = True
        self._stop_head_deadline()
        error = ODataError(message, code=code)
        body = json.dumps(error.to_json()).encode("utf-8")
        head = (
            f"HTTP/1.1 {status} {reason}\r\n{ODATA_VERSION_HEADER}: {ODATA_VERSION}\r\n"
            f"Content-Type: application/json;charset=utf-8\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        transport = self.transport
        assert transport is not None
        # Nothing of the head itself is logged: it may hold a credential.
        peer = transport.getPeer()
        _log.info(
            "- (request head refused) {status} from {peer}: {message}",
            status=status, peer=f"{peer.host}:{peer.port}" if isinstance(peer, IPv4Address | IPv6Address) else str(peer),
            message=message,
        )
        transport.write(head.encode("ascii") + body)
        if ITCPTransport.providedBy(transport):
            transport.loseWriteConnection()
            self.setTimeout(_DRAIN_SECONDS)
        else:
            transport.loseConnection()


class ODataSite(Site):
    """
    A Site whose access log is the service's own (one line per request, with
    upstream counts), and that reads request heads up to `MAX_REQUEST_HEAD`.
    HTTP/2 is not offered (it would need the ``h2`` package and TLS).
    """

    noisy = False
    # Twisted types this as its own wrapper of a channel; a channel is what it builds either way.
    protocol = _ODataChannel  # type: ignore[assignment]

    def __init__(self, resource: IResource, *, head_seconds: float = HEAD_SECONDS) -> None:
        """``head_seconds``: how long a client may take to send a request's head (408 beyond)."""
        super().__init__(resource)
        self.head_seconds = head_seconds

    def log(self, request: Any) -> None:
        pass


__all__ = ["HEAD_SECONDS", "MAX_REQUEST_HEAD", "ODataSite"]
