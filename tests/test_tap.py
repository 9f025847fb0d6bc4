"""``twist odata-clicktime``: found through Twisted's plugin system, options, and a --demo start."""

from __future__ import annotations

import datetime
import gc
import ipaddress
import json
import re
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path
from typing import cast

import pytest
import pytest_twisted  # type: ignore[import-untyped]  # no py.typed marker, no stubs
import treq
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.application.service import IServiceMaker
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.ssl import Certificate
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.web.server import Site

from harness import ADMIN_TOKEN, Observed, TreqHeaders, basic, small_company
from odata_klein.interfaces import IProviderFactory
from odata_klein.plugins import provider_factories
from odata_klein.tap import ODataServerService
from odata_klein_plugins.clicktime.simulator import FaultRule, Simulator, generate_company


def _installed_editable() -> bool:
    """An editable install leaves twisted/plugins/ outside Twisted's plugin path."""
    direct_url = distribution("odata-klein").read_text("direct_url.json") or "{}"
    return bool(json.loads(direct_url).get("dir_info", {}).get("editable"))


def _service_maker() -> IServiceMaker:
    makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
    if "odata-clicktime" not in makers and _installed_editable():
        pytest.skip("an editable install cannot register the twist drop-in; the suite runs against pip install .")
    assert "odata-clicktime" in makers, "the wheel lacks the twisted/plugins drop-in"
    return makers["odata-clicktime"]


def test_clicktime_provider_is_a_plugin() -> None:
    factory = provider_factories()["clicktime"]
    assert IProviderFactory.providedBy(factory)


def test_options() -> None:
    options = _service_maker().options()
    options.parseOptions([])
    assert (options["listen"], options["page-size"], options["upstream"]) == (
        "tcp:8080", 5000, "https://api.clicktime.com/v2",
    )
    assert not options["demo"]
    assert options["read-ahead-pages"] == 8
    assert options["page-seconds"] == 30
    assert (options["upstream-pages-ahead"], options["upstream-concurrency"]) == (8, 8)
    off = _service_maker().options()
    off.parseOptions(["--read-ahead-pages", "0"])
    assert off["read-ahead-pages"] == 0
    for bad in (
        ["--page-size", "0"], ["--read-ahead-pages", "-1"], ["--upstream-pages-ahead", "0"],
        ["--upstream-concurrency", "0"], ["--demo-entries", "-1"], ["--page-seconds", "-1"], ["--no-such-option"],
    ):
        with pytest.raises(usage.UsageError):
            _service_maker().options().parseOptions(bad)
    help_text = str(_service_maker().options())
    for option in (
        "--listen", "--upstream", "--page-size", "--page-seconds", "--read-ahead-pages", "--upstream-pages-ahead",
        "--upstream-concurrency", "--reference-ttl", "--demo", "--demo-entries", "--demo-admin-token",
    ):
        assert option in help_text


@pytest_twisted.ensureDeferred
async def test_demo_serves_a_generated_company(capfd: pytest.CaptureFixture[str]) -> None:
    options = _service_maker().options()
    options.parseOptions(
        ["--demo", "--demo-entries", "300", "--listen", "tcp:0:interface=127.0.0.1", "--page-size", "100",
         "--demo-admin-token", "demo-admin", "--demo-standard-token", "demo-standard"]
    )
    service = _service_maker().makeService(options)
    assert isinstance(service, ODataServerService)
    service.startService()
    try:
        root = await service.started()
        # Once started, the startup heap is frozen and young objects are collected less often.
        assert gc.get_threshold()[0] == 10_000 and gc.get_freeze_count() > 0
        printed = capfd.readouterr().out
        assert f"OData service: {root}" in printed
        assert "ADMIN demo token:    demo-admin" in printed and "STANDARD demo token: demo-standard" in printed
        headers: TreqHeaders = {"Authorization": basic("demo-admin")}
        response = await treq.get(root + "TimeEntries/$count", headers=headers)
        assert (await response.text()) == "300"
        health = await treq.get(root + "health")
        assert health.code == 200
        assert f"Query console: {root}console" in printed
        console = await treq.get(root + "console")
        assert console.code == 200 and "text/html" in console.headers.getRawHeaders("content-type")[0]
        demo = await treq.get(root + "console/demo-tokens")
        assert demo.code == 200 and "demo-standard" in await demo.text()
    finally:
        await service.stopService()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A key and a certificate for 127.0.0.1, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_file, certificate_file = folder / "key.pem", folder / "cert.pem"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    certificate_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_file, certificate_file


@pytest_twisted.ensureDeferred
async def test_listens_on_a_tls_endpoint_and_links_over_https(tmp_path: Path) -> None:
    key_file, certificate_file = _self_signed(tmp_path)
    options = _service_maker().options()
    options.parseOptions(
        ["--demo", "--demo-entries", "30", "--demo-admin-token", "demo-admin",
         "--listen", f"ssl:0:interface=127.0.0.1:privateKey={key_file}:certKey={certificate_file}"]
    )
    service = _service_maker().makeService(options)
    service.startService()
    try:
        root = await service.started()
        assert root.startswith("https://127.0.0.1:")
        trusted = Certificate.loadPEM(certificate_file.read_bytes())
        client = treq.client.HTTPClient(Agent(reactor, BrowserLikePolicyForHTTPS(trustRoot=trusted)))
        headers: TreqHeaders = {"Authorization": basic("demo-admin"), "Prefer": "odata.maxpagesize=20"}
        response = await client.get(root + "TimeEntries?$select=ID", headers=headers)
        page = await response.json()
        assert response.code == 200 and len(page["value"]) == 20
        # Clients follow these links: they must stay on TLS.
        assert page["@odata.context"] == root + "$metadata#TimeEntries(ID)"
        assert page["@odata.nextLink"].startswith(root + "TimeEntries?")
        authorized: TreqHeaders = {"Authorization": basic("demo-admin")}
        following = await client.get(page["@odata.nextLink"], headers=authorized)
        assert len((await following.json())["value"]) == 10
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_demo_tokens_are_not_the_seeds(capfd: pytest.CaptureFixture[str]) -> None:
    """The demo's data is seeded; its tokens must not be, or anyone could read a demo that listens widely."""
    options = _service_maker().options()
    options.parseOptions(["--demo", "--demo-entries", "30", "--listen", "tcp:0:interface=127.0.0.1"])
    service = _service_maker().makeService(options)
    service.startService()
    try:
        root = await service.started()
        printed = capfd.readouterr().out
        admin = re.search(r"ADMIN demo token: +(\S+)", printed).group(1)  # type: ignore[union-attr]
        assert re.fullmatch(r"[A-Za-z0-9]{40}", admin)
        assert admin not in generate_company(entries=30).tokens
        headers: TreqHeaders = {"Authorization": basic(admin)}
        response = await treq.get(root + "TimeEntries/$count", headers=headers)
        assert (await response.text()) == "30"
    finally:
        await service.stopService()


@pytest.mark.parametrize(
    ("arguments", "peak"),
    [
        # After the first page (which brings the count), the other four at once.
        ([], 4),
        (["--upstream-concurrency", "2"], 2),
        (["--upstream-pages-ahead", "1"], 1),
    ],
)
@pytest_twisted.ensureDeferred
async def test_upstream_options_bound_the_requests_in_flight(arguments: list[str], peak: int) -> None:
    simulator = Simulator(small_company(entries=2500), clock=reactor)
    # Answers come late, so that every request the service makes ahead is in flight at once.
    simulator.faults.add(FaultRule("slow", path="/v2/TimeEntries", delay=0.2, times=None))
    observed = Observed(simulator.resource())
    upstream = reactor.listenTCP(0, Site(observed), interface="127.0.0.1")  # type: ignore[arg-type]  # Twisted: listenTCP's ServerFactory is invariant in its protocol
    options = _service_maker().options()
    options.parseOptions(
        ["--upstream", f"http://127.0.0.1:{cast(IPv4Address, upstream.getHost()).port}/v2", "--listen", "tcp:0:interface=127.0.0.1",
         "--page-size", "2500", *arguments]
    )
    service = _service_maker().makeService(options)
    service.startService()
    try:
        root = await service.started()
        headers: TreqHeaders = {"Authorization": basic(ADMIN_TOKEN)}
        response = await treq.get(root + "TimeEntries", headers=headers)
        assert len((await response.json())["value"]) == 2500
    finally:
        await service.stopService()
        await cast(Deferred[None], upstream.stopListening())
    pages = [arrival for arrival in observed.arrivals if arrival.params.get("limit") == ["500"]]
    assert sorted(int(arrival.params["offset"][0]) for arrival in pages) == [0, 500, 1000, 1500, 2000]
    assert observed.peak == {ADMIN_TOKEN: peak}


def test_a_service_that_cannot_start_stops_the_process() -> None:
    # The same token for both demo users fails while the service starts,
    # before the reactor runs; the process used to go on, serving nothing.
    finished = subprocess.run(
        [sys.executable, "-m", "twisted", "--log-format", "text", "odata-clicktime", "--demo",
         "--listen", "tcp:0:interface=127.0.0.1", "--demo-admin-token", "same", "--demo-standard-token", "same"],
        capture_output=True, text=True, timeout=30,
    )
    assert "the OData service could not start" in finished.stdout + finished.stderr
