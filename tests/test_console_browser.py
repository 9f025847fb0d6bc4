"""
The console end to end in headless Chromium (Debian's ``chromium``, driven by
Playwright's sync API), against the simulator and the OData service on one
origin.  The reactor serves; Playwright runs on one dedicated thread, since
its sync API belongs to the thread that started it.  Screenshots of the main
states go to test-artifacts/console/.
"""

from __future__ import annotations

import os

import base64
import json
import shutil
import urllib.request
from pathlib import Path
from typing import Any, AsyncIterator, Callable, TypeVar, cast

import pytest
import pytest_twisted  # type: ignore[import-untyped]  # no py.typed marker, no stubs
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from harness import ADMIN_TOKEN, STANDARD_TOKEN, small_company, start_stack
from odata_klein.service import ODataService
from odata_klein.site import ODataSite
from odata_klein_console import console_resource

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "console"
PAGE_SIZE = 25

# CI installs both (.ci/run); there a missing browser must fail, never skip.
if os.environ.get("CI"):
    import playwright.sync_api as sync_api
else:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium package is not installed", allow_module_level=True)

T = TypeVar("T")


class _SameOrigin(Resource):
    """The site as the service will compose it: /console* to the console, the rest to OData."""

    isLeaf = True

    def __init__(self, console: IResource, service: IResource) -> None:
        super().__init__()
        self._console = console
        self._service = service

    def render(self, request: IRequest) -> Any:
        path = request.path
        target = self._console if path == b"/console" or path.startswith(b"/console/") else self._service
        return target.render(request)


class _Browser:
    """One Chromium for the module, used only from the one thread of ``pool``."""

    def __init__(self) -> None:
        self.pool = ThreadPool(minthreads=1, maxthreads=1, name="playwright")
        self._playwright: Any = None
        self.browser: Any = None

    def run(self, work: Callable[[], T]) -> "Deferred[T]":
        # The global reactor's declared type leaves out its threads interfaces.
        return deferToThreadPool(cast(IReactorFromThreads, reactor), self.pool, work)

    def start(self) -> None:
        self._playwright = sync_api.sync_playwright().start()
        self.browser = self._playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )

    def stop(self) -> None:
        self.browser.close()
        self._playwright.stop()


@pytest_twisted.async_yield_fixture(scope="module")
async def site() -> AsyncIterator[str]:
    stack = await start_stack(small_company(), page_size=1000)
    service = ODataService(stack.provider, page_size=1000)
    console = console_resource(
        basic_user="clicktime", realm="ClickTime OData",
        demo_tokens={"ADMIN": ADMIN_TOKEN, "STANDARD": STANDARD_TOKEN},
    )
    port = reactor.listenTCP(0, ODataSite(_SameOrigin(console, service.resource())), interface="127.0.0.1")  # type: ignore[arg-type]  # Twisted: listenTCP's ServerFactory is invariant in its protocol
    try:
        yield f"http://127.0.0.1:{cast(IPv4Address, port.getHost()).port}/"
    finally:
        await cast(Deferred[None], port.stopListening())
        await stack.stop()


@pytest_twisted.async_yield_fixture(scope="module")
async def chromium() -> AsyncIterator[_Browser]:
    browser = _Browser()
    browser.pool.start()
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    try:
        await browser.run(browser.start)
        yield browser
    finally:
        await browser.run(browser.stop)
        browser.pool.stop()


def _service_json(url: str, token: str = ADMIN_TOKEN) -> dict[str, Any]:
    """What the service itself answers, with the page size the console asks for."""
    request = urllib.request.Request(url, headers={
        "Authorization": "Basic " + base64.b64encode(f"clicktime:{token}".encode()).decode(),
        "Accept": "application/json",
        "Prefer": f"odata.maxpagesize={PAGE_SIZE}",
    })
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _shown(value: Any) -> str:
    """A JSON value as the results table writes it (JavaScript's String())."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _table(page: Any) -> tuple[list[str], list[list[str]]]:
    header = page.eval_on_selector_all("#results thead th", "cells => cells.map(c => c.textContent)")
    rows = page.eval_on_selector_all(
        "#results tbody tr", "rows => rows.map(r => [...r.children].map(c => c.textContent))"
    )
    return header, rows


def _cell(row: dict[str, Any], column: str) -> Any:
    """The value of a column; ``Job/Name`` reads inside an expanded entity."""
    value: Any = row
    for part in column.split("/"):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _expected(rows: list[dict[str, Any]], header: list[str]) -> list[list[str]]:
    return [[_shown(_cell(row, column)) for column in header] for row in rows]


def _signed_in_page(browser: _Browser, root: str, width: int = 1280, height: int = 800) -> Any:
    context = browser.browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    context.set_default_timeout(5000)
    page = context.new_page()
    page.on("dialog", lambda dialog: pytest.fail(f"a dialog opened: {dialog.message}"))
    page.on("pageerror", lambda error: pytest.fail(f"the page raised: {error}"))
    page.goto(root + "console")
    return page


def _run(page: Any) -> None:
    page.click("#run")
    page.wait_for_selector("#row-count, #error:not([hidden])")


def _choose(page: Any, row_selector: str, index: int, part: str, value: str) -> None:
    page.locator(f"{row_selector} {part}").nth(index).select_option(value)


def _build_and_run(page: Any, root: str) -> None:
    """Token, TimeEntries, columns, a date filter and a sort, run; rows as the service's own JSON."""
    page.screenshot(path=ARTIFACTS / "01-sign-in.png")
    page.fill("#token", ADMIN_TOKEN)
    page.click("#sign-in button[type=submit]")
    page.wait_for_selector("#console:not([hidden])")
    assert page.input_value("#token") == ""
    page.fill("#page-size", str(PAGE_SIZE))
    page.select_option("#entity-set", "TimeEntries")
    for column in ("Comment", "ID", "Date", "Hours", "JobID"):
        page.check(f"#column-list input[value={column}]")
    page.click("#add-filter")
    _choose(page, ".filter-row", 0, ".filter-property", "Date")
    _choose(page, ".filter-row", 0, ".filter-operator", "ge")
    assert page.get_attribute(".filter-row .filter-value", "type") == "date"
    page.fill(".filter-row .filter-value", "2026-09-01")
    page.click("#add-sort")
    _choose(page, ".sort-row", 0, ".sort-property", "Hours")
    _choose(page, ".sort-row", 0, ".sort-direction", "desc")
    page.click("#add-sort")
    _choose(page, ".sort-row", 1, ".sort-property", "ID")
    url = page.input_value("#url")
    assert url == (
        root + "TimeEntries?$select=ID,Date,Hours,Comment,JobID&$filter=Date%20ge%202026-09-01"
        "&$orderby=Hours%20desc,ID"
    )
    _run(page)
    page.screenshot(path=ARTIFACTS / "02-results.png", full_page=False)
    header, rows = _table(page)
    assert header == ["ID", "Date", "Hours", "Comment", "JobID"]
    expected = _service_json(url)["value"]
    assert len(expected) > PAGE_SIZE  # a sorted result comes whole: no page size applies
    assert rows == _expected(expected, header)
    assert page.text_content("#row-count") == f"{len(expected)} rows"
    assert page.text_content("#elapsed").endswith(" ms")
    assert page.is_hidden("#next-page")
    page.click("#tab-headers")
    assert "4.0" in page.text_content("#headers")
    page.click("#tab-raw")
    assert json.loads(page.text_content("#raw"))["value"] == expected
    page.click("#tab-results")


def _next_page(page: Any, root: str) -> None:
    """Without the sort the result pages; the next page comes from the nextLink."""
    for _ in range(2):
        page.click(".sort-row button.remove")
    page.check("#count")
    url = page.input_value("#url")
    assert url == root + "TimeEntries?$select=ID,Date,Hours,Comment,JobID&$filter=Date%20ge%202026-09-01&$count=true"
    _run(page)
    first = _service_json(url)
    header, rows = _table(page)
    assert rows == _expected(first["value"], header) and len(rows) == PAGE_SIZE
    assert page.text_content("#total-count") == f"{first['@odata.count']} matching in all"
    page.click("#next-page")
    page.wait_for_selector(f"#row-count:text('{2 * PAGE_SIZE} rows')")
    second = _service_json(first["@odata.nextLink"])
    header, rows = _table(page)
    assert rows == _expected(first["value"] + second["value"], header)
    page.screenshot(path=ARTIFACTS / "03-next-page.png")


def _expand(page: Any, root: str) -> None:
    """An expanded navigation property with its own columns shows as Nav/Property columns."""
    page.check(".expansion input.expand-toggle[value=Job]")
    page.check(".expansion:has(input.expand-toggle[value=Job]) .checks input[value=Name]")
    url = page.input_value("#url")
    assert url.endswith("&$expand=Job($select=Name)&$count=true")
    _run(page)
    header, rows = _table(page)
    assert header == ["ID", "Date", "Hours", "Comment", "JobID", "Job/Name"]
    assert rows == _expected(_service_json(url)["value"], header)


def _hand_edit(page: Any, root: str) -> None:
    """A URL typed by hand updates the builder; what it cannot show is named."""
    page.fill("#url", root + "TimeEntries?$select=ID,Hours&$top=5&$orderby=Hours desc&$filter=Hours gt 2 and contains(Comment,'it''s')")
    sync_api.expect(page.locator("#top")).to_have_value("5")
    assert page.eval_on_selector_all("#column-list input:checked", "boxes => boxes.map(b => b.value)") == ["ID", "Hours"]
    assert page.locator(".filter-row").count() == 2
    assert page.locator(".filter-row .filter-value").nth(1).input_value() == "it's"
    assert page.locator(".sort-row .sort-direction").input_value() == "desc"
    assert page.text_content("#url-note") == ""
    page.fill("#url", root + "TimeEntries?$filter=Hours add 1 gt 2&$top=3")
    page.wait_for_selector("#url-note:text('$filter')")
    assert page.input_value("#top") == "3"


def _syntax_error(page: Any, root: str) -> None:
    page.fill("#url", root + "TimeEntries?$top=2&$filter=Hours gt")
    _run(page)
    assert "position 8" in page.text_content("#error-message")
    assert page.text_content("#error-marked") == "$filter=Hours gt "
    assert page.get_attribute("#error-mark", "class") == "at-end"
    assert page.locator("#results tr").count() == 0 and page.is_hidden("#next-page")
    page.fill("#url", root + "TimeEntries?$filter=Hours gx 2")
    _run(page)
    assert page.text_content("#error-mark") == "g"
    assert page.evaluate("document.querySelector('#url').value.slice(document.querySelector('#url').selectionStart)").startswith("gx")
    page.screenshot(path=ARTIFACTS / "04-syntax-error.png")


def _connect(page: Any, root: str) -> None:
    page.fill("#url", root + "TimeEntries?$select=ID,Hours&$filter=Date ge 2026-09-01")
    page.click("#tab-connect")
    feed = root + "TimeEntries?$select=ID,Hours&$filter=Date ge 2026-09-01"
    sync_api.expect(page.locator("#power-query")).to_contain_text(f'OData.Feed("{feed}", null')
    with page.expect_download() as download_info:
        page.click("#download-pbids")
    download = download_info.value
    assert download.suggested_filename == "TimeEntries.pbids"
    pbids = json.loads(Path(download.path()).read_text())
    assert pbids["connections"][0]["details"]["address"]["url"] == feed
    assert page.text_content("#tableau-url") == root + "TimeEntries?$filter=Date ge 2026-09-01"
    page.screenshot(path=ARTIFACTS / "05-connect.png")


def _metadata(page: Any) -> None:
    page.click("#tab-metadata")
    page.fill("#metadata-search", "custom field")
    visible = page.eval_on_selector_all(
        "details.entity-set:not([hidden]) tbody tr:not([hidden]) th", "cells => cells.map(c => c.textContent)"
    )
    assert "CustomField_WorkLocation" in visible and "Hours" not in visible
    page.screenshot(path=ARTIFACTS / "06-metadata.png")


@pytest_twisted.ensureDeferred
async def test_build_run_page_fail_and_connect(site: str, chromium: _Browser) -> None:
    def scenario() -> None:
        page = _signed_in_page(chromium, site)
        requests: list[Any] = []
        page.on("request", lambda request: requests.append(request))
        try:
            _build_and_run(page, site)
            _next_page(page, site)
            _expand(page, site)
            _hand_edit(page, site)
            _syntax_error(page, site)
            _connect(page, site)
            _metadata(page)
            # The token went only in the Authorization header of requests to the service.
            for request in requests:
                assert ADMIN_TOKEN not in request.url
                sent = request.headers.get("authorization")
                if "/console" in request.url:
                    assert sent is None, request.url
                elif request.url.startswith(site):
                    assert sent == "Basic " + base64.b64encode(f"clicktime:{ADMIN_TOKEN}".encode()).decode()
            # The typed token is nowhere in the page (the demo buttons hold the public demo tokens).
            page_without_demo = page.evaluate(
                "() => { const copy = document.documentElement.cloneNode(true);"
                " copy.querySelector('#demo-tokens').remove(); return copy.outerHTML; }"
            )
            assert ADMIN_TOKEN not in page_without_demo
            page.set_viewport_size({"width": 420, "height": 800})
            page.click("#tab-results")
            page.screenshot(path=ARTIFACTS / "07-narrow.png", full_page=True)
        finally:
            page.context.close()

    await chromium.run(scenario)


@pytest_twisted.ensureDeferred
async def test_upstream_markup_shows_as_text(site: str, chromium: _Browser) -> None:
    def scenario() -> None:
        page = _signed_in_page(chromium, site)
        try:
            page.wait_for_selector(".demo-token")
            page.click(".demo-token:text('ADMIN')")
            page.wait_for_selector("#console:not([hidden])")
            page.fill("#url", site + "Clients?$select=Name&$filter=contains(Name,'Bold') or contains(Name,'Quoted')")
            _run(page)
            names = sorted(page.eval_on_selector_all("#results tbody td", "cells => cells.map(c => c.textContent)"))
            assert names == ['"Quoted" Holdings', "<b>Bold</b> Media Ltd."]
            assert page.locator("#results b").count() == 0
            page.fill("#url", site + "TimeEntries?$select=Comment&$filter=startswith(Comment,'<script>')&$top=3")
            _run(page)
            comments = page.eval_on_selector_all("#results tbody td", "cells => cells.map(c => c.textContent)")
            assert comments and set(comments) == {"<script>alert('x')</script>"}
            assert page.locator("#results script").count() == 0
            page.screenshot(path=ARTIFACTS / "08-markup-as-text.png")
        finally:
            page.context.close()

    await chromium.run(scenario)


@pytest_twisted.ensureDeferred
async def test_explain_tab(site: str, chromium: _Browser) -> None:
    """The Explain tab shows what ClickTime applied, what the service evaluated and the upstream calls."""

    def scenario() -> None:
        entry = _service_json(site + "TimeEntries?$select=ID,UserID&$top=1")["value"][0]
        user = entry["UserID"]
        page = _signed_in_page(chromium, site)
        prefers: list[str] = []
        page.on("request", lambda request: prefers.append(request.headers.get("prefer", "")))
        try:
            page.fill("#token", ADMIN_TOKEN)
            page.click("#sign-in button[type=submit]")
            page.wait_for_selector("#console:not([hidden])")
            page.fill("#page-size", str(PAGE_SIZE))
            page.fill("#url", site + f"TimeEntries?$select=ID,Hours&$filter=UserID eq '{user}' and Hours gt 2")
            _run(page)
            assert f'odata.include-annotations="OdataKlein.explain", odata.maxpagesize={PAGE_SIZE}' in prefers
            header, _ = _table(page)
            assert header == ["ID", "Hours"]
            page.click("#tab-raw")
            assert "@OdataKlein.explain" in json.loads(page.text_content("#raw"))
            page.press("#tab-raw", "ArrowRight")
            assert page.get_attribute("#tab-explain", "aria-selected") == "true"
            assert page.evaluate("document.activeElement.id") == "tab-explain"
            assert page.is_visible("#panel-explain") and page.is_hidden("#panel-raw")
            pushed = page.eval_on_selector_all("#explain ul >> nth=0 >> li", "items => items.map(i => i.textContent)")
            evaluated = page.eval_on_selector_all("#explain ul >> nth=1 >> li", "items => items.map(i => i.textContent)")
            assert any("UserID" in note for note in pushed), pushed
            assert any("Hours gt 2" in note for note in evaluated), evaluated
            requests = page.eval_on_selector_all(
                "#explain-requests tbody tr", "rows => rows.map(r => [...r.children].map(c => c.textContent))"
            )
            assert any(row[1].endswith("/TimeEntries") and f"UserID={user}" in row[2].split("\n") for row in requests), requests
            assert all(row[0] == "GET" and not row[1].startswith("http") for row in requests)
            assert ADMIN_TOKEN not in page.text_content("body")
            page.screenshot(path=ARTIFACTS / "09-explain.png")
            # After "Load next page" the account covers every row shown: both responses' requests.
            page.fill("#url", site + "TimeEntries?$select=ID")
            _run(page)
            sync_api.expect(page.locator("#explain p.hint").last).to_have_text(f"{PAGE_SIZE} rows written in this response.")
            first_requests = page.locator("#explain-requests tbody tr").count()
            page.click("#tab-results")
            page.click("#next-page")
            page.wait_for_selector(f"#row-count:text('{2 * PAGE_SIZE} rows')")
            page.click("#tab-explain")
            sync_api.expect(page.locator("#explain p.hint").last).to_have_text(f"{2 * PAGE_SIZE} rows written in 2 responses.")
            assert page.locator("#explain-requests tbody tr").count() > first_requests >= 1
            # A single entity carries no explanation.
            page.fill("#url", site + f"TimeEntries('{entry['ID']}')")
            _run(page)
            sync_api.expect(page.locator("#explain")).to_have_text("Explain is available for collection queries.")
            assert page.text_content("#row-count") == "1 rows"
        finally:
            page.context.close()

    await chromium.run(scenario)
