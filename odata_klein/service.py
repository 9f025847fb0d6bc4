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
from typing import Any, Callable, Mapping, Optional, Sequence
from urllib.parse import unquote

from klein import Klein
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import EncodingResourceWrapper, IResource
from twisted.web.server import Site

from . import csdl
from .accesslog import AccessRecord, log_access
from .auth import credentials_from_header
from .binder import Binder
from .bound import BoundExpr
from .compression import StreamingGzipEncoderFactory
from .deferreds import settle
from .errors import BadRequest, MethodNotAllowed, NotFound, NotImplementedYet, ODataError
from .evaluate import compile_expression
from .executor import (
    CollectionSource,
    CountResult,
    EntityResult,
    Executor,
    PropertyResult,
)
from .headers import ODATA_VERSION_HEADER, install_header_spellings
from .interfaces import IProvider, IProviderSession, Row, Trace
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
from .parser import QueryParser
from .preferences import Preferences, parse_prefer
from .resource import bind_path
from .search import compile_search
from .serializer import (
    EntityEncoder,
    collection_end,
    collection_start,
    property_document,
    raw_value,
)
from .servicedoc import service_document
from .skiptoken import SkipToken, decode_skiptoken, encode_skiptoken
from .streaming import ClientGone, ResponseStream
from .syntax import QueryOptions, SelectItem
from .urls import encode_query, key_predicate

_log = Logger(namespace="odata_klein.service")

_READ_METHODS = ("GET", "HEAD")
# Options that depend on the position in the result: a nextLink rewrites them.
_PAGING_OPTIONS = frozenset({"skip", "top", "skiptoken"})


@dataclass
class _Exchange:
    """What one request carries through the layers."""

    request: IRequest
    service_root: str
    trace: Trace = field(default_factory=Trace)
    stream: Optional[ResponseStream] = None


def _option_name(name: str) -> str:
    """``$Top`` and ``top`` both name the system option ``top`` (OData 4.01)."""
    return name.lower().lstrip("$")


def split_query(query: str) -> list[tuple[str, str]]:
    """Decoded (name, value) pairs in order; ``+`` is a plus sign, as OData literals need."""
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
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
    """

    app = Klein()

    def __init__(
        self,
        provider: IProvider,
        *,
        page_size: int = 5000,
        max_page_size: int = 100_000,
        public_url: Optional[str] = None,
    ) -> None:
        install_header_spellings()
        self._provider = provider
        self._page_size = page_size
        self._max_page_size = max(max_page_size, page_size)
        self._public_url = public_url.rstrip("/") + "/" if public_url else None
        self._parser = QueryParser()

    def resource(self) -> IResource:
        return EncodingResourceWrapper(self.app.resource(), [StreamingGzipEncoderFactory()])

    def site(self) -> Site:
        return ODataSite(self.resource())

    @app.route("/health", methods=["GET", "HEAD"])
    def health(self, request: IRequest) -> bytes:
        """For load balancers: answers without credentials and without asking the upstream."""
        request.setHeader("Content-Type", "application/json")
        request.setHeader("Cache-Control", "no-store")
        return b'{"status":"ok"}'

    @app.route("/", branch=True)
    async def odata(self, request: IRequest) -> None:
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
        credentials = credentials_from_header(request.getHeader("authorization"))
        session = self._provider.open_session(credentials, exchange.trace)
        options = self._parser.parse_query(pairs)
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
        resource_path = self._parser.parse_path(raw_path.lstrip("/"))
        model = await self._model(session)
        aliases = dict(options.aliases)
        bound = bind_path(resource_path, model, aliases)
        executor = Executor(session, model)
        resolved = await executor.resolve(bound)
        if isinstance(resolved, CountResult):
            accepts_text(options.format, accept)
            await self._send_count(exchange, executor, model, resolved, options)
        elif isinstance(resolved, CollectionSource):
            fmt = negotiate_json(options.format, accept)
            await self._send_collection(exchange, executor, model, resolved, options, pairs, raw_path, fmt)
        elif isinstance(resolved, EntityResult):
            fmt = negotiate_json(options.format, accept)
            self._send_entity(exchange, model, resolved, options, fmt)
        else:
            assert isinstance(resolved, PropertyResult)
            if resolved.raw:
                accepts_text(options.format, accept)
            else:
                fmt = negotiate_json(options.format, accept)
            self._send_property(exchange, model, resolved, options, fmt if not resolved.raw else JsonFormat())

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
        for name in ("expand", "orderby", "apply", "deltatoken", "index", "levels", "schemaversion"):
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

    def _selection(
        self,
        entity_type: EntityType,
        select: Optional[tuple[SelectItem, ...]],
        computed: Sequence[Property] = (),
    ) -> tuple[list[Property], Optional[str]]:
        """
        The properties to write, and the select list of the context URL (None: all).
        Computed properties are written when ``$select`` names them, as in
        ASP.NET Core OData; ``*`` stands for the declared properties.
        """
        if select is None:
            return list(entity_type.properties), None
        computed_by_name = {prop.name: prop for prop in computed}
        chosen: list[Property] = []
        listed: list[str] = []
        for item in select:
            if item.star:
                if len(item.path) > 0:
                    raise NotImplementedYet("qualified * in $select is not supported yet", target="$select")
                chosen.extend(entity_type.properties)
                listed.append("*")
                continue
            if item.options is not None or len(item.path) != 1:
                raise NotImplementedYet(
                    f"$select of {'/'.join(item.path)} with a path or nested options is not supported yet",
                    target="$select",
                )
            name = item.path[0]
            prop = entity_type.property(name) or computed_by_name.get(name)
            if prop is not None:
                chosen.append(prop)
            elif entity_type.navigation_property(name) is None:
                raise BadRequest(
                    f"$select: {name!r} is not a property of {entity_type.name}", target="$select"
                )
            listed.append(name)
        properties = list({prop.name: prop for prop in chosen}.values())
        return properties, ("*" if listed == ["*"] else ",".join(dict.fromkeys(listed)))

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

    def _bind_filter(
        self,
        model: Model,
        entity_type: EntityType,
        options: QueryOptions,
        computed: Mapping[str, BoundExpr],
    ) -> Optional[BoundExpr]:
        if options.filter is None:
            return None
        return Binder(model).bind_filter(options.filter, entity_type, dict(options.aliases), computed=computed)

    def _context(self, exchange: _Exchange, fmt: JsonFormat, fragment: str) -> Optional[str]:
        if fmt.metadata == "none":
            return None
        return f"{exchange.service_root}$metadata#{fragment}"

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
        entity_type = source.entity_type
        computed, adders = self._computed(model, entity_type, options)
        properties, select_list = self._selection(entity_type, options.select, [p for p, _ in adders])
        user_filter = self._bind_filter(model, entity_type, options, computed)
        search = compile_search(options.search, entity_type) if options.search is not None else None
        preferences = parse_prefer(request.getHeader("prefer"))
        token = (
            decode_skiptoken(options.skiptoken, self._max_page_size)
            if options.skiptoken is not None
            else None
        )
        page_size = self._page_size_for(token, preferences)
        skip = 0 if token is not None else (options.skip or 0)
        top = options.top
        count = await executor.count(source, user_filter, search) if options.count else None

        take = page_size if top is None else min(page_size, top)
        stream = await executor.rows(
            source,
            user_filter,
            resume=token.cursor if token is not None else None,
            limit=skip + take + 1,
            also=search,
        )
        encoder = EntityEncoder(
            model, entity_type, fmt, properties,
            self._entity_url_builder(exchange, source.entity_set, entity_type),
        )
        select_suffix = f"({select_list})" if select_list is not None else ""
        context = self._context(exchange, fmt, source.entity_set.name + select_suffix)

        self._json_headers(request, fmt)
        if preferences.max_page_size is not None:
            request.setHeader("Preference-Applied", f"odata.maxpagesize={page_size}")
        writer = exchange.stream = ResponseStream(request)
        emitted = 0
        last_cursor: Any = None
        more = False
        try:
            await writer.write(collection_start(context, count).encode("utf-8"))
            while not more and take > 0 and (batch := await writer.guarded(stream.next())) is not None:
                encoded: list[str] = []
                for row, cursor in batch:
                    if skip:
                        skip -= 1
                        continue
                    if emitted == take:
                        more = True
                        break
                    for prop, compute in adders:
                        row[prop.name] = compute(row)
                    encoded.append(encoder.encode(row))
                    emitted += 1
                    last_cursor = cursor
                if encoded:
                    chunk = ",".join(encoded)
                    await writer.write(("," + chunk if emitted > len(encoded) else chunk).encode("utf-8"))
        finally:
            await stream.close()
        next_link = None
        if more and (top is None or top > emitted):
            next_link = self._next_link(
                exchange, raw_path, pairs, top - emitted if top is not None else None,
                SkipToken(last_cursor, page_size),
            )
        await writer.write(collection_end(next_link).encode("utf-8"))
        await writer.close()

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
        token: SkipToken,
    ) -> str:
        kept = [(name, value) for name, value in pairs if _option_name(name) not in _PAGING_OPTIONS]
        if top_left is not None:
            kept.append(("$top", str(top_left)))
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
        user_filter = self._bind_filter(model, entity_type, options, computed)
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

    def _send_entity(
        self, exchange: _Exchange, model: Model, resolved: EntityResult, options: QueryOptions, fmt: JsonFormat
    ) -> None:
        self._single_options(options)
        request = exchange.request
        if resolved.row is None:
            self._common_headers(request)
            request.setResponseCode(204)
            return
        _, adders = self._computed(model, resolved.entity_type, options)
        properties, select_list = self._selection(resolved.entity_type, options.select, [p for p, _ in adders])
        for prop, compute in adders:
            resolved.row[prop.name] = compute(resolved.row)
        select_suffix = f"({select_list})" if select_list is not None else ""
        context = self._context(exchange, fmt, f"{resolved.entity_set.name}{select_suffix}/$entity")
        encoder = EntityEncoder(
            model, resolved.entity_type, fmt, properties,
            self._entity_url_builder(exchange, resolved.entity_set, resolved.entity_type),
        )
        self._json_headers(request, fmt)
        request.write(encoder.encode_with_context(resolved.row, context).encode("utf-8"))

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


class ODataSite(Site):
    """A Site whose access log is the service's own (one line per request, with upstream counts)."""

    noisy = False

    def log(self, request: Any) -> None:
        pass


def _target(request: IRequest) -> str:
    return request.uri.decode("utf-8", errors="replace")



__all__ = ["ODataService", "ODataSite", "split_query"]
