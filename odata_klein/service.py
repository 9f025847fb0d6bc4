"""
The OData web service: a Klein app over one provider.

Every request goes the same way: credentials -> provider session -> model ->
URL parsed and bound -> rows from the provider -> streamed JSON.  Anything a
client gets wrong ends as an OData JSON error before the response starts;
a failure after the response has started drops the connection, so that no
client takes a cut-off result for a complete one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Hashable,
    Mapping,
    Optional,
    Sequence,
    TypeVar,
    cast,
)
from urllib.parse import unquote

from klein import Klein
from twisted.internet.defer import DeferredSemaphore, ensureDeferred
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import EncodingResourceWrapper, IResource
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from . import csdl
from .accesslog import AccessRecord, log_access
from .auth import credentials_from_header
from .binder import Binder
from .bound import BoundExpr, BoundProperty
from .compression import StreamingGzipEncoderFactory
from .context import select_expand_fragment
from .deferreds import settle
from .errors import BadRequest, MethodNotAllowed, NotImplementedYet, ODataError
from .evaluate import compile_expression
from .executor import (
    CollectionSource,
    CountResult,
    EntityResult,
    Executor,
    PropertyResult,
    RowStream,
)
from .expansion import ExpandNode, attach, bind_expand, entity_encoder, navigation_needed, select_properties
from .headers import ODATA_VERSION_HEADER, install_header_spellings
from .interfaces import Credentials, IProvider, IProviderSession, Row, Trace
from .model import Edm, EntitySet, EntityType, Model, Property
from .negotiation import (
    ODATA_VERSION,
    JsonFormat,
    MetadataFormat,
    accepts_text,
    check_max_version,
    negotiate_json,
    negotiate_metadata,
)
from .ordering import first_rows, order_key, sorted_batches
from .pagetext import DEFAULT_PAGE_SECONDS, Entity, PageEnd, TimeLimit, page_chunks, resumed
from .parser import QueryParser
from .preferences import Preferences, parse_prefer
from .resource import bind_path
from .roots import resolve_root_paths, root_paths
from .readahead import ReadAheads, caller_digest
from .search import compile_search
from .serializer import (
    EntityEncoder,
    collection_end,
    collection_start,
    property_document,
    raw_value,
)
from .servicedoc import service_document
from .site import ODataSite
from .skiptoken import SkipToken, decode_skiptoken, encode_skiptoken
from .streaming import ClientGone, ResponseStream
from .syntax import QueryOptions
from .urls import encode_query, key_predicate

_log = Logger(namespace="odata_klein.service")

_READ_METHODS = ("GET", "HEAD")
_T = TypeVar("_T")
# Paths and queries this long or longer are parsed in a worker thread (about
# 0.1 s of parsing at worst), at most _PARSING_THREADS of them at once.
PARSE_IN_THREAD_FROM = 16 * 1024
_PARSING_THREADS = 2
# Options that depend on the position in the result: a nextLink rewrites them.
_PAGING_OPTIONS = frozenset({"skip", "top", "skiptoken"})


@dataclass
class _Exchange:
    """What one request carries through the layers."""

    request: Request
    service_root: str
    trace: Trace = field(default_factory=Trace)
    stream: Optional[ResponseStream] = None
    credentials: Optional[Credentials] = None
    # The response's page was read ahead (see `odata_klein.readahead`).
    read_ahead: bool = False


@dataclass(frozen=True)
class _ReadAheadState:
    """What reading a next page ahead leaves for its reader: how it ended, and the stream to go on with."""

    end: PageEnd
    trace: Trace
    executor: Executor
    stream: RowStream


def _closing(stream: RowStream) -> None:
    """Close a stream nobody will read again, in the background."""
    ensureDeferred(stream.close()).addErrback(
        lambda failure: _log.failure("closing an unclaimed read-ahead failed", failure)
    )


@dataclass(frozen=True)
class _Shape:
    """How each entity of a response is written: $select, $expand and $compute applied."""

    computed: Mapping[str, BoundExpr]
    adders: Sequence[tuple[Property, Callable[[Row], Any]]]
    nodes: tuple[ExpandNode, ...]
    encoder: EntityEncoder
    # The context URL fragment: the entity set and its select/expand list.
    fragment: str

    def complete(self, row: Row) -> Row:
        """Add the computed properties to ``row``."""
        for prop, compute in self.adders:
            row[prop.name] = compute(row)
        return row

    @property
    def encode(self) -> Callable[[Row], str]:
        """Write a row (its computed properties added first)."""
        if not self.adders:
            return self.encoder.encode
        return lambda row: self.encoder.encode(self.complete(row))


@dataclass(frozen=True)
class _Ordering:
    key: Callable[[Row], Any]
    # Related entities the ordering expressions read.
    needs: tuple[ExpandNode, ...]


class _SortedBatches:
    """Sorted rows as the (row, cursor) batches the writer reads; sorted rows have no cursor."""

    def __init__(self, batches: AsyncIterator[list[Row]]) -> None:
        self._batches = batches

    async def __call__(self) -> Optional[list[tuple[Row, Any]]]:
        try:
            rows = await self._batches.__anext__()
        except StopAsyncIteration:
            return None
        return [(row, None) for row in rows]

    async def aclose(self) -> None:
        await self._batches.aclose()  # type: ignore[attr-defined]


# The instance annotation that explains a response (for the console): what the
# provider applied, what the service evaluated, and every upstream request.
EXPLAIN_ANNOTATION = "OdataKlein.explain"


def _in_natural_order(items: Sequence[tuple[BoundExpr, bool]], entity_set: EntitySet) -> bool:
    """Whether ``$orderby`` items, bound, ask for a prefix of the order the provider yields rows in."""
    asked = [
        (expr.path[0], descending)
        for expr, descending in items
        if isinstance(expr, BoundProperty) and len(expr.path) == 1
    ]
    return len(asked) == len(items) and tuple(asked) == entity_set.natural_order[: len(asked)]


def _engine_work(options: QueryOptions, shape: _Shape, sorted_whole: bool) -> list[str]:
    """What the service itself does for a collection request, beside the residual filter."""
    work = []
    if options.search is not None:
        work.append("$search on every text property")
    if sorted_whole:
        work.append("$orderby: the whole result sorted (spilling to disk past a threshold)")
    for node in shape.nodes:
        work.append(f"$expand {node.name}: related entities fetched in batches")
    for prop, _ in shape.adders:
        work.append(f"$compute {prop.name}")
    return work


def _explanation(trace: Trace, rows: int) -> dict[str, Any]:
    return {
        "pushedDown": list(trace.pushed_down),
        "evaluatedByService": list(trace.evaluated),
        "upstreamRequests": [
            {
                "method": call.method,
                "url": call.url,
                "params": [list(pair) for pair in call.params],
                "status": call.status,
                "rows": call.rows,
                "total": call.total,
                "seconds": None if call.seconds is None else round(call.seconds, 4),
                "attempts": call.attempts,
            }
            for call in trace.calls
        ],
        "rowsWritten": rows,
    }


async def _one_batch(rows: Callable[[], Awaitable[list[Row]]]) -> AsyncIterator[list[Row]]:
    """All of ``rows()`` as one batch, read only when the batch is asked for."""
    yield await rows()


def _option_name(name: str) -> str:
    """``$Top`` and ``top`` both name the system option ``top`` (OData 4.01)."""
    return name.lower().lstrip("$")


def split_query(query: str, *, plus_is_space: bool = False) -> list[tuple[str, str]]:
    """
    Decoded (name, value) pairs in order.  ``+`` is a plus sign, as the OData
    ABNF reads it (``2026-02-03T00:00:00+01:00``), unless ``plus_is_space``
    asks for the form encoding many HTTP libraries use for spaces.
    """
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if plus_is_space:
            name, value = name.replace("+", "%20"), value.replace("+", "%20")
        try:
            pairs.append(
                (unquote(name, errors="strict"), unquote(value, errors="strict"))
            )
        except UnicodeDecodeError:
            raise BadRequest("the query string is not valid percent-encoded UTF-8")
    return pairs


class ODataService:
    """
    Serves one provider's entity sets at the root of a site.

    ``page_size`` is the number of entities per page of server-driven paging;
    a client's ``Prefer: odata.maxpagesize`` may lower it or raise it up to
    ``max_page_size``.  ``public_url`` fixes the service root written into
    links when the service runs behind a proxy that changes host or scheme.
    ``sort_memory_rows`` rows at most are held in memory to sort a result;
    beyond that sorted runs spill to temporary files.  ``console``, when
    given, serves every path under ``/console`` (the browser query console).
    Up to ``read_ahead_pages`` next pages are read ahead for clients paging
    through a result (see `odata_klein.readahead`; 0: none).  Call `close`
    when done with the service.
    """

    app = Klein()

    def __init__(
        self,
        provider: IProvider,
        *,
        page_size: int = 5000,
        max_page_size: int = 100_000,
        public_url: Optional[str] = None,
        sort_memory_rows: int = 50_000,
        clock: Optional[IReactorTime] = None,
        console: Optional[IResource] = None,
        read_ahead_pages: int = 8,
        page_seconds: Optional[float] = DEFAULT_PAGE_SECONDS,
    ) -> None:
        """
        ``page_seconds``: how long a page may take to fill before it ends
        with the entities found so far and a nextLink (None: no limit).
        """
        install_header_spellings()
        self.console = console
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        self._clock = clock
        self._sort_memory_rows = sort_memory_rows
        self._provider = provider
        self._page_size = page_size
        self._page_seconds = page_seconds
        self._max_page_size = max(max_page_size, page_size)
        self._public_url = public_url.rstrip("/") + "/" if public_url else None
        self._parser = QueryParser()
        self._threads: Optional[IReactorThreads] = clock if IReactorThreads.providedBy(clock) else None
        self._parsing = DeferredSemaphore(_PARSING_THREADS)
        self._read_aheads: Optional[ReadAheads[_ReadAheadState]] = (
            ReadAheads(clock, max_pages=read_ahead_pages) if read_ahead_pages > 0 else None
        )

    def close(self) -> None:
        """Cancel the pages read ahead that nobody claimed."""
        if self._read_aheads is not None:
            self._read_aheads.close()

    def resource(self) -> IResource:
        return EncodingResourceWrapper(_Root(self), [StreamingGzipEncoderFactory()])

    def site(self) -> Site:
        return ODataSite(self.resource())

    @app.route("/health", methods=["GET", "HEAD"])
    def health(self, request: IRequest) -> bytes:
        """For load balancers: answers without credentials and without asking the upstream."""
        request.setHeader("Content-Type", "application/json")
        request.setHeader("Cache-Control", "no-store")
        return b'{"status":"ok"}'

    async def odata(self, request: Request) -> None:
        """Every OData request: the root hands it here, past Klein's routing (see `_Root`)."""
        exchange = _Exchange(request, self._service_root(request))
        started = time.monotonic()
        request.notifyFinish().addBoth(lambda _: self._log_access(exchange, started))
        try:
            await self._serve(exchange)
        except ClientGone:
            if exchange.stream is not None:
                exchange.stream.release()
        except ODataError as error:
            self._fail(exchange, error)
        except Exception:
            _log.failure("unexpected error while serving {target}", target=_target(request))
            self._fail(exchange, ODataError("the service failed unexpectedly; the error is logged"))

    def _service_root(self, request: IRequest) -> str:
        if self._public_url is not None:
            return self._public_url
        scheme = "https" if request.isSecure() else "http"
        host = request.getHeader("host")
        if not host:
            address = request.getHost()
            host = f"{address.host}:{address.port}"
        return f"{scheme}://{host}/"

    def _log_access(self, exchange: _Exchange, started: float) -> None:
        request = exchange.request
        log_access(
            AccessRecord(
                method=request.method.decode("latin-1"),
                target=_target(request),
                status=request.code,
                bytes_sent=request.sentLength,
                seconds=time.monotonic() - started,
                upstream_requests=exchange.trace.upstream_requests,
                read_ahead=exchange.read_ahead,
            )
        )

    def _fail(self, exchange: _Exchange, error: ODataError) -> None:
        if exchange.stream is not None and exchange.stream.started:
            _log.warn(
                "aborting a response after it started: {error}", error=repr(error)
            )
            exchange.stream.abort()
            return
        request = exchange.request
        if exchange.stream is not None:
            exchange.stream.release()
        request.setResponseCode(error.status)
        for name, value in error.headers.items():
            request.setHeader(name, value)
        if error.status == 401:
            request.setHeader(
                "WWW-Authenticate", f'Basic realm="{self._provider.realm}", charset="UTF-8"'
            )
        self._common_headers(request)
        request.setHeader("Content-Type", "application/json;charset=utf-8")
        request.write(json.dumps(error.to_json(), ensure_ascii=False).encode("utf-8"))

    @staticmethod
    def _common_headers(request: IRequest) -> None:
        request.setHeader(ODATA_VERSION_HEADER, ODATA_VERSION)

    # --- the request, step by step -------------------------------------------------

    async def _serve(self, exchange: _Exchange) -> None:
        request = exchange.request
        method = request.method.decode("latin-1").upper()
        try:
            raw_target = request.uri.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("the request URL is not valid UTF-8")
        raw_path, _, raw_query = raw_target.partition("?")
        pairs = split_query(raw_query)
        check_max_version(request.getHeader("odata-maxversion"))
        if method not in _READ_METHODS:
            raise MethodNotAllowed(
                f"{method} is not allowed: this service is read-only", allowed=_READ_METHODS
            )
        credentials = exchange.credentials = credentials_from_header(request.getHeader("authorization"))
        session = self._provider.open_session(credentials, exchange.trace)
        options, pairs = await self._off_the_reactor(
            len(raw_query), lambda: self._parse_options(raw_query, pairs)
        )
        path = raw_path.lstrip("/")
        accept = request.getHeader("accept")
        if path == "":
            fmt = negotiate_json(options.format, accept)
            model = await self._model(session)
            self._check_no_options(options, "the service document")
            doc = service_document(model, exchange.service_root + "$metadata")
            self._send_json_document(exchange, fmt, doc)
            return
        if path == "$metadata":
            metadata_format = negotiate_metadata(options.format, accept)
            model = await self._model(session)
            self._check_no_options(options, "$metadata")
            self._send_metadata(exchange, metadata_format, model)
            return
        resource_path = await self._off_the_reactor(
            len(raw_path), lambda: self._parser.parse_path(raw_path.lstrip("/"))
        )
        model = await self._model(session)
        aliases = dict(options.aliases)
        bound = bind_path(resource_path, model, aliases)
        executor = Executor(session, model, exchange.trace, self._clock)
        resolved = await executor.resolve(bound)
        if isinstance(resolved, CountResult):
            accepts_text(options.format, accept)
            await self._send_count(exchange, executor, model, resolved, options)
        elif isinstance(resolved, CollectionSource):
            fmt = negotiate_json(options.format, accept)
            await self._send_collection(exchange, executor, model, resolved, options, pairs, raw_path, fmt)
        elif isinstance(resolved, EntityResult):
            fmt = negotiate_json(options.format, accept)
            await self._send_entity(exchange, executor, model, resolved, options, fmt)
        else:
            assert isinstance(resolved, PropertyResult)
            if resolved.raw:
                accepts_text(options.format, accept)
            else:
                fmt = negotiate_json(options.format, accept)
            self._send_property(exchange, model, resolved, options, fmt if not resolved.raw else JsonFormat())

    def _parse_options(
        self, raw_query: str, pairs: list[tuple[str, str]]
    ) -> tuple[QueryOptions, list[tuple[str, str]]]:
        """
        The query options, with ``+`` read as the ABNF says (a plus sign).  A
        query that does not parse that way but does with ``+`` as a space
        (curl --data-urlencode, Python's urlencode) is read the second way:
        only would-be syntax errors change, and nothing that parses changes
        meaning.
        """
        try:
            return self._parser.parse_query(pairs), pairs
        except BadRequest as literal_error:
            if "+" not in raw_query:
                raise
            spaced = split_query(raw_query, plus_is_space=True)
            try:
                return self._parser.parse_query(spaced), spaced
            except BadRequest:
                raise literal_error

    async def _off_the_reactor(self, size: int, work: Callable[[], _T]) -> _T:
        """
        ``work()`` (parsing or binding a URL's text), in a worker thread
        when the text is ``size`` long, `PARSE_IN_THREAD_FROM` or longer: a URL
        may be a megabyte long, and parsing one takes seconds that would hold
        every other request.  Pure Python in a thread still gives the reactor
        the GIL every few milliseconds.  At most `_PARSING_THREADS` such jobs
        run at once, so the reactor keeps a fair share and its thread pool
        room for DNS.
        """
        threads = self._threads
        if size < PARSE_IN_THREAD_FROM or threads is None:
            return work()
        async with self._parsing:
            result: _T = await deferToThreadPool(threads, threads.getThreadPool(), work)
        return result

    async def _model(self, session: IProviderSession) -> Model:
        model: Model = await settle(session.model())
        return model

    @staticmethod
    def _check_no_options(options: QueryOptions, what: str) -> None:
        for name in ("filter", "select", "expand", "orderby", "top", "skip", "count", "search", "compute", "apply"):
            if getattr(options, name) is not None:
                raise BadRequest(f"${name} does not apply to {what}", target=f"${name}")

    @staticmethod
    def _check_supported(options: QueryOptions) -> None:
        """Valid OData this service does not do yet: 501, never a silently different answer."""
        for name in ("apply", "deltatoken", "index", "levels", "schemaversion"):
            if getattr(options, name) is not None:
                raise NotImplementedYet(f"${name} is not supported yet", target=f"${name}")

    # --- writers ----------------------------------------------------------------------

    def _json_headers(self, request: IRequest, fmt: JsonFormat) -> None:
        self._common_headers(request)
        request.setHeader("Content-Type", fmt.content_type)

    def _send_json_document(self, exchange: _Exchange, fmt: JsonFormat, doc: Mapping[str, Any]) -> None:
        body = dict(doc)
        if fmt.metadata == "none":
            body.pop("@odata.context", None)
        self._json_headers(exchange.request, fmt)
        exchange.request.write(json.dumps(body, ensure_ascii=False).encode("utf-8"))

    def _send_metadata(self, exchange: _Exchange, metadata_format: MetadataFormat, model: Model) -> None:
        request = exchange.request
        self._common_headers(request)
        if metadata_format is MetadataFormat.JSON:
            request.setHeader("Content-Type", "application/json;charset=utf-8")
            request.write(json.dumps(csdl.metadata_json(model), ensure_ascii=False).encode("utf-8"))
        else:
            request.setHeader("Content-Type", "application/xml;charset=utf-8")
            request.write(csdl.metadata_xml(model))

    def _computed(
        self, model: Model, entity_type: EntityType, options: QueryOptions
    ) -> tuple[dict[str, BoundExpr], list[tuple[Property, Callable[[Row], Any]]]]:
        """``$compute``: the bound expressions by alias, and how to add each value to a row."""
        bound: dict[str, BoundExpr] = {}
        adders: list[tuple[Property, Callable[[Row], Any]]] = []
        binder = Binder(model)
        for item in options.compute or ():
            if entity_type.property(item.alias) or entity_type.navigation_property(item.alias) or item.alias in bound:
                raise BadRequest(
                    f"$compute: {item.alias!r} is already a property of {entity_type.name}", target="$compute"
                )
            expr = binder.bind_expression(
                item.expr, entity_type, dict(options.aliases), "$compute", computed=bound
            )
            bound[item.alias] = expr
            adders.append((Property(item.alias, expr.type or Edm.UNTYPED.value), compile_expression(expr)))
        return bound, adders

    def _entity_url_builder(self, exchange: _Exchange, entity_set: EntitySet, entity_type: EntityType) -> Any:
        base = exchange.service_root + entity_set.name
        return lambda row: base + key_predicate(entity_type, row)

    async def _bind_filter(
        self,
        exchange: _Exchange,
        executor: Executor,
        model: Model,
        entity_type: EntityType,
        options: QueryOptions,
        computed: Mapping[str, BoundExpr],
    ) -> Optional[BoundExpr]:
        if options.filter is None:
            return None
        aliases = dict(options.aliases)
        # Finding $root paths and binding take about a third of a second and
        # a second per megabyte of URL: they run where parsing does.
        size = len(exchange.request.uri)
        given = options.filter
        paths = await self._off_the_reactor(size, lambda: root_paths(given))
        expr = await resolve_root_paths(given, paths, executor, model, aliases, "$filter")
        binder = Binder(model)
        bound: BoundExpr = await self._off_the_reactor(
            size, lambda: binder.bind_filter(expr, entity_type, aliases, computed=computed)
        )
        return bound

    def _context(self, exchange: _Exchange, fmt: JsonFormat, fragment: str) -> Optional[str]:
        if fmt.metadata == "none":
            return None
        return f"{exchange.service_root}$metadata#{fragment}"

    def _shape(
        self,
        exchange: _Exchange,
        model: Model,
        entity_set: EntitySet,
        entity_type: EntityType,
        options: QueryOptions,
        fmt: JsonFormat,
    ) -> _Shape:
        """What a response of entities writes, read from $select, $expand and $compute."""
        binder = Binder(model)
        computed, adders = self._computed(model, entity_type, options)
        selection = select_properties(entity_type, options.select, computed=[p for p, _ in adders])
        nodes = bind_expand(options.expand or (), entity_set, entity_type, model, binder, dict(options.aliases))
        encoder = entity_encoder(
            model, fmt, entity_set, entity_type, selection.properties, nodes,
            lambda target_set, target_type: self._entity_url_builder(exchange, target_set, target_type),
            selection.projections,
        )
        fragment = entity_set.name + select_expand_fragment(selection.listed, nodes)
        return _Shape(computed, adders, nodes, encoder, fragment)

    def _ordering(
        self, model: Model, source: CollectionSource, options: QueryOptions, shape: _Shape
    ) -> Optional[_Ordering]:
        """How to sort the result; None when the provider's order is the one asked for."""
        if options.orderby is None:
            return None
        entity_set, entity_type = source.entity_set, source.entity_type
        binder = Binder(model)
        items = [
            (
                binder.bind_expression(item.expr, entity_type, dict(options.aliases), "$orderby", computed=shape.computed),
                item.descending,
            )
            for item in options.orderby
        ]
        # Rows reached through navigation come in whatever order the provider finds them.
        if source.parent is None and _in_natural_order(items, entity_set):
            return None
        needs: tuple[ExpandNode, ...] = ()
        for expr, _ in items:
            needs += navigation_needed(expr, entity_set, entity_type, model)
        return _Ordering(order_key(items), needs)

    async def _send_collection(
        self,
        exchange: _Exchange,
        executor: Executor,
        model: Model,
        source: CollectionSource,
        options: QueryOptions,
        pairs: Sequence[tuple[str, str]],
        raw_path: str,
        fmt: JsonFormat,
    ) -> None:
        self._check_supported(options)
        request = exchange.request
        entity_set, entity_type = source.entity_set, source.entity_type
        shape = self._shape(exchange, model, entity_set, entity_type, options, fmt)
        ordering = self._ordering(model, source, options, shape)
        user_filter = await self._bind_filter(exchange, executor, model, entity_type, options, shape.computed)
        search = compile_search(options.search, entity_type) if options.search is not None else None
        preferences = parse_prefer(request.getHeader("prefer"))
        if ordering is not None and options.skiptoken is not None:
            raise BadRequest("an ordered result comes whole, in one response: it has no $skiptoken", target="$skiptoken")
        token = (
            decode_skiptoken(options.skiptoken, self._max_page_size)
            if options.skiptoken is not None
            else None
        )
        # A nextLink carries $skip only when its page ended on time while skipping.
        skip = options.skip or 0
        top = options.top
        count = await executor.count(source, user_filter, search) if options.count else None
        # A result ordered other than the provider's way is sorted whole and
        # streamed in one response: paging it would re-read and re-sort the
        # upstream for every page, or keep state between requests.
        page_size: Optional[int] = self._page_size_for(token, preferences) if ordering is None else None
        take = min(n for n in (page_size, top) if n is not None) if (page_size, top) != (None, None) else None
        context = self._context(exchange, fmt, shape.fragment)
        explain = preferences.includes_annotation(EXPLAIN_ANNOTATION)
        if explain:
            exchange.trace.evaluated += _engine_work(options, shape, sorted_whole=ordering is not None)
        # A page is read ahead for a plain GET: its reader asks for the
        # nextLink exactly, with the same credentials and format.  Only later
        # pages can have been read ahead.
        read_ahead_key = (
            self._read_ahead_key(exchange, exchange.service_root + request.uri.decode("utf-8").lstrip("/"), fmt)
            if ordering is None and not explain
            else None
        )
        read_ahead = (
            self._read_aheads.take(read_ahead_key)
            if read_ahead_key is not None and token is not None and self._read_aheads is not None
            else None
        )
        # The rows read past the page's end go on into reading the next page
        # ahead: the stream asks for all rows ($top of them); without a
        # read-ahead, for one more than the page shows.
        goes_on = read_ahead_key is not None
        if goes_on:
            rows_wanted = None if top is None else skip + top + 1
        else:
            rows_wanted = skip + take + 1 if take is not None else None
        close: Callable[[], Awaitable[None]]
        if read_ahead is not None:
            exchange.read_ahead = True
            end, executor, stream = read_ahead.state.end, read_ahead.state.executor, read_ahead.state.stream
            stream_trace = read_ahead.state.trace
            close = stream.close
        else:
            stream_trace = exchange.trace
            stream = await executor.rows(
                source,
                user_filter,
                resume=token.cursor if token is not None else None,
                # A sorted result is skipped once sorted.
                skip=skip if ordering is None else 0,
                limit=rows_wanted if ordering is None else None,
                also=search,
                # Rows nothing computes on, expands or sorts can come written already.
                written_by=shape.encoder if not shape.adders and not shape.nodes and ordering is None else None,
            )
            # With $top, an ordered result needs only its first skip + top rows.
            first = skip + top if ordering is not None and top is not None else None
            end = PageEnd()
            if ordering is None:
                next_batch, close = stream.next, stream.close
            else:
                sorted_batches = self._sorted(executor, stream, entity_set, entity_type, ordering, first)
                next_batch = sorted_batches

                async def close() -> None:
                    await stream.close()
                    await sorted_batches.aclose()

        self._json_headers(request, fmt)
        applied = []
        if preferences.max_page_size is not None and page_size is not None:
            applied.append(f"odata.maxpagesize={page_size}")
        if explain:
            applied.append(f'odata.include-annotations="{EXPLAIN_ANNOTATION}"')
        if applied:
            request.setHeader("Preference-Applied", ", ".join(applied))
        writer = exchange.stream = ResponseStream(request)
        attach_related = self._attacher(executor, entity_set, entity_type, shape)
        encode = None if stream.writes else shape.encode
        chunks: AsyncIterator[bytes]
        if read_ahead is not None:
            chunks = read_ahead.chunks(writer.guarded)
        else:
            chunks = page_chunks(
                next_batch,
                skip=skip - stream.skipped,
                take=take,
                encode=encode,
                attach_related=attach_related,
                end=end,
                guard=writer.guarded,
                time_limit=self._time_limit(stream) if page_size is not None else None,
            )
        next_link = None
        handed_over = False
        try:
            await writer.write(collection_start(context, count).encode("utf-8"))
            async for chunk in chunks:
                await writer.write(chunk)
            if end.more and page_size is not None and (top is None or top > end.emitted):
                top_left = top - end.emitted if top is not None else None
                next_link = self._next_link(
                    exchange, raw_path, pairs, top_left, end.skip_left, SkipToken(end.last_cursor, page_size)
                )
                if goes_on:
                    take_next = page_size if top_left is None else min(page_size, top_left)
                    self._read_ahead(
                        exchange, next_link, fmt, executor, stream, stream_trace, end.rest, encode,
                        attach_related, end.skip_left, take_next,
                    )
                    handed_over = True
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
            if read_ahead is not None:
                read_ahead.stop()
                exchange.trace.calls += read_ahead.state.trace.calls
            if not handed_over:
                await close()
        annotations = {EXPLAIN_ANNOTATION: _explanation(exchange.trace, end.emitted)} if explain else {}
        await writer.write(collection_end(next_link, annotations).encode("utf-8"))
        await writer.close()

    def _read_ahead_key(self, exchange: _Exchange, url: str, fmt: JsonFormat) -> Optional[Hashable]:
        """Who may take the page read ahead for ``url``: the same caller, asking the same way."""
        if self._read_aheads is None or exchange.credentials is None or exchange.request.method != b"GET":
            return None
        return (caller_digest(exchange.credentials), url, fmt)

    def _read_ahead(
        self,
        exchange: _Exchange,
        next_link: str,
        fmt: JsonFormat,
        executor: Executor,
        stream: RowStream,
        stream_trace: Trace,
        rest: list[tuple[Entity, Any]],
        encode: Optional[Callable[[Row], str]],
        attach_related: Optional[Callable[[list[Row]], Coroutine[Any, Any, None]]],
        skip: int,
        take: int,
    ) -> None:
        """
        Go on reading ``stream`` (``rest`` first) as the page behind
        ``next_link``; the stream's upstream requests are recorded for that page from now on.
        """
        key = self._read_ahead_key(exchange, next_link, fmt)
        assert key is not None and self._read_aheads is not None
        state = _ReadAheadState(PageEnd(), Trace(), executor, stream)
        stream_trace.forward_to(state.trace)
        chunks = page_chunks(
            resumed(rest, stream.next),
            skip=skip,
            take=take,
            encode=encode,
            attach_related=attach_related,
            end=state.end,
            time_limit=self._time_limit(stream),
        )
        self._read_aheads.start(key, chunks, state, release=lambda: _closing(stream))

    def _time_limit(self, stream: RowStream) -> Optional[TimeLimit]:
        """When a page of ``stream``'s rows ends on time, if ever."""
        if self._page_seconds is None:
            return None
        # Where nothing follows, the page goes on to its end rather than
        # link to an empty one.
        return TimeLimit(self._clock, self._page_seconds, lambda: None if stream.exhausted else stream.scanned)

    @staticmethod
    def _attacher(
        executor: Executor, entity_set: EntitySet, entity_type: EntityType, shape: _Shape
    ) -> Optional[Callable[[list[Row]], Coroutine[Any, Any, None]]]:
        """How to attach the expanded entities to a batch of rows (None: nothing is expanded)."""
        if not shape.nodes:
            return None
        nodes = shape.nodes
        return lambda rows: attach(executor, rows, entity_set, entity_type, nodes)

    def _sorted(
        self,
        executor: Executor,
        stream: RowStream,
        entity_set: EntitySet,
        entity_type: EntityType,
        ordering: _Ordering,
        first: Optional[int],
    ) -> _SortedBatches:
        """
        The stream's rows in the requested order, as (row, cursor) batches
        without cursors; only the ``first`` ones when that is set and small.
        """

        async def rows() -> Optional[list[Row]]:
            pairs = await stream.next()
            if pairs is None:
                return None
            batch = [row for row, _ in pairs]
            if ordering.needs and batch:
                await attach(executor, batch, entity_set, entity_type, ordering.needs)
            return batch

        if first is not None and first <= self._sort_memory_rows:
            return _SortedBatches(_one_batch(lambda: first_rows(rows, ordering.key, first)))
        return _SortedBatches(sorted_batches(rows, ordering.key, memory_rows=self._sort_memory_rows, clock=self._clock))

    def _page_size_for(self, token: Optional[SkipToken], preferences: Preferences) -> int:
        if token is not None:
            return token.page_size
        if preferences.max_page_size is not None:
            return max(1, min(preferences.max_page_size, self._max_page_size))
        return self._page_size

    def _next_link(
        self,
        exchange: _Exchange,
        raw_path: str,
        pairs: Sequence[tuple[str, str]],
        top_left: Optional[int],
        skip_left: int,
        token: SkipToken,
    ) -> str:
        kept = [(name, value) for name, value in pairs if _option_name(name) not in _PAGING_OPTIONS]
        if top_left is not None:
            kept.append(("$top", str(top_left)))
        if skip_left:
            kept.append(("$skip", str(skip_left)))
        kept.append(("$skiptoken", encode_skiptoken(token)))
        return exchange.service_root + raw_path.lstrip("/") + "?" + encode_query(kept)

    async def _send_count(
        self,
        exchange: _Exchange,
        executor: Executor,
        model: Model,
        resolved: CountResult,
        options: QueryOptions,
    ) -> None:
        for name in ("select", "expand", "orderby", "top", "skip", "count", "skiptoken"):
            if getattr(options, name) is not None:
                raise BadRequest(f"${name} does not apply to /$count", target=f"${name}")
        self._check_supported(options)
        entity_type = resolved.source.entity_type
        computed, _ = self._computed(model, entity_type, options)
        user_filter = await self._bind_filter(exchange, executor, model, entity_type, options, computed)
        search = compile_search(options.search, entity_type) if options.search is not None else None
        total = await executor.count(resolved.source, user_filter, search)
        request = exchange.request
        self._common_headers(request)
        request.setHeader("Content-Type", "text/plain;charset=utf-8")
        request.write(str(total).encode("ascii"))

    def _single_options(self, options: QueryOptions) -> None:
        for name in ("filter", "orderby", "top", "skip", "count", "skiptoken", "search"):
            if getattr(options, name) is not None:
                raise BadRequest(f"${name} does not apply to a single entity or value", target=f"${name}")
        self._check_supported(options)

    async def _send_entity(
        self,
        exchange: _Exchange,
        executor: Executor,
        model: Model,
        resolved: EntityResult,
        options: QueryOptions,
        fmt: JsonFormat,
    ) -> None:
        self._single_options(options)
        request = exchange.request
        if resolved.row is None:
            self._common_headers(request)
            request.setResponseCode(204)
            return
        shape = self._shape(exchange, model, resolved.entity_set, resolved.entity_type, options, fmt)
        if shape.nodes:
            await attach(executor, [resolved.row], resolved.entity_set, resolved.entity_type, shape.nodes)
        context = self._context(exchange, fmt, shape.fragment + "/$entity")
        self._json_headers(request, fmt)
        body = shape.encoder.encode_with_context(shape.complete(resolved.row), context)
        request.write(body.encode("utf-8"))

    def _send_property(
        self, exchange: _Exchange, model: Model, resolved: PropertyResult, options: QueryOptions, fmt: JsonFormat
    ) -> None:
        if options.select is not None:
            raise BadRequest("$select does not apply to a property", target="$select")
        self._single_options(options)
        request = exchange.request
        self._common_headers(request)
        if resolved.value is None:
            request.setResponseCode(204)
            return
        if resolved.raw:
            request.setHeader("Content-Type", "text/plain;charset=utf-8")
            request.write(raw_value(resolved.property, resolved.value).encode("utf-8"))
            return
        entity = resolved.entity
        assert entity.row is not None
        fragment = (
            f"{entity.entity_set.name}{key_predicate(entity.entity_type, entity.row)}/{resolved.property.name}"
        )
        request.setHeader("Content-Type", fmt.content_type)
        body = property_document(self._context(exchange, fmt, fragment), resolved.property, resolved.value, fmt)
        request.write(body.encode("utf-8"))


class _Root(Resource):
    """
    The site's root: the service's own routes (``/health``) go to its Klein
    app, ``/console`` to the console when there is one; every other path is
    OData and goes straight to `ODataService.odata`.
    Klein's routing would answer some valid or invalid OData paths itself,
    in HTML (a key holding a percent-encoded line feed, a path that is not
    UTF-8), where clients must get OData errors.
    """

    isLeaf = True

    def __init__(self, service: "ODataService") -> None:
        super().__init__()
        self._service = service
        self._app_routes = service.app.resource()

    def render(self, request: Request) -> Any:
        if request.path in _APP_PATHS:
            return self._app_routes.render(request)
        console = self._service.console
        if console is not None and (request.path == b"/console" or request.path.startswith(b"/console/")):
            return console.render(request)
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def finish(_: object) -> None:
            # `odata` turns every failure into a response or a dropped connection.
            if not gone and not request.finished:
                request.finish()

        ensureDeferred(self._service.odata(request)).addBoth(finish)
        return NOT_DONE_YET


_APP_PATHS = frozenset({b"/health"})


def _target(request: IRequest) -> str:
    return request.uri.decode("utf-8", errors="replace")



__all__ = ["ODataService", "split_query"]
