"""Run the ClickTime simulator as a process of its own.

    python -m odata_klein_plugins.clicktime.simulator --listen tcp:9000 --entries 200000

It prints three lines, ``base URL: ...``, ``admin token: ...`` and ``standard token: ...``,
then serves until interrupted.  ``--listen`` takes a Twisted server endpoint string.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorCore
from twisted.internet.task import react

from .app import start_simulator
from .data import generate_company


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="odata-clicktime-simulator", description="Serve a generated company over a ClickTime-like REST API v2."
    )
    parser.add_argument("--listen", default="tcp:9000:interface=127.0.0.1", help="Twisted server endpoint string")
    parser.add_argument("--entries", type=int, default=20000, help="number of time entries")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated company")
    parser.add_argument("--admin-token", help="API token of an ADMIN user (default: random on every start)")
    parser.add_argument("--standard-token", help="API token of a STANDARD user (default: random on every start)")
    return parser.parse_args(argv)


async def _serve(reactor: IReactorCore, arguments: argparse.Namespace) -> None:
    company = generate_company(
        entries=arguments.entries,
        seed=arguments.seed,
        admin_token=arguments.admin_token,
        standard_token=arguments.standard_token,
        # It may listen beyond loopback: its tokens must not follow from the seed.
        token_source=random.SystemRandom(),
    )
    running = await start_simulator(reactor, company, arguments.listen)
    print(f"base URL: {running.base_url}")
    print(f"admin token: {company.admin_token}")
    print(f"standard token: {company.standard_token}", flush=True)
    await Deferred()  # serve until the reactor stops (Ctrl-C, SIGTERM)


def main(argv: Sequence[str] | None = None) -> None:
    react(_serve, (_arguments(argv),))


if __name__ == "__main__":
    main(sys.argv[1:])
