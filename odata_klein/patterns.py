"""
``matchesPattern``: ECMAScript regular expressions, matched in bounded time.

OData defines ``matchesPattern`` with ECMAScript's syntax and semantics;
`ecmascript_regex` translates a pattern to its Python equivalent.  Some
patterns backtrack exponentially: ``^(a|aa)+$`` on forty a's and a "!" would
run for longer than the universe is old, and with it the reactor thread,
stopping the whole service for everyone.  No engine with ECMAScript's
backreferences and lookarounds can avoid that by construction, so matching
is bounded in time instead: patterns are compiled with the ``regex`` module,
whose searches take a timeout (the standard library's cannot be interrupted),
and a `PatternMatcher` fails the request with a 400 once one search takes
longer than `MATCH_TIMEOUT`, or all of them together longer than
`MATCH_ALLOWANCE` plus `MATCH_ALLOWANCE_PER_CALL` per search.  Sane
patterns take microseconds per value and never come near either bound.
"""

from __future__ import annotations

import functools
import re
import time
from typing import Any, Callable

import regex  # type: ignore[import-untyped]

from .errors import BadRequest

# One search may take this long (seconds): about ten thousand times what a
# sane pattern needs on a ClickTime comment.
MATCH_TIMEOUT = 0.05
# All searches of one matchesPattern in one request may take this long in
# all, plus this much per search: enough for any sane pattern over any number
# of rows, while one that costs just under MATCH_TIMEOUT on every row is
# stopped after a second instead of running for hours.
MATCH_ALLOWANCE = 1.0
MATCH_ALLOWANCE_PER_CALL = 50e-6


class PatternMatcher:
    """
    ``matchesPattern(value, pattern)`` at one place of an expression
    compiled for one request: its searches share one time budget.  Raises
    TypeError for a value or pattern that is not a string and ValueError for
    a pattern that is not valid (the evaluator makes both null), BadRequest
    when the budget is spent.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._searches = 0
        self._spent = 0.0

    def __call__(self, value: Any, pattern: Any) -> bool:
        if not isinstance(value, str) or not isinstance(pattern, str):
            raise TypeError("matchesPattern needs two strings")
        compiled = ecmascript_regex(pattern)
        self._searches += 1
        left = MATCH_ALLOWANCE + MATCH_ALLOWANCE_PER_CALL * self._searches - self._spent
        if left <= 0:
            raise _too_costly(pattern)
        started = self._clock()
        try:
            return compiled.search(value, timeout=min(MATCH_TIMEOUT, left)) is not None
        except TimeoutError:
            raise _too_costly(pattern) from None
        finally:
            self._spent += self._clock() - started


def _too_costly(pattern: str) -> BadRequest:
    shown = pattern if len(pattern) <= 80 else pattern[:77] + "..."
    return BadRequest(
        f"matchesPattern: the pattern '{shown}' takes too long to match (more than "
        f"{MATCH_TIMEOUT * 1000:.0f} ms on one value, or {MATCH_ALLOWANCE:.0f} s in all); "
        "a repetition of parts that can match the same text in several ways, such as "
        "(a|aa)+, can take exponentially long: write the pattern so that each text matches one way",
        code="PatternTooCostly",
    )


_WORD = "A-Za-z0-9_"
_ES_SPACE = "\\t\\n\\v\\f\\r \\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"
_CLASS_ESCAPES = {"d": "0-9", "w": _WORD, "s": _ES_SPACE}
_WORD_BOUNDARY = f"(?:(?<=[{_WORD}])(?![{_WORD}])|(?<![{_WORD}])(?=[{_WORD}]))"
_NOT_WORD_BOUNDARY = f"(?:(?<=[{_WORD}])(?=[{_WORD}])|(?<![{_WORD}])(?![{_WORD}]))"
_QUANTIFIER_BRACES = re.compile(r"\{[0-9]+(?:,[0-9]*)?\}")
_GROUP_NAME = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)>")


@functools.lru_cache(maxsize=256)
def ecmascript_regex(pattern: str) -> "regex.Pattern[str]":
    """
    Python's equivalent of an ECMAScript regular expression without flags
    (``matchesPattern``).  ECMAScript's ``\\d``, ``\\w`` and ``\\b`` are ASCII
    and its ``\\s`` is Unicode white space; ``.`` stops at any line terminator;
    ``$`` matches only at the very end; an escaped letter without meaning is
    that letter.  Constructs ECMAScript does not have (inline flags,
    possessive quantifiers, atomic groups) are errors, as they are there.
    Raises ValueError with a message for a pattern that is not valid.
    Compiled patterns are memoised: a filter's pattern is compiled once.
    """
    out: list[str] = []
    index, size, in_class = 0, len(pattern), False
    while index < size:
        char = pattern[index]
        if char == "\\":
            class_escape = pattern[index + 1 : index + 2] in _CLASS_ESCAPES
            escaped, index = _translate_escape(pattern, index + 1, in_class)
            out.append(escaped)
            if in_class and class_escape and pattern.startswith("-", index):
                # [\w-z] is \w, "-" and "z" in ECMAScript, not a range ending at "z".
                out.append("\\-")
                index += 1
            continue
        if in_class:
            if char == "]":
                in_class = False
                out.append(char)
            else:
                # Escape what Python's sets treat (or will treat) as operators.
                out.append(re.escape(char) if char in "[&~|" else char)
            index += 1
            continue
        if char == "[":
            if pattern.startswith("[^]", index):
                out.append("(?s:.)")
                index += 3
            elif pattern.startswith("[]", index):
                out.append("(?!)")
                index += 2
            else:
                in_class = True
                negated = pattern.startswith("[^", index)
                out.append("[^" if negated else "[")
                index += 2 if negated else 1
            continue
        if char == "(" and pattern.startswith("(?", index):
            group, index = _translate_group(pattern, index)
            out.append(group)
            continue
        braces = _QUANTIFIER_BRACES.match(pattern, index) if char == "{" else None
        if char in "*+?" or braces is not None:
            token = braces.group(0) if braces is not None else char
            index += len(token)
            if pattern.startswith("?", index):
                token += "?"
                index += 1
            if pattern.startswith("+", index):
                # Python would read a possessive quantifier; ECMAScript has none.
                raise ValueError(f"nothing to repeat at position {index}")
            out.append(token)
            continue
        out.append({".": "[^\\n\\r\\u2028\\u2029]", "$": "\\Z"}.get(char, char))
        index += 1
    if in_class:
        raise ValueError("unterminated character class")
    try:
        return regex.compile("".join(out), flags=regex.VERSION0)
    except regex.error as error:
        raise ValueError(str(error)) from None


def _translate_escape(pattern: str, index: int, in_class: bool) -> tuple[str, int]:
    """The Python form of the escape whose letter is at ``index``, and the index after it."""
    if index >= len(pattern):
        raise ValueError("the pattern ends with a backslash")
    letter = pattern[index]
    after = index + 1
    if letter in _CLASS_ESCAPES:
        body = _CLASS_ESCAPES[letter]
        return (body if in_class else f"[{body}]"), after
    if letter in "DWS":
        if in_class:
            raise ValueError(f"\\{letter} inside a character class is not supported")
        return f"[^{_CLASS_ESCAPES[letter.lower()]}]", after
    if letter == "b":
        return ("\\x08" if in_class else _WORD_BOUNDARY), after
    if letter == "B" and not in_class:
        return _NOT_WORD_BOUNDARY, after
    if letter in "tnvfr":
        return "\\" + letter, after
    if letter == "0" and not pattern[after : after + 1].isdigit():
        return "\\x00", after
    if letter.isdigit():
        if in_class:
            raise ValueError("octal escapes are not supported")
        group = re.match(r"[0-9]+", pattern[index:])
        assert group is not None
        return "\\" + group.group(0), index + len(group.group(0))
    if letter == "c":
        control = pattern[after : after + 1]
        if not (control.isascii() and control.isalpha()):
            raise ValueError("\\c must be followed by a letter")
        return re.escape(chr(ord(control) % 32)), after + 1
    if letter in "xu":
        width = 2 if letter == "x" else 4
        digits = pattern[after : after + width]
        if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
            raise ValueError(f"\\{letter} must be followed by {width} hexadecimal digits")
        return re.escape(chr(int(digits, 16))), after + width
    if letter == "k" and not in_class:
        name = _GROUP_NAME.match(pattern, after)
        if name is None:
            raise ValueError("\\k must be followed by <name>")
        return f"(?P={name.group(1)})", name.end()
    # Any other escaped character stands for itself.
    return re.escape(letter), after


def _translate_group(pattern: str, index: int) -> tuple[str, int]:
    """A group opening with ``(?`` at ``index``: lookarounds, non-capturing and named groups."""
    rest = pattern[index + 2 :]
    for opener in ("<=", "<!", ":", "=", "!"):
        if rest.startswith(opener):
            return "(?" + opener, index + 2 + len(opener)
    name = _GROUP_NAME.match(rest)
    if name is not None:
        return f"(?P<{name.group(1)}>", index + 2 + name.end()
    raise ValueError(f"invalid group at position {index}")


__all__ = ["MATCH_TIMEOUT", "PatternMatcher", "ecmascript_regex"]
