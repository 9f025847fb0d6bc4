"""
How long other clients wait while the service answers costly URLs.

Starts ``twist odata-clicktime --demo`` (20,000 time entries) as a separate
process, then for each URL below sends it and, while it is being answered,
asks for ``/health`` again and again on other connections.  Prints the
status and time of the costly request and the median and worst time
``/health`` took meanwhile: the reactor is free when the worst stays in the
tens of milliseconds.  Each URL is one a client may send (by accident or
not): very long filters of the shapes Power BI folds lists into, an
exponential regular expression, nested lambdas, a long $orderby, $compute
and parameter aliases that double each other.

    python benchmarks/hostile_urls.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import base64
import socket
import statistics
import sys
import threading
import time
from typing import Callable
from urllib.parse import quote

from service_throughput import ADMIN_TOKEN, free_port, start, stop

STANDARD_TOKEN = "benchmark-standard-token"


def filtered(entity_set: str, filter_text: str, extra: str = "") -> str:
    return f"/{entity_set}?{extra}$filter={quote(filter_text, safe='')}"


def doubling(levels: int) -> str:
    items = ["concat(Comment,Comment) as A0"] + [f"concat(A{i - 1},A{i - 1}) as A{i}" for i in range(1, levels)]
    return quote(",".join(items), safe=",")


URLS: dict[str, Callable[[], str]] = {
    "or-list of 25,000 job IDs (878 KB)": lambda: filtered(
        "TimeEntries", " or ".join(f"JobID eq 'job{i:06d}'" for i in range(25_000)), "$top=10&"
    ),
    "or-list of 40,000 conditions (859 KB)": lambda: filtered(
        "TimeEntries", "Hours gt 0 or " * 40_000 + "true", "$top=10&"
    ),
    "in-list of 70,000 numbers (478 KB)": lambda: filtered(
        "TimeEntries", "Hours in (" + ",".join(str(i) for i in range(100_000, 170_000)) + ")", "$top=10&"
    ),
    "5,000 false conditions over every entry (70 KB)": lambda: filtered(
        "TimeEntries", "Hours lt 0 or " * 5_000 + "false", "$select=ID&"
    ),
    "exponential matchesPattern": lambda: filtered("TimeEntries", r"matchesPattern(Comment,'^(.|.|.)*\d$')"),
    "any() in any() over every timesheet": lambda: filtered(
        "Timesheets", "TimeEntries/any(a:TimeEntries/any(b:b/Hours lt a/Hours sub 20))"
    ),
    "any() three deep": lambda: filtered(
        "Timesheets", "TimeEntries/any(a:TimeEntries/any(b:TimeEntries/any(c:c/Hours lt 0)))"
    ),
    "$orderby of 32 items": lambda: "/TimeEntries?$top=1&$orderby=" + ",".join(["Hours"] * 32),
    "$compute doubling 30 times": lambda: f"/TimeEntries?$top=1&$select=ID,A29&$compute={doubling(30)}",
    "@ aliases doubling 30 times": lambda: "/TimeEntries?$top=1&$filter=length(@a0)%20gt%205&"
    + "&".join(f"@a{i}=concat(@a{i + 1},@a{i + 1})" for i in range(30))
    + "&@a30=Comment",
}


def exchange(port: int, target: str) -> tuple[str, float]:
    """The status line of the answer to ``GET target`` and how long it took in all."""
    credentials = base64.b64encode(f"clicktime:{ADMIN_TOKEN}".encode()).decode()
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {credentials}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        answer = bytearray()
        while chunk := connection.recv(1 << 16):
            answer += chunk
    return bytes(answer).split(b"\r\n", 1)[0].decode(), time.perf_counter() - started


def measure(port: int, target: str) -> tuple[str, float, list[float]]:
    """The costly request's status and seconds, and the seconds of every /health asked meanwhile."""
    outcome: list[tuple[str, float]] = []
    costly = threading.Thread(target=lambda: outcome.append(exchange(port, target)))
    costly.start()
    health = []
    while costly.is_alive():
        health.append(exchange(port, "/health")[1])
    costly.join()
    return outcome[0][0], outcome[0][1], health


def main(only: list[str]) -> None:
    port = free_port()
    service, _ = start(
        [sys.executable, "-m", "twisted", "odata-clicktime", "--demo", "--listen", f"tcp:{port}:interface=127.0.0.1",
         "--demo-admin-token", ADMIN_TOKEN, "--demo-standard-token", STANDARD_TOKEN],
        r"(OData service): ",
    )
    try:
        exchange(port, "/Divisions")  # sign-in and schema, untimed
        for name, make in URLS.items():
            if only and not any(word in name for word in only):
                continue
            status, seconds, health = measure(port, make())
            waits = (
                f"median {statistics.median(health) * 1000:.0f} ms, worst {max(health) * 1000:.0f} ms"
                if health
                else "none asked"
            )
            print(f"{name:<48} {status[9:]:<28} {seconds:7.2f} s; /health x{len(health)}: {waits}", flush=True)
    finally:
        stop(service)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=[], help="run the URLs whose names contain one of these words")
    main(parser.parse_args().only)
