"""
Throughput and memory of the service against the ClickTime simulator.

For each entry count (default 50,000 and 200,000) this starts the simulator
and the service as separate processes and measures, in one run:

(a) reading every TimeEntries page straight from the simulator with treq
    (500 per page, as ClickTime allows);
(b) reading the same rows through the service, following @odata.nextLink
    as Power BI does;

and prints entities per second for both, the ratio b/a, and the service's
peak resident memory (VmHWM).  Targets (issue 2): b/a >= 0.8; peak RSS under
150 MB and within 20% between 50,000 and 200,000 entries.

    python benchmarks/service_throughput.py [--entries 50000 200000]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Optional

import treq
from twisted.internet import defer, task

ADMIN_TOKEN = "benchmark-admin-token"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(command: list[str], ready: str) -> tuple[subprocess.Popen[str], str]:
    """Start a process and wait for a line matching ``ready``; return the process and the match."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    pattern = re.compile(ready)
    for line in process.stdout:
        found = pattern.search(line)
        if found:
            return process, found.group(1)
    raise RuntimeError(f"{command[0]} exited before it was ready ({process.wait()})")


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


async def read_upstream(base_url: str) -> int:
    rows, offset = 0, 0
    headers = {"Authorization": f"Token {ADMIN_TOKEN}"}
    while True:
        response = await treq.get(
            f"{base_url}/TimeEntries", params={"limit": "500", "offset": str(offset)}, headers=headers
        )
        body = json.loads(await response.content())
        page = body["data"]
        rows += len(page)
        offset += len(page)
        if not page or offset >= body["page"]["count"]:
            return rows


async def read_service(first_url: str) -> tuple[int, int]:
    basic = base64.b64encode(f"clicktime:{ADMIN_TOKEN}".encode()).decode()
    headers = {
        "Authorization": f"Basic {basic}",
        "Accept": "application/json;odata.metadata=minimal",
        "OData-MaxVersion": "4.0",
    }
    url: Optional[str] = first_url
    rows = pages = 0
    while url is not None:
        response = await treq.get(url, headers=headers)
        if response.code != 200:
            raise RuntimeError(f"{url}: {response.code} {await response.text()}")
        body: dict[str, Any] = json.loads(await response.content())
        rows += len(body["value"])
        pages += 1
        url = body.get("@odata.nextLink")
    return rows, pages


async def measure(entries: int) -> dict[str, float]:
    simulator, base_url = start(
        [sys.executable, "-m", "odata_klein_plugins.clicktime.simulator", "--listen",
         f"tcp:{free_port()}:interface=127.0.0.1", "--entries", str(entries), "--admin-token", ADMIN_TOKEN],
        r"(http://127\.0\.0\.1:\d+/v2)",
    )
    service_port = free_port()
    service, service_url = start(
        [sys.executable, "-m", "twisted", "odata-clicktime", "--listen", f"tcp:{service_port}:interface=127.0.0.1",
         "--upstream", base_url],
        r"OData service: (\S+)",
    )
    try:
        # Warm both processes (caller cache, connection pool) before timing.
        await read_service(service_url + "Divisions")
        started = time.perf_counter()
        upstream_rows = await read_upstream(base_url)
        upstream_seconds = time.perf_counter() - started
        started = time.perf_counter()
        cpu_before = cpu_seconds(service.pid), cpu_seconds(simulator.pid), time.process_time()
        service_rows, pages = await read_service(service_url + "TimeEntries")
        service_seconds = time.perf_counter() - started
        cpu_after = cpu_seconds(service.pid), cpu_seconds(simulator.pid), time.process_time()
        if service_rows != upstream_rows:
            raise RuntimeError(f"the service returned {service_rows} rows, the simulator holds {upstream_rows}")
        return {
            "entries": entries,
            "upstream_per_s": upstream_rows / upstream_seconds,
            "service_per_s": service_rows / service_seconds,
            "ratio": (service_rows / service_seconds) / (upstream_rows / upstream_seconds),
            "pages": pages,
            "peak_rss_mb": peak_rss_mb(service.pid),
            "seconds": service_seconds,
            "service_cpu": cpu_after[0] - cpu_before[0],
            "simulator_cpu": cpu_after[1] - cpu_before[1],
            "client_cpu": cpu_after[2] - cpu_before[2],
        }
    finally:
        stop(service)
        stop(simulator)


async def main(reactor: Any, counts: list[int]) -> None:
    results = []
    for entries in counts:
        result = await measure(entries)
        results.append(result)
        print(
            f"{entries:>8} entries: simulator {result['upstream_per_s']:>9,.0f}/s, "
            f"service {result['service_per_s']:>9,.0f}/s ({result['pages']:.0f} pages), "
            f"b/a {result['ratio']:.2f}, service peak RSS {result['peak_rss_mb']:.1f} MB",
            flush=True,
        )
        print(
            f"{'':>17}during (b), {result['seconds']:.1f} s: CPU seconds service {result['service_cpu']:.1f}, "
            f"simulator {result['simulator_cpu']:.1f}, this client {result['client_cpu']:.1f}",
            flush=True,
        )
    if len(results) > 1:
        low, high = results[0]["peak_rss_mb"], results[-1]["peak_rss_mb"]
        print(f"peak RSS growth from {counts[0]} to {counts[-1]} entries: {100 * (high - low) / low:+.1f}%")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, nargs="+", default=[50_000, 200_000])
    arguments = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, arguments.entries)))
