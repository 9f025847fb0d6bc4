"""
A full read through the service when ClickTime answers slowly.

Real ClickTime answers over the Internet, each request some tens or hundreds
of milliseconds late, where the loopback simulator answers at once.  This
starts the simulator as a separate process, makes it answer every
TimeEntries request ``--delay`` seconds late (its ``slow`` fault), and reads
all TimeEntries straight from the simulator with treq, page after page, as
``service_throughput.py`` does for (a), then through the service, following
nextLinks, once for each ``--upstream-pages-ahead`` value given; it prints
entities per second, the elapsed time and how many upstream requests each
read took.  Then it reads ``Timesheets?$expand=TimeEntries`` through the
service with its defaults: one TimeEntries request per timesheet, as many at
once as the service allows.

    python benchmarks/upstream_latency.py [--entries 20000] [--delay 0.1] [--ahead 1 4 8]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import treq
from twisted.internet import defer, task

from service_throughput import ADMIN_TOKEN, free_port, read_service, read_upstream, start, stop


async def simulator_call(base_url: str, method: str, path: str, body: Any = None) -> Any:
    control = base_url.removesuffix("/v2") + "/_simulator/" + path
    data = None if body is None else json.dumps(body).encode()
    # As in service_throughput.read_upstream: typed as treq's headers= takes them.
    headers: dict[str | bytes, str | bytes] = {"Content-Type": "application/json"}
    response = await treq.request(method, control, data=data, headers=headers)
    if response.code >= 300:
        raise RuntimeError(f"{method} {path}: {response.code} {await response.text()}")
    return await response.json()


async def read_through_service(base_url: str, target: str, *options: str) -> dict[str, float]:
    """Every page of ``target`` through a service started with ``options``: rows, pages, seconds, upstream requests."""
    service, service_url = start(
        [sys.executable, "-m", "twisted", "odata-clicktime", "--listen", f"tcp:{free_port()}:interface=127.0.0.1",
         "--upstream", base_url, *options],
        r"OData service: (\S+)",
    )
    try:
        await read_service(service_url + "Divisions")  # sign-in, schema and pool, untimed
        await simulator_call(base_url, "DELETE", "requests")
        started = time.perf_counter()
        rows, pages = await read_service(service_url + target)
        seconds = time.perf_counter() - started
        upstream = (await simulator_call(base_url, "GET", "requests"))["total"]
        return {"rows": rows, "pages": pages, "seconds": seconds, "upstream": upstream}
    finally:
        stop(service)


async def main(reactor: Any, entries: int, delay: float, aheads: list[int]) -> None:
    simulator, base_url = start(
        [sys.executable, "-m", "odata_klein_plugins.clicktime.simulator", "--listen",
         f"tcp:{free_port()}:interface=127.0.0.1", "--entries", str(entries), "--admin-token", ADMIN_TOKEN],
        r"(http://127\.0\.0\.1:\d+/v2)",
    )
    try:
        await simulator_call(base_url, "POST", "faults", {"kind": "slow", "path": "/TimeEntries", "times": None, "delay": delay})
        print(f"{entries:,} time entries, every TimeEntries request answered {delay * 1000:.0f} ms late:")
        await simulator_call(base_url, "DELETE", "requests")
        started = time.perf_counter()
        rows = await read_upstream(base_url)
        seconds = time.perf_counter() - started
        upstream = (await simulator_call(base_url, "GET", "requests"))["total"]
        print(
            f"  {'(a) straight from the simulator':<34} {rows / seconds:>8,.0f} entities/s, {seconds:.1f} s, "
            f"{upstream:.0f} upstream requests",
            flush=True,
        )
        for ahead in aheads:
            figures = await read_through_service(base_url, "TimeEntries", "--upstream-pages-ahead", str(ahead))
            print(
                f"  {f'(b) service, {ahead} upstream pages ahead':<34} {figures['rows'] / figures['seconds']:>8,.0f} entities/s, "
                f"{figures['seconds']:.1f} s, {figures['pages']:.0f} OData pages, "
                f"{figures['upstream']:.0f} upstream requests",
                flush=True,
            )
        figures = await read_through_service(base_url, "Timesheets?$expand=TimeEntries")
        print(
            f"  {'(c) Timesheets?$expand=TimeEntries':<34} {figures['rows']:>8,.0f} timesheets in {figures['seconds']:.1f} s, "
            f"{figures['upstream']:.0f} upstream requests",
            flush=True,
        )
    finally:
        stop(simulator)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--delay", type=float, default=0.1, help="seconds each TimeEntries request is answered late")
    parser.add_argument("--ahead", type=int, nargs="+", default=[1, 4, 8], help="--upstream-pages-ahead values to read with")
    arguments = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    task.react(
        lambda reactor: defer.ensureDeferred(main(reactor, arguments.entries, arguments.delay, arguments.ahead))
    )
