"""
The query console's web app: the page at ``/console``, its static files, and
the small fragments htmx loads into it.

The console reads data from the OData service at the site root, in the
browser, with the token the administrator typed: every request that carries
the token goes from the browser to the service.  None of the routes here sees
a token, so none can store, log or render one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping, Optional

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from klein import Klein
from twisted.web.iweb import IRequest
from twisted.web.pages import notFound
from twisted.web.resource import IResource
from twisted.web.static import File

from .connect import Feed, NotAFeedURL

_HERE = Path(__file__).parent
STATIC_DIRECTORY = _HERE / "static"
_TEMPLATES = _HERE / "templates"

# The page loads scripts and styles from its own origin only: a value from the
# upstream that slipped into the page as markup could not run.  htmx is told
# (in the page's htmx-config) not to add inline styles or evaluate code.
_PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Static files never change under one version query string.
_STATIC_CACHE = "public, max-age=31536000, immutable"


class _StaticFiles(File):
    """The package's static folder: files only, no directory listings, text served as UTF-8."""

    contentTypes = {
        **File.contentTypes,
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".md": "text/plain; charset=utf-8",
        ".txt": "text/plain; charset=utf-8",
    }

    def directoryListing(self) -> IResource:
        return notFound()


def _static_version(directory: Path) -> str:
    """A digest of every static file: the query string that makes long caching safe across releases."""
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode("utf-8"))
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


class Console:
    """The console for one service: the Basic user name every token goes with, and the demo tokens if any."""

    app = Klein()

    def __init__(self, *, basic_user: str, realm: str, demo_tokens: Optional[Mapping[str, str]] = None) -> None:
        self._basic_user = basic_user
        self._realm = realm
        self._demo_tokens = dict(demo_tokens or {})
        self._version = _static_version(STATIC_DIRECTORY)
        self._templates = Environment(
            loader=FileSystemLoader(_TEMPLATES), autoescape=True, undefined=StrictUndefined
        )

    def resource(self) -> IResource:
        return self.app.resource()

    def _render(self, request: IRequest, template: str, **context: Any) -> bytes:
        request.setHeader("Content-Type", "text/html; charset=utf-8")
        request.setHeader("X-Content-Type-Options", "nosniff")
        request.setHeader("Cache-Control", "no-store")
        return self._templates.get_template(template).render(**context).encode("utf-8")

    def _static_url(self, name: str) -> str:
        return f"/console/static/{name}?v={self._version}"

    @app.route("/console", methods=["GET", "HEAD"])
    def page(self, request: IRequest) -> bytes:
        request.setHeader("Content-Security-Policy", _PAGE_POLICY)
        request.setHeader("Referrer-Policy", "no-referrer")
        return self._render(
            request,
            "console.html",
            static=self._static_url,
            basic_user=self._basic_user,
            realm=self._realm,
            demo=bool(self._demo_tokens),
        )

    @app.route("/console/static/", branch=True, methods=["GET", "HEAD"])
    def static(self, request: IRequest) -> IResource:
        request.setHeader("Cache-Control", _STATIC_CACHE)
        request.setHeader("X-Content-Type-Options", "nosniff")
        return _StaticFiles(str(STATIC_DIRECTORY))

    @app.route("/console/demo-tokens", methods=["GET"])
    def demo_tokens(self, request: IRequest) -> bytes:
        """One button per demo token: public values, offered only when the service runs its demo."""
        if not self._demo_tokens:
            request.setResponseCode(404)
            request.setHeader("Content-Type", "text/plain; charset=utf-8")
            return b"not in demo mode"
        return self._render(request, "demo_tokens.html", tokens=sorted(self._demo_tokens.items()))

    @app.route("/console/connect", methods=["GET"])
    def connect(self, request: IRequest) -> bytes:
        """The Connect panel for the URL the builder shows (a fragment for htmx)."""
        text = _argument(request, b"url")
        try:
            feed: Optional[Feed] = Feed.parse(text)
            problem = None
        except NotAFeedURL as error:
            feed, problem = None, str(error)
        return self._render(request, "connect.html", feed=feed, problem=problem, basic_user=self._basic_user)

    @app.route("/console/connect.pbids", methods=["GET"])
    def pbids(self, request: IRequest) -> bytes:
        feed = self._download(request, b"url")
        if feed is None:
            return b"an absolute http:// or https:// URL is needed in ?url="
        _attachment(request, f"{feed.name}.pbids", "application/json")
        return feed.pbids()

    @app.route("/console/connect.odc", methods=["GET"])
    def odc(self, request: IRequest) -> bytes:
        feed = self._download(request, b"url")
        if feed is None:
            return b"an absolute http:// or https:// URL is needed in ?url="
        body = self._templates.get_template("connection.odc").render(feed=feed).encode("utf-8")
        _attachment(request, f"{feed.name}.odc", "text/x-ms-odc; charset=utf-8")
        return body

    @staticmethod
    def _download(request: IRequest, name: bytes) -> Optional[Feed]:
        try:
            return Feed.parse(_argument(request, name))
        except NotAFeedURL:
            request.setResponseCode(400)
            request.setHeader("Content-Type", "text/plain; charset=utf-8")
            return None


def _argument(request: IRequest, name: bytes) -> str:
    values = request.args.get(name) or [b""]
    return values[0].decode("utf-8", errors="replace")


def _attachment(request: IRequest, filename: str, content_type: str) -> None:
    request.setHeader("Content-Type", content_type)
    request.setHeader("Content-Disposition", f"attachment; filename=\"{filename}\"")
    request.setHeader("X-Content-Type-Options", "nosniff")
    request.setHeader("Cache-Control", "no-store")


def console_resource(
    *, basic_user: str, realm: str, demo_tokens: Optional[Mapping[str, str]] = None
) -> IResource:
    """The console's resource; route every path starting with ``/console`` to it (it reads the full path)."""
    return Console(basic_user=basic_user, realm=realm, demo_tokens=demo_tokens).resource()


__all__ = ["Console", "console_resource", "STATIC_DIRECTORY"]
