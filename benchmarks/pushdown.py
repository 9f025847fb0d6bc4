"""
What push-down saves on a Power BI-style filter over 200,000 time entries.

Starts the simulator and the service as separate processes (as
service_throughput.py does), picks a user with time entries in March 2026,
and sends through the service, following @odata.nextLink:

    TimeEntries?$filter=Date ge 2026-03-01 and Date lt 2026-04-01 and UserID eq '<user>'

It prints, for that request and for reading all TimeEntries:

- upstream requests: the simulator's own count (GET /_simulator/requests),
  before and after;
- upstream rows: for the filter, how many rows ClickTime's answer to the
  pushed-down query holds (its ``page.count``, asked of the simulator with the
  parameters the provider's planner chooses, ``plan_pushdown``); for the full
  read, every row;
- rows returned by the service, and the time of the request (median of
  ``--repeat`` runs for the filter; one run for the full read).

    python benchmarks/pushdown.py [--entries 200000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

import treq
from twisted.internet import defer, task

from odata_klein.binder import Binder
from odata_klein.parser import QueryParser
from odata_klein_plugins.clicktime.pushdown import plan_pushdown
from odata_klein_plugins.clicktime.schema import build_model
from service_throughput import ADMIN_TOKEN, free_port, read_service, start, stop

REPOSITORY = Path(__file__).resolve().parent.parent
# Typed as treq's headers= takes them: mypy would make a dict[str, str] of the literal, which is not one.
UPSTREAM_HEADERS: dict[str | bytes, str | bytes] = {"Authorization": f"Token {ADMIN_TOKEN}"}


async def upstream_json(url: str, params: Sequence[tuple[str, str]] = ()) -> Any:
    response = await treq.get(url, params=list(params), headers=UPSTREAM_HEADERS)
    return json.loads(await response.content())


async def upstream_requests(root: str) -> int:
    """How many API requests the simulator has received so far."""
    return int((await upstream_json(root + "/_simulator/requests"))["total"])


async def user_with_entries_in_march(base_url: str) -> str:
    page = await upstream_json(
        base_url + "/TimeEntries", [("StartDate", "2026-03-01"), ("EndDate", "2026-03-31"), ("limit", "1")]
    )
    return str(page["data"][0]["UserID"])


async def pushed_rows(base_url: str, filter_text: str) -> tuple[list[tuple[str, str]], int]:
    """The list parameters the provider sends for ``filter_text``, and how many rows ClickTime answers them with."""
    model = build_model([], sees_rates=True)
    entity_set = model.entity_set("TimeEntries")
    assert entity_set is not None
    bound = Binder(model).bind_filter(QueryParser().parse_filter(filter_text), model.type_of(entity_set))
    plan = plan_pushdown("TimeEntries", bound, own_scope=False)
    page = await upstream_json(base_url + "/TimeEntries", [*plan.params, ("limit", "1")])
    return plan.params, int(page["page"]["count"])


async def timed_read(service_url: str, root: str, target: str) -> tuple[float, int, int]:
    """Seconds, rows returned and upstream requests of reading ``target`` through the service."""
    before = await upstream_requests(root)
    started = time.perf_counter()
    rows, _ = await read_service(service_url + target)
    seconds = time.perf_counter() - started
    return seconds, rows, await upstream_requests(root) - before


async def main(reactor: Any, entries: int, repeat: int) -> None:
    simulator, base_url = start(
        [sys.executable, "-m", "odata_klein_plugins.clicktime.simulator", "--listen",
         f"tcp:{free_port()}:interface=127.0.0.1", "--entries", str(entries), "--admin-token", ADMIN_TOKEN],
        r"(http://127\.0\.0\.1:\d+/v2)",
    )
    # Run from the repository, whose twisted/plugins/ holds the odata-clicktime drop-in.
    os.chdir(REPOSITORY)
    service, service_url = start(
        [sys.executable, "-m", "twisted", "odata-clicktime", "--listen",
         f"tcp:{free_port()}:interface=127.0.0.1", "--upstream", base_url],
        r"OData service: (\S+)",
    )
    root = base_url.rsplit("/v2", 1)[0]
    try:
        await read_service(service_url + "Divisions")  # the service learns the caller first
        user = await user_with_entries_in_march(base_url)
        filter_text = f"Date ge 2026-03-01 and Date lt 2026-04-01 and UserID eq '{user}'"
        params, upstream_row_count = await pushed_rows(base_url, filter_text)

        runs = [await timed_read(service_url, root, "TimeEntries?$filter=" + quote(filter_text, safe=""))
                for _ in range(repeat)]
        filter_seconds = statistics.median(run[0] for run in runs)
        _, returned, filter_requests = runs[0]
        all_seconds, all_rows, all_requests = await timed_read(service_url, root, "TimeEntries")

        print(f"{entries} time entries; filter: {filter_text}")
        print(f"  pushed down as: {'&'.join(f'{name}={value}' for name, value in params)}")
        print(f"  {'':<22}{'upstream requests':>18}{'upstream rows':>15}{'rows returned':>15}{'seconds':>10}")
        print(f"  {'filtered (median of ' + str(repeat) + ')':<22}{filter_requests:>18}{upstream_row_count:>15}"
              f"{returned:>15}{filter_seconds:>10.3f}")
        print(f"  {'all TimeEntries':<22}{all_requests:>18}{all_rows:>15}{all_rows:>15}{all_seconds:>10.3f}")
        print(f"  the filter read {upstream_row_count / all_rows:.3%} of the rows upstream, "
              f"in {filter_seconds / all_seconds:.2%} of the time of the full read")
    finally:
        stop(service)
        stop(simulator)


if __name__ == "__main__":
    arguments = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    arguments.add_argument("--entries", type=int, default=200_000)
    arguments.add_argument("--repeat", type=int, default=5)
    options = arguments.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, options.entries, options.repeat)))
