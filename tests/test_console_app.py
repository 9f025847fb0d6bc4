"""The console's own routes over HTTP: the page, static files, demo tokens and the Connect downloads."""

from __future__ import annotations

import html
import json
import re
from typing import AsyncIterator, Optional, cast
from urllib.parse import quote

import pytest
import pytest_twisted  # type: ignore[import-untyped]  # no py.typed marker, no stubs
import treq
from lxml import etree  # type: ignore[import-untyped]  # lxml-stubs is not a test dependency
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.web.server import Site

from odata_klein_console import Feed, NotAFeedURL, console_resource

FEED = "http://127.0.0.1:8080/TimeEntries?$select=ID,Hours&$filter=Comment%20eq%20'say%20%22hi%22'&$top=10"


class _Console:
    def __init__(self, url: str) -> None:
        self.url = url

    async def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        response = await treq.get(self.url + path, unbuffered=True)
        body = await treq.content(response)
        headers = {name.decode().lower(): values[0].decode() for name, values in response.headers.getAllRawHeaders()}
        return response.code, headers, body


async def _serve(demo_tokens: Optional[dict[str, str]]) -> AsyncIterator[_Console]:
    resource = console_resource(basic_user="clicktime", realm="ClickTime <OData>", demo_tokens=demo_tokens)
    port = reactor.listenTCP(0, Site(resource), interface="127.0.0.1")  # type: ignore[arg-type]  # Twisted: listenTCP's ServerFactory is invariant in its protocol
    try:
        yield _Console(f"http://127.0.0.1:{cast(IPv4Address, port.getHost()).port}")
    finally:
        await cast(Deferred[None], port.stopListening())


@pytest_twisted.async_yield_fixture
async def demo_console() -> AsyncIterator[_Console]:
    async for console in _serve({"ADMIN": "demo-admin-token", "STANDARD": "demo-'standard\""}):
        yield console


@pytest_twisted.async_yield_fixture
async def plain_console() -> AsyncIterator[_Console]:
    async for console in _serve(None):
        yield console


@pytest_twisted.ensureDeferred
async def test_page_is_autoescaped_with_a_strict_policy(plain_console: _Console) -> None:
    code, headers, body = await plain_console.get("/console")
    assert code == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["cache-control"] == "no-store"
    page = body.decode()
    assert "ClickTime &lt;OData&gt;: API token" in page and "<OData>" not in page
    assert 'data-basic-user="clicktime"' in page
    # No demo tokens outside demo mode, and no inline script anywhere.
    assert "demo-tokens" not in page
    assert re.search(r"<script(?![^>]*\bsrc=)", page) is None
    for name in ("htmx.min.js", "console.js", "console.css"):
        assert re.search(rf'/console/static/{re.escape(name)}\?v=[0-9a-f]{{12}}"', page)


@pytest_twisted.ensureDeferred
async def test_static_files_with_types_and_long_caching(plain_console: _Console) -> None:
    expected = {
        "htmx.min.js": "text/javascript; charset=utf-8",
        "console.js": "text/javascript; charset=utf-8",
        "console.css": "text/css; charset=utf-8",
        "htmx-LICENSE.txt": "text/plain; charset=utf-8",
    }
    for name, content_type in expected.items():
        code, headers, body = await plain_console.get(f"/console/static/{name}?v=1")
        assert (code, headers["content-type"]) == (200, content_type), name
        assert "max-age=31536000" in headers["cache-control"]
        assert headers["x-content-type-options"] == "nosniff"
        assert body
    code, _, body = await plain_console.get("/console/static/htmx.min.js")
    assert b"htmx" in body[:2000]
    for missing in ("/console/static/", "/console/static/nope.js", "/console/static/../app.py", "/console/nothing"):
        code, _, body = await plain_console.get(missing)
        assert code == 404, missing
        assert b"console_resource" not in body


@pytest_twisted.ensureDeferred
async def test_demo_tokens_only_in_demo_mode(plain_console: _Console, demo_console: _Console) -> None:
    code, _, _ = await plain_console.get("/console/demo-tokens")
    assert code == 404
    code, headers, body = await demo_console.get("/console/demo-tokens")
    assert code == 200 and headers["cache-control"] == "no-store"
    fragment = body.decode()
    assert 'data-token="demo-admin-token"' in fragment
    assert 'data-token="demo-&#39;standard&#34;"' in fragment
    code, _, page = await demo_console.get("/console")
    assert b'hx-get="/console/demo-tokens"' in page
    # The page itself never holds a token, not even a public demo one.
    assert b"demo-admin-token" not in page


@pytest_twisted.ensureDeferred
async def test_connect_fragment(plain_console: _Console) -> None:
    code, _, body = await plain_console.get("/console/connect?url=" + quote(FEED, safe=""))
    assert code == 200
    fragment = body.decode()
    found = re.search(r'<pre id="power-query"[^>]*>(.*?)</pre>', fragment, re.S)
    assert found is not None
    power_query = html.unescape(found.group(1))
    assert power_query == Feed(FEED).power_query()
    assert 'OData.Feed("http://127.0.0.1:8080/TimeEntries?$select=ID,Hours&' in power_query
    found = re.search(r'<code id="tableau-url">(.*?)</code>', fragment)
    assert found is not None
    tableau = html.unescape(found.group(1))
    assert tableau == "http://127.0.0.1:8080/TimeEntries?$filter=Comment%20eq%20'say%20%22hi%22'"
    found = re.search(r'id="download-pbids" href="([^"]+)"', fragment)
    assert found is not None
    pbids_link = html.unescape(found.group(1))
    code, headers, body = await plain_console.get(pbids_link)
    assert code == 200
    assert headers["content-disposition"] == 'attachment; filename="TimeEntries.pbids"'
    assert json.loads(body)["connections"][0]["details"] == {"protocol": "odata", "address": {"url": FEED}}
    code, _, body = await plain_console.get("/console/connect?url=javascript:alert(1)")
    assert code == 200 and b"Pick an entity set" in body and b"OData.Feed" not in body


@pytest_twisted.ensureDeferred
async def test_odc_carries_the_feed_in_its_mashup(plain_console: _Console) -> None:
    code, headers, body = await plain_console.get("/console/connect.odc?url=" + quote(FEED, safe=""))
    assert code == 200
    assert headers["content-type"] == "text/x-ms-odc; charset=utf-8"
    assert headers["content-disposition"] == 'attachment; filename="TimeEntries.odc"'
    # The Power Query document sits escaped inside the element, as Excel writes it.
    found = re.search(rb"<odc:PowerQueryMashupData>(.*?)</odc:PowerQueryMashupData>", body, re.S)
    assert found is not None
    escaped = found.group(1)
    mashup = etree.fromstring(html.unescape(escaped.decode()).encode())
    formula = mashup.find(".//{http://schemas.microsoft.com/DataMashup}Formula").text
    assert formula == Feed(FEED).power_query()
    assert b"Location=TimeEntries;" in body


@pytest_twisted.ensureDeferred
async def test_downloads_refuse_what_is_not_a_feed(plain_console: _Console) -> None:
    for url in ("", "javascript:alert(1)", "/TimeEntries", "http://host/a\nb"):
        for kind in ("pbids", "odc"):
            code, headers, _ = await plain_console.get(f"/console/connect.{kind}?url=" + quote(url, safe=""))
            assert code == 400, (kind, url)
            assert "content-disposition" not in headers


def test_power_query_escapes_m_text() -> None:
    feed = Feed.parse('https://odata.example.com/Jobs?$filter=Name eq \'a"b #(x)\'')
    assert feed.power_query().splitlines()[1] == (
        '    Source = OData.Feed("https://odata.example.com/Jobs?$filter=Name eq \'a""b #(#)(x)\'", '
        'null, [Implementation = "2.0", ODataVersion = 4])'
    )
    assert feed.name == "Jobs"
    assert Feed.parse("https://odata.example.com/").name == "OData"
    assert Feed.parse("https://odata.example.com/Jobs('x')/Client").name == "Client"
    with pytest.raises(NotAFeedURL):
        Feed.parse("ftp://example.com/Jobs")
