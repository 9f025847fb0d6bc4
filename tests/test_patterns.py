"""matchesPattern's matcher: ECMAScript patterns, each search and all of them bounded in time."""

from __future__ import annotations

import itertools

import pytest

from odata_klein.errors import BadRequest
from odata_klein.patterns import MATCH_ALLOWANCE, MATCH_ALLOWANCE_PER_CALL, PatternMatcher


def test_matches_like_an_ecmascript_search() -> None:
    matches = PatternMatcher()
    assert matches("Workshop preparation", r"\bprep")
    assert not matches("Workshop preparation", "^prep")


def test_values_that_are_not_strings_and_invalid_patterns_are_for_the_evaluator_to_make_null() -> None:
    matches = PatternMatcher()
    with pytest.raises(TypeError):
        matches(42, "4")
    with pytest.raises(ValueError):
        matches("a", "a(")


def test_a_search_that_backtracks_exponentially_fails_the_request() -> None:
    # 2**40 ways to split forty a's before the "!" rules each out.
    with pytest.raises(BadRequest) as raised:
        PatternMatcher()("a" * 40 + "!", "^(a|aa)+$")
    assert raised.value.code == "PatternTooCostly"
    assert "the pattern '^(a|aa)+$' takes too long" in raised.value.message


def test_searches_that_each_stay_under_the_timeout_share_one_allowance() -> None:
    ticks = itertools.count()
    search_seconds = 0.01  # far slower than a sane pattern, just under the timeout
    # Every other reading of the clock ends a search, search_seconds after it started.
    matches = PatternMatcher(clock=lambda: (next(ticks) + 1) // 2 * search_seconds)
    done = 0
    with pytest.raises(BadRequest):
        for _ in range(1000):
            matches("Workshop preparation", "prep")
            done += 1
    # Search k may start while the k - 1 before it took less than the allowance.
    assert done == int((MATCH_ALLOWANCE + search_seconds) / (search_seconds - MATCH_ALLOWANCE_PER_CALL))


def test_sane_searches_never_come_near_the_allowance() -> None:
    matches = PatternMatcher()
    comment = "Reviewed the quarterly report draft with the client team"
    assert sum(matches(comment, r"^Rev.*\bteam$") for _ in range(20_000)) == 20_000
