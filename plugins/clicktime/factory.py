"""
The ClickTime provider plugin: its command-line options and how it starts.

With ``--demo`` it starts the ClickTime simulator in the same process on a
loopback port, filled with a generated company, and points the provider at
it, so the service can be tried without a ClickTime account.
"""

from __future__ import annotations

import random
from typing import Any, Mapping, Optional

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.plugin import IPlugin
from zope.interface import implementer

from odata_klein.interfaces import IProviderFactory, RunningProvider
from odata_klein.tap import whole_number

from .client import DEFAULT_CONCURRENCY_PER_TOKEN, DEFAULT_PAGES_AHEAD, ClickTimeClient
from .provider import BASIC_USER, ClickTimeProvider

DEFAULT_UPSTREAM = "https://api.clicktime.com/v2"
DEFAULT_DEMO_ENTRIES = 20_000


class _DemoProvider(ClickTimeProvider):
    """A provider that also stops the simulator it was started with."""

    def __init__(self, *args: Any, stop_simulator: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stop_simulator = stop_simulator

    def close(self) -> Deferred[None]:
        async def close_both() -> None:
            await super(_DemoProvider, self).close()
            await self._stop_simulator()

        return ensureDeferred(close_both())


@implementer(IPlugin, IProviderFactory)
class ClickTimeProviderFactory:
    name = "clicktime"
    description = (
        "Serves ClickTime (TimeEntries, Users, Jobs, Clients, Tasks, Divisions, Timesheets) as OData. "
        f"Clients sign in with user name '{BASIC_USER}' and their ClickTime API token as the password."
    )
    option_parameters = [
        ["upstream", None, DEFAULT_UPSTREAM, "The ClickTime REST API v2 base URL."],
        [
            "reference-ttl", None, 60,
            "Seconds a caller's copy of Users, Jobs, Clients, Tasks and Divisions is reused to answer "
            "filters through navigation and $expand (0: always ask ClickTime).",
            whole_number(0),
        ],
        [
            "upstream-pages-ahead", None, DEFAULT_PAGES_AHEAD,
            "How many next ClickTime pages to request while the current one is served, so that "
            "ClickTime's latency is paid about once per that many pages (1: one page at a time; "
            "at most --upstream-concurrency are in flight).",
            whole_number(1),
        ],
        [
            "upstream-concurrency", None, DEFAULT_CONCURRENCY_PER_TOKEN,
            "How many requests one token may have in flight at ClickTime at once, over all of its "
            "OData requests (pages read ahead included).",
            whole_number(1),
        ],
        [
            "demo-entries", None, DEFAULT_DEMO_ENTRIES,
            "With --demo: how many time entries the generated company has (the same number gives the same data).",
            whole_number(0),
        ],
        ["demo-admin-token", None, None, "With --demo: the ADMIN user's token (default: random on every start)."],
        ["demo-standard-token", None, None, "With --demo: a STANDARD user's token (default: random on every start)."],
    ]
    option_flags = [
        [
            "demo", None,
            "Serve a generated demo company from a built-in ClickTime simulator instead of --upstream "
            "(no ClickTime account needed); prints demo tokens.",
        ],
    ]

    def start(self, reactor: Any, options: Mapping[str, Any]) -> Deferred[RunningProvider]:
        return ensureDeferred(self._start(reactor, options))

    async def _start(self, reactor: Any, options: Mapping[str, Any]) -> RunningProvider:
        if not options.get("demo"):
            client = _client(reactor, options.get("upstream") or DEFAULT_UPSTREAM, options)
            return RunningProvider(
                ClickTimeProvider(reactor, client, reference_ttl=_reference_ttl(options)), basic_user=BASIC_USER
            )
        from .simulator import generate_company, start_simulator

        company = generate_company(
            entries=options.get("demo-entries", DEFAULT_DEMO_ENTRIES),
            admin_token=_optional(options.get("demo-admin-token")),
            standard_token=_optional(options.get("demo-standard-token")),
            # The service may listen on every interface: its tokens must not follow from the seed.
            token_source=random.SystemRandom(),
        )
        simulator = await start_simulator(reactor, company, access_log=False, record_requests=False)
        client = _client(reactor, simulator.base_url, options)
        provider = _DemoProvider(
            reactor, client, stop_simulator=simulator.stop, reference_ttl=_reference_ttl(options)
        )
        return RunningProvider(
            provider,
            announcements=(
                f"Demo ClickTime simulator: {simulator.base_url} "
                f"({len(company.time_entries)} time entries, {len(company.users)} users)",
                f"Sign in with user name '{BASIC_USER}' and one of these tokens as the password:",
                f"  ADMIN demo token:    {company.admin_token}",
                f"  STANDARD demo token: {company.standard_token}",
            ),
            demo_tokens={"ADMIN": company.admin_token, "STANDARD": company.standard_token},
            basic_user=BASIC_USER,
        )


def _client(reactor: Any, base_url: str, options: Mapping[str, Any]) -> ClickTimeClient:
    return ClickTimeClient(
        reactor,
        base_url,
        pages_ahead=options.get("upstream-pages-ahead", DEFAULT_PAGES_AHEAD),
        max_concurrent_per_token=options.get("upstream-concurrency", DEFAULT_CONCURRENCY_PER_TOKEN),
    )


def _reference_ttl(options: Mapping[str, Any]) -> float:
    return float(options.get("reference-ttl", 60))


def _optional(value: Optional[str]) -> Optional[str]:
    return value or None
