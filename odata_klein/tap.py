"""
``twist`` service makers for OData providers.

`ProviderServiceMaker` is what a ``twisted/plugins`` drop-in instantiates: it
finds the provider factory through the plugin system when the command runs,
adds the provider's own options to the service's, and starts both.
"""

from __future__ import annotations

import gc
import sys
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence

from twisted.application.service import IServiceMaker, Service
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer

from .interfaces import IProviderFactory, RunningProvider
from .pagetext import DEFAULT_PAGE_SECONDS
from .plugins import find_provider_factory

if TYPE_CHECKING:
    from .service import ODataService

_log = Logger()


def whole_number(minimum: int) -> Callable[[str], int]:
    """A usage.Options coercer for whole numbers of at least ``minimum``; providers use it too."""

    def coerce(value: str) -> int:
        number = int(value)
        if number < minimum:
            raise ValueError(f"must be a whole number of at least {minimum}")
        return number

    coerce.coerceDoc = f"A whole number of at least {minimum}."  # type: ignore[attr-defined]
    return coerce


def options_for(factory: IProviderFactory) -> type[usage.Options]:
    class ProviderOptions(usage.Options):
        synopsis = f"[options]\n\n{factory.description}"
        optParameters = [
            [
                "listen", "l", "tcp:8080",
                "Where to listen, as a Twisted endpoint string: tcp:8080, "
                "tcp:8080:interface=127.0.0.1, or ssl:8443:privateKey=key.pem:certKey=cert.pem for TLS.",
            ],
            ["page-size", None, 5000, "Entities per OData page (clients may ask for fewer or more).", whole_number(1)],
            [
                "read-ahead-pages", None, 8,
                "How many next pages may be read ahead at once for clients paging through results, "
                "so that a page is ready when its nextLink is followed (0: none).",
                whole_number(0),
            ],
            [
                "page-seconds", None, DEFAULT_PAGE_SECONDS,
                "How long a page may take to fill: when the service itself filters out most rows, a page "
                "ends after this many seconds with the entities found so far and a nextLink, so that "
                "clients and proxies never wait too long for an answer (0: after every upstream page).",
                whole_number(0),
            ],
            [
                "public-url", None, None,
                "The service root as clients reach it (https://odata.example.com/), when a proxy "
                "changes host or scheme; links in responses use it.",
            ],
            *factory.option_parameters,
        ]
        optFlags = [*factory.option_flags]

    return ProviderOptions


class ODataServerService(Service):
    """Starts the provider, then listens; stops both."""

    def __init__(self, reactor: Any, factory: IProviderFactory, options: Mapping[str, Any]) -> None:
        self._reactor = reactor
        self._factory = factory
        self._options = options
        self._running: Optional[RunningProvider] = None
        self._port: Optional[IListeningPort] = None
        self._service: Optional[ODataService] = None
        self._starting: Optional[Deferred[None]] = None
        self.root_url: Optional[str] = None

    def startService(self) -> None:
        super().startService()
        self._starting = ensureDeferred(self._start())
        self._starting.addErrback(self._failed_to_start)

    async def _start(self) -> None:
        from twisted.internet.endpoints import serverFromString

        from odata_klein_console import console_resource

        from .service import ODataService

        self._running = await self._factory.start(self._reactor, self._options)
        service = self._service = ODataService(
            self._running.provider,
            page_size=self._options["page-size"],
            public_url=self._options["public-url"],
            read_ahead_pages=self._options["read-ahead-pages"],
            page_seconds=self._options["page-seconds"],
            console=console_resource(
                basic_user=self._running.basic_user or "",
                realm=self._running.provider.realm,
                demo_tokens=self._running.demo_tokens or None,
            ),
        )
        endpoint = serverFromString(self._reactor, self._options["listen"])
        self._port = await endpoint.listen(service.site())
        tune_garbage_collection()
        self.root_url = self._options["public-url"] or _root_url(self._options["listen"], self._port)
        announce(
            [f"OData service: {self.root_url}", f"Query console: {self.root_url}console", *self._running.announcements]
        )

    async def started(self) -> str:
        """The service root URL, once the provider runs and the port listens."""
        assert self._starting is not None, "startService first"
        await self._starting
        assert self.root_url is not None
        return self.root_url

    def _failed_to_start(self, failure: Any) -> None:
        _log.failure("the OData service could not start", failure)
        # A failure while the service starts (before the reactor runs) must
        # still stop it once it does: stop() now would raise, and the process
        # would go on serving nothing.
        self._reactor.callWhenRunning(self._reactor.stop)

    async def _stop(self) -> None:
        if self._starting is not None:
            await self._starting
        if self._port is not None:
            stopping = self._port.stopListening()
            if stopping is not None:
                await stopping
        if self._service is not None:
            self._service.close()
        if self._running is not None:
            await self._running.provider.close()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return ensureDeferred(self._stop())


def tune_garbage_collection() -> None:
    """
    Once the service has started: what was allocated so far (modules, the
    grammar, the model) is kept out of every later collection, and the
    youngest generation is collected after 10,000 net allocations instead of
    700.  A response allocates rows by the thousand, nearly all freed by
    reference counting as soon as they are written, so the default
    thresholds ran a collection every few hundred rows: 0.26 of 3.5 CPU
    seconds for 200,000 entities, 0.02 with these settings.
    """
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(10_000, older, oldest)


def _root_url(listen: str, port: IListeningPort) -> str:
    address = port.getHost()
    assert isinstance(address, IPv4Address | IPv6Address), address
    scheme = "https" if listen.lower().startswith(("ssl:", "tls:")) else "http"
    host = address.host
    if host in ("0.0.0.0", "::", ""):
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{address.port}/"


def announce(lines: Sequence[str]) -> None:
    """
    Tell the administrator, on the terminal itself: ``twist`` routes
    ``sys.stdout`` into the log, and what is announced (demo tokens) is for
    the person at the terminal, not for log files.
    """
    terminal = sys.__stdout__
    if terminal is not None:
        terminal.write("\n".join(lines) + "\n")
        terminal.flush()


@implementer(IServiceMaker, IPlugin)
class ProviderServiceMaker:
    """A ``twist`` subcommand serving one provider."""

    def __init__(self, tapname: str, provider: str, description: str) -> None:
        self.tapname = tapname
        self.description = description
        self._provider = provider

    @property
    def options(self) -> type[usage.Options]:
        return options_for(find_provider_factory(self._provider))

    def makeService(self, options: Mapping[str, Any]) -> Service:
        from twisted.internet import reactor

        return ODataServerService(reactor, find_provider_factory(self._provider), options)
