"""Rows checked in slices, with reactor turns between the slices that took long."""

from __future__ import annotations

from typing import Callable

import pytest_twisted  # type: ignore[import-untyped]  # no py.typed marker, no stubs

from odata_klein.slicing import SLICE_SECONDS, kept


class FakeTime:
    """A clock that moves only when a test runs: ``cost(item)`` seconds each."""

    def __init__(self, cost: Callable[[int], float]) -> None:
        self.now = 0.0
        self.turns: list[float] = []
        self._cost = cost

    def test(self, item: int) -> bool:
        self.now += self._cost(item)
        return item % 3 == 0

    async def turn(self) -> None:
        self.turns.append(self.now)


@pytest_twisted.ensureDeferred
async def test_cheap_checks_never_give_a_turn() -> None:
    time = FakeTime(lambda item: 1e-6)
    assert await kept(range(10_000), time.test, time.turn, lambda: time.now) == list(range(0, 10_000, 3))
    assert time.turns == []


@pytest_twisted.ensureDeferred
async def test_costly_checks_give_a_turn_every_slice_seconds() -> None:
    time = FakeTime(lambda item: 0.004)  # 2 s for 500 rows, held at once before
    assert await kept(range(500), time.test, time.turn, lambda: time.now) == list(range(0, 500, 3))
    gaps = [later - earlier for earlier, later in zip([0.0] + time.turns, time.turns)]
    assert len(gaps) > 100 and max(gaps) <= SLICE_SECONDS + 0.004 + 1e-9


@pytest_twisted.ensureDeferred
async def test_costly_rows_after_many_cheap_ones_are_not_held_together() -> None:
    # Cheap rows first, then ones at 0.1 s: a turn comes after each costly row.
    time = FakeTime(lambda item: 1e-6 if item < 1000 else 0.1)
    assert await kept(range(1010), time.test, time.turn, lambda: time.now) == list(range(0, 1010, 3))
    gaps = [later - earlier for earlier, later in zip([0.0] + time.turns, time.turns)]
    assert max(gaps) < 0.25
