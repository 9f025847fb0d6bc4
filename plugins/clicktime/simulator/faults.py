"""Fault injection: rules that make the simulator misbehave on chosen requests.

A rule says which requests it matches (``path``: a regular expression searched, ignoring
case, in the request target, i.e. the path and query string as sent; empty matches
every request), how many matching requests it lets through first (``after``), how many
times it fires (``times``; ``None`` fires on every later match) and what it does:

- ``status``: answer ``status`` with a ClickTime error body, and a ``Retry-After`` header
  of ``retry_after`` seconds when given;
- ``slow``: give the normal answer ``delay`` seconds late (a reactor timer, so other
  requests are served meanwhile; the timer is cancelled if the client goes away);
- ``malformed``: answer 200 with a body that is not JSON;
- ``truncated``: send the normal answer's headers, with the full Content-Length, and
  half its body, then close the connection;
- ``drop``: close the connection without answering.

Rules are tried in the order they were added; each rule that matches a request counts
it, and the first one whose ``after`` is used up fires.  Every firing is recorded in
``Faults.fired``.  The simulator's control paths (``/_simulator/...``) are never faulted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Literal, get_args

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.web.iweb import IRequest

FaultKind = Literal["status", "slow", "malformed", "truncated", "drop"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
MALFORMED_BODY = b"<html><body><h1>502 Bad Gateway</h1></body></html>"


@dataclass(frozen=True)
class FaultRule:
    """What to break, and how (see the module docstring); checked when made."""

    kind: FaultKind
    path: str = ""
    after: int = 0
    times: int | None = 1
    status: int = 503
    retry_after: int | None = None
    delay: float = 5.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        try:
            re.compile(self.path)
        except re.error as error:
            raise ValueError(f"path is not a regular expression: {error}") from None
        if not _is_count(self.after) or self.after < 0:
            raise ValueError("after must be a whole number >= 0")
        if self.times is not None and (not _is_count(self.times) or self.times < 1):
            raise ValueError("times must be a whole number >= 1, or null for always")
        if not _is_count(self.status) or not 100 <= self.status <= 599:
            raise ValueError("status must be an HTTP status code")
        if self.retry_after is not None and (not _is_count(self.retry_after) or self.retry_after < 0):
            raise ValueError("retry_after must be a whole number of seconds")
        if isinstance(self.delay, bool) or not isinstance(self.delay, int | float) or self.delay < 0:
            raise ValueError("delay must be a number of seconds >= 0")

    @classmethod
    def from_json(cls, value: object) -> FaultRule:
        """The rule a JSON object describes, with this class's field names as keys."""
        if not isinstance(value, Mapping):
            raise ValueError("a fault rule is a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown fault rule keys: {', '.join(map(str, unknown))}")
        return cls(**value)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class FiredFault:
    """One firing: the rule, and the request it hit (method and target)."""

    rule: FaultRule
    method: str
    target: str

    def to_json(self) -> dict[str, object]:
        return {"rule": self.rule.to_json(), "method": self.method, "target": self.target}


@dataclass
class _ArmedRule:
    rule: FaultRule
    pattern: re.Pattern[str]
    let_through: int = 0
    fired: int = 0


class Faults:
    """The rules in force, and the record of those that fired."""

    def __init__(self) -> None:
        self.fired: list[FiredFault] = []
        self._armed: list[_ArmedRule] = []

    @property
    def rules(self) -> tuple[FaultRule, ...]:
        """The rules that may still fire."""
        return tuple(armed.rule for armed in self._armed)

    def add(self, rule: FaultRule) -> None:
        self._armed.append(_ArmedRule(rule, re.compile(rule.path, re.IGNORECASE)))

    def clear(self) -> None:
        """Remove every rule and forget what fired."""
        self._armed.clear()
        self.fired.clear()

    def select(self, method: str, target: str) -> FaultRule | None:
        """The rule that fires on this request, if any; counts the request against the rules."""
        for armed in self._armed:
            if not armed.pattern.search(target):
                continue
            if armed.let_through < armed.rule.after:
                armed.let_through += 1
                continue
            armed.fired += 1
            if armed.fired == armed.rule.times:
                self._armed.remove(armed)
            self.fired.append(FiredFault(armed.rule, method, target))
            return armed.rule
        return None


def inject(
    rule: FaultRule,
    request: IRequest,
    clock: IReactorTime,
    answer: Callable[[], bytes],
    fail: Callable[[int], bytes],
) -> bytes | Deferred[bytes]:
    """Misbehave on ``request`` as ``rule`` says.

    ``answer()`` sets the status and headers of the normal answer on ``request`` and
    returns its body; ``fail(status)`` does the same for a ClickTime error.  The result
    is what a Klein route returns: a body, or a Deferred of one.  Faults that break the
    connection return a Deferred that never fires by itself: Klein cancels it when the
    connection goes, and then writes nothing.
    """
    if rule.kind == "status":
        if rule.retry_after is not None:
            request.setHeader(b"retry-after", b"%d" % rule.retry_after)
        return fail(rule.status)
    if rule.kind == "slow":
        return deferLater(clock, rule.delay, answer)
    if rule.kind == "malformed":
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        request.setHeader(b"content-length", b"%d" % len(MALFORMED_BODY))
        return MALFORMED_BODY
    transport = request.transport  # type: ignore[attr-defined]
    if rule.kind == "truncated":
        body = answer()
        request.setHeader(b"content-length", b"%d" % len(body))
        request.write(body[: len(body) // 2])
        transport.loseConnection()
    else:
        transport.abortConnection()
    return Deferred()
