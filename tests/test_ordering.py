"""
``$orderby`` ordering (`odata_klein.ordering`): the order of values of every
kind, several items in mixed directions, stability, values of different kinds
in untyped properties, and sorting with runs spilled to files (the same order
as in memory, files gone however the iteration ends), checked against a
reference that sorts item by item with Python's stable sort.
"""

from __future__ import annotations

import datetime
import math
import os
import uuid
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, AsyncGenerator, Awaitable, Callable, Coroutine, Optional, Sequence, TypeVar

import pytest
import pytest_twisted  # type: ignore[import-untyped]  # no py.typed marker, no stubs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from odata_klein.bound import BoundCall, BoundExpr, BoundProperty
from odata_klein.interfaces import Row
from odata_klein.ordering import SortKey, order_key, sorted_batches

T = TypeVar("T")
UTC = datetime.timezone.utc
Source = Callable[[], Awaitable[Optional[list[Row]]]]


def prop(name: str, edm: str = "Edm.Untyped") -> BoundProperty:
    return BoundProperty((name,), edm)


def values_in_order(values: Sequence[Any], descending: bool = False, edm: str = "Edm.Untyped") -> list[Any]:
    """``values`` as rows of property V, sorted by V, back as values."""
    rows = [{"V": v} for v in values]
    return [row["V"] for row in sorted(rows, key=order_key([(prop("V", edm), descending)]))]


def source_of(rows: Sequence[Row], batch: int = 7, failure: Optional[Exception] = None) -> Source:
    """A source giving ``rows`` in batches, then None (or raising ``failure`` instead)."""
    batches = iter([list(rows[i : i + batch]) for i in range(0, len(rows), batch)])

    async def next_batch() -> Optional[list[Row]]:
        found = next(batches, None)
        if found is None and failure is not None:
            raise failure
        return found

    return next_batch


async def collect(source: Source, key: Callable[[Row], SortKey], **options: Any) -> list[list[Row]]:
    return [batch async for batch in sorted_batches(source, key, **options)]


def synchronously(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that awaits nothing asynchronous (its sources answer at once)."""
    outcomes: list[Any] = []
    ensureDeferred(coroutine).addBoth(outcomes.append)
    (outcome,) = outcomes
    if isinstance(outcome, Failure):
        outcome.raiseException()
    return outcome


def flat(batches: list[list[Row]]) -> list[Row]:
    return [row for batch in batches for row in batch]


# --- The order of values ----------------------------------------------------------------


@pytest.mark.parametrize("edm", ["Edm.String", "Edm.Untyped"])
def test_null_first_ascending_and_last_descending(edm: str) -> None:
    assert values_in_order(["b", None, "a", None], edm=edm) == [None, None, "a", "b"]
    assert values_in_order(["b", None, "a", None], descending=True, edm=edm) == ["b", "a", None, None]


def test_strings_by_code_point_both_ways() -> None:
    texts = ["é", "a", "Z", "ab", "", "abc", "a\x00", "a\x00\x00b", "\U0001f600", "\uffff", "\ud800", "ä"]
    by_code_point = ["", "Z", "a", "a\x00", "a\x00\x00b", "ab", "abc", "ä", "é", "\ud800", "\uffff", "\U0001f600"]
    assert values_in_order(texts, edm="Edm.String") == by_code_point
    assert values_in_order(texts, descending=True, edm="Edm.String") == by_code_point[::-1]


def test_numbers_of_mixed_types_compare_exactly() -> None:
    tiny_decimal = Decimal("1.0000000000000001")  # between 1 and the next float
    next_float = 1.0000000000000002
    numbers = [2, Decimal("1.5"), next_float, tiny_decimal, 1, -math.inf, Decimal("Infinity"), 2**53 + 1, float(2**53)]
    ascending = [-math.inf, 1, tiny_decimal, next_float, Decimal("1.5"), 2, float(2**53), 2**53 + 1, Decimal("Infinity")]
    assert values_in_order(numbers) == ascending
    assert values_in_order(numbers, descending=True) == ascending[::-1]


def test_decimals_beyond_the_default_precision_keep_their_order_descending() -> None:
    # Unary minus would round both to 1 under the default 28-digit context.
    longer = Decimal("1.000000000000000000000000000000000000001")
    assert values_in_order([Decimal(1), longer], descending=True, edm="Edm.Decimal") == [longer, Decimal(1)]


def test_nan_comes_before_every_number_and_nans_keep_their_order() -> None:
    float_nan, decimal_nan, signalling = math.nan, Decimal("NaN"), Decimal("sNaN")
    numbers = [1, float_nan, -math.inf, decimal_nan, Decimal("-Infinity"), signalling]
    ascending = values_in_order(numbers)
    assert ascending[:3] == [float_nan, decimal_nan, signalling]
    assert ascending[3:] == [-math.inf, Decimal("-Infinity"), 1]
    descending = values_in_order(numbers, descending=True)
    assert descending[:3] == [1, -math.inf, Decimal("-Infinity")]
    assert descending[3:] == [float_nan, decimal_nan, signalling]


def test_date_times_by_instant_across_offsets() -> None:
    def at(hour: int, minute: int, offset_hours: int) -> datetime.datetime:
        zone = datetime.timezone(datetime.timedelta(hours=offset_hours))
        return datetime.datetime(2026, 5, 6, hour, minute, tzinfo=zone)

    eight_utc = at(10, 0, 2)  # 08:00Z
    half_past_eight = at(3, 30, -5)  # 08:30Z
    nine = datetime.datetime(2026, 5, 6, 9, 0)  # no offset: UTC
    seven = at(7, 0, 0)
    moments = [eight_utc, nine, half_past_eight, seven]
    edm = "Edm.DateTimeOffset"
    assert values_in_order(moments, edm=edm) == [seven, eight_utc, half_past_eight, nine]
    assert values_in_order(moments, descending=True, edm=edm) == [nine, half_past_eight, eight_utc, seven]


@pytest.mark.parametrize(
    "ascending",
    [
        [False, True],
        [datetime.date(1, 1, 1), datetime.date(2025, 12, 31), datetime.date(2026, 1, 1)],
        [datetime.time(0, 0), datetime.time(8, 30, 0, 1), datetime.time(23, 59, 59, 999999)],
        [datetime.timedelta.min, -datetime.timedelta(microseconds=1), datetime.timedelta(0), datetime.timedelta.max],
        [uuid.UUID(int=0), uuid.UUID("0000000f-0000-0000-0000-000000000000"), uuid.UUID("f0000000-0000-0000-0000-000000000000")],
        [b"", b"\x00", b"\x00\x00", b"\x00\xff", b"\x01", b"\xff"],
    ],
    ids=["boolean", "date", "time", "duration", "guid", "binary"],
)
def test_other_primitive_types_both_ways(ascending: list[Any]) -> None:
    shuffled = ascending[1::2] + ascending[::2]
    assert values_in_order(shuffled) == ascending
    assert values_in_order(shuffled, descending=True) == ascending[::-1]


def test_values_of_different_kinds_are_ordered_by_kind_without_failing() -> None:
    structure, array = {"a": 1}, [1]
    by_kind = [
        None,
        False,
        math.nan,
        Decimal(3),
        datetime.date(2026, 1, 1),
        datetime.datetime(2020, 1, 1, tzinfo=UTC),
        datetime.time(12, 0),
        datetime.timedelta(hours=1),
        uuid.UUID(int=1),
        "2019-01-01",
        b"x",
        structure,
        array,
    ]
    shuffled = by_kind[7:] + by_kind[:7]
    assert values_in_order(shuffled) == by_kind
    # Structures are equal to each other, so they keep their order in both directions.
    descending = values_in_order(shuffled, descending=True)
    assert descending[:2] == [structure, array]
    assert descending[2:] == by_kind[-3::-1]


def test_several_items_in_mixed_directions() -> None:
    rows: list[Row] = [
        {"Job": "b", "Hours": Decimal(1), "Name": "x"},
        {"Job": "a", "Hours": Decimal(2), "Name": "y"},
        {"Job": "b", "Hours": Decimal(3), "Name": "z"},
        {"Job": "a", "Hours": Decimal(2), "Name": "w"},
        {"Job": None, "Hours": None, "Name": "v"},
        {"Job": "a", "Hours": None, "Name": "u"},
    ]
    key = order_key([(prop("Job", "Edm.String"), False), (prop("Hours", "Edm.Decimal"), True), (prop("Name", "Edm.String"), False)])
    assert [row["Name"] for row in sorted(rows, key=key)] == ["v", "w", "y", "u", "z", "x"]


def test_ordering_by_an_expression() -> None:
    length: BoundExpr = BoundCall("length", (prop("Name", "Edm.String"),), "Edm.Int32")
    rows: list[Row] = [{"Name": "ccc"}, {"Name": "a"}, {"Name": None}, {"Name": "bb"}]
    key = order_key([(length, True)])
    assert [row["Name"] for row in sorted(rows, key=key)] == ["ccc", "bb", "a", None]


# --- Sorting batches --------------------------------------------------------------------


def numbered_rows(count: int, groups: int) -> list[Row]:
    """Rows with many equal ``G`` values; ``N`` tells the provider's order."""
    return [{"N": n, "G": (n * 7919) % groups, "S": str((n * 31) % 11)} for n in range(count)]


GROUP_THEN_TEXT_DESCENDING = order_key([(prop("G", "Edm.Int64"), False), (prop("S", "Edm.String"), True)])


def expected_order(rows: list[Row]) -> list[int]:
    by_text = sorted(rows, key=lambda row: row["S"], reverse=True)
    return [row["N"] for row in sorted(by_text, key=lambda row: row["G"])]


@pytest.mark.parametrize("memory_rows", [10, 5000])
def test_sorting_is_stable_in_memory_and_spilled(memory_rows: int, tmp_path: Path) -> None:
    rows = numbered_rows(3000, groups=5)
    batches = synchronously(collect(source_of(rows), GROUP_THEN_TEXT_DESCENDING, memory_rows=memory_rows, spill_dir=str(tmp_path)))
    assert [row["N"] for row in flat(batches)] == expected_order(rows)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(("count", "batch_size", "sizes"), [(0, 4, []), (8, 4, [4, 4]), (10, 4, [4, 4, 2]), (3, 1000, [3])])
@pytest.mark.parametrize("memory_rows", [1, 3, 100])
def test_batch_sizes(count: int, batch_size: int, sizes: list[int], memory_rows: int, tmp_path: Path) -> None:
    rows = numbered_rows(count, groups=3)
    batches = synchronously(
        collect(source_of(rows, batch=3), GROUP_THEN_TEXT_DESCENDING, memory_rows=memory_rows, batch_size=batch_size, spill_dir=str(tmp_path))
    )
    assert [len(batch) for batch in batches] == sizes
    assert [row["N"] for row in flat(batches)] == expected_order(rows)


@pytest.mark.parametrize("options", [{"memory_rows": 0}, {"batch_size": 0}])
def test_sizes_must_be_positive(options: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        synchronously(collect(source_of([]), GROUP_THEN_TEXT_DESCENDING, **options))


def run_files(spill_dir: Path) -> list[str]:
    return [name for _, _, names in os.walk(spill_dir) for name in names]


@pytest_twisted.ensureDeferred
async def test_no_file_up_to_the_threshold(tmp_path: Path) -> None:
    batches = sorted_batches(source_of(numbered_rows(50, 4)), GROUP_THEN_TEXT_DESCENDING, memory_rows=50, batch_size=10, spill_dir=str(tmp_path))
    # Declared an AsyncIterator; it is an async generator, which has aclose().
    assert isinstance(batches, AsyncGenerator)
    await batches.__anext__()
    assert os.listdir(tmp_path) == []
    await batches.aclose()


@pytest_twisted.ensureDeferred
async def test_runs_hold_at_most_memory_rows_and_are_deleted_when_done(tmp_path: Path) -> None:
    # 95 rows, 10 at most in memory: 9 runs of 10 spilled, the last 5 kept in memory.
    rows = numbered_rows(95, 4)
    batches = sorted_batches(source_of(rows, batch=7), GROUP_THEN_TEXT_DESCENDING, memory_rows=10, batch_size=30, spill_dir=str(tmp_path))
    first = await batches.__anext__()
    assert len(run_files(tmp_path)) == 9
    rest = [batch async for batch in batches]
    assert [row["N"] for row in flat([first, *rest])] == expected_order(rows)
    assert os.listdir(tmp_path) == []


@pytest_twisted.ensureDeferred
async def test_files_deleted_when_the_consumer_stops_early(tmp_path: Path) -> None:
    batches = sorted_batches(source_of(numbered_rows(2000, 4)), GROUP_THEN_TEXT_DESCENDING, memory_rows=10, batch_size=5, spill_dir=str(tmp_path))
    assert isinstance(batches, AsyncGenerator)  # for aclose(), as above
    await batches.__anext__()
    assert run_files(tmp_path)
    await batches.aclose()
    assert os.listdir(tmp_path) == []


@pytest_twisted.ensureDeferred
async def test_files_deleted_when_the_source_fails(tmp_path: Path) -> None:
    source = source_of(numbered_rows(100, 4), failure=RuntimeError("upstream broke"))
    with pytest.raises(RuntimeError, match="upstream broke"):
        await collect(source, GROUP_THEN_TEXT_DESCENDING, memory_rows=10, spill_dir=str(tmp_path))
    assert os.listdir(tmp_path) == []


class CountingClock(Clock):
    def __init__(self) -> None:
        super().__init__()
        self.scheduled = 0

    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        self.scheduled += 1
        return super().callLater(delay, callable, *args, **kw)


def test_the_reactor_runs_while_runs_are_written(tmp_path: Path) -> None:
    clock = CountingClock()
    rows = numbered_rows(40, 4)
    outcomes: list[Any] = []
    ensureDeferred(collect(source_of(rows), GROUP_THEN_TEXT_DESCENDING, memory_rows=10, spill_dir=str(tmp_path), clock=clock)).addBoth(outcomes.append)
    assert outcomes == [] and clock.scheduled == 1
    clock.advance(0)
    # At least one pause for each of the three runs written.
    assert clock.scheduled >= 3
    assert [row["N"] for row in flat(outcomes[0])] == expected_order(rows)


# --- Against a reference ----------------------------------------------------------------

# The documented order of kinds, in a form independent of the implementation.
_KINDS = (bool, "nan", "number", datetime.date, datetime.datetime, datetime.time, datetime.timedelta, uuid.UUID, str, bytes)


def reference_value(value: Any) -> tuple[Any, ...]:
    """A key for one value in ascending order, written from the module's documentation."""
    if value is None:
        return (-1,)
    if isinstance(value, bool):
        return (_KINDS.index(bool), value)
    if isinstance(value, Decimal) and value.is_nan() or isinstance(value, float) and math.isnan(value):
        return (_KINDS.index("nan"),)
    if isinstance(value, (int, float, Decimal)):
        infinite = value.is_infinite() if isinstance(value, Decimal) else isinstance(value, float) and math.isinf(value)
        if infinite:
            return (_KINDS.index("number"), 1 if value > 0 else -1, 0)
        return (_KINDS.index("number"), 0, Fraction(value))
    if isinstance(value, datetime.datetime):
        instant = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return (_KINDS.index(datetime.datetime), instant.astimezone(UTC))
    if isinstance(value, uuid.UUID):
        return (_KINDS.index(uuid.UUID), str(value))
    for kind in (datetime.date, datetime.time, datetime.timedelta, str, bytes):
        if isinstance(value, kind):
            return (_KINDS.index(kind), value)
    return (len(_KINDS),)


def reference_sort(rows: list[Row], items: list[tuple[str, bool]]) -> list[Row]:
    """Rows sorted item by item, the last item first, with Python's stable sort."""
    result = list(rows)
    for name, descending in reversed(items):
        result.sort(key=lambda row: reference_value(row[name]), reverse=descending)
    return result


_ZONES = st.builds(lambda minutes: datetime.timezone(datetime.timedelta(minutes=minutes)), st.integers(-14 * 60, 14 * 60))
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, -1, 2**53, 2**53 + 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.5, 1.0, 2.0**53, -0.0]),
    st.decimals(min_value=-(10**20), max_value=10**20),
    st.sampled_from([Decimal(v) for v in ("0.5", "1.00", "9007199254740992", "-0", "NaN", "sNaN", "Infinity", "-Infinity")]),
    st.text(alphabet=st.one_of(st.characters(), st.characters(categories=["Cs"]), st.sampled_from("\x00aZé")), max_size=6),
    st.sampled_from(["", "a", "a\x00", "ab", "é", "Z"]),
    st.binary(max_size=4),
    st.dates(),
    st.datetimes(timezones=_ZONES),
    st.datetimes(min_value=datetime.datetime(2026, 1, 1), max_value=datetime.datetime(2026, 1, 2)),
    st.times(),
    st.timedeltas(),
    st.uuids(),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.lists(st.integers(), max_size=2),
)
@settings(derandomize=True, database=None, max_examples=150, deadline=None)
@given(
    data=st.lists(st.tuples(_VALUES, _VALUES, _VALUES), max_size=60).flatmap(
        lambda triples: st.tuples(
            st.just(triples),
            st.lists(st.sampled_from(triples), max_size=30) if triples else st.just([]),
        )
    ),
    items=st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.booleans()), min_size=1, max_size=3),
    memory_rows=st.integers(1, 8),
    batch_size=st.integers(1, 20),
)
def test_spilled_and_in_memory_sorts_agree_with_the_reference(
    data: tuple[list[tuple[Any, Any, Any]], list[tuple[Any, Any, Any]]],
    items: list[tuple[str, bool]],
    memory_rows: int,
    batch_size: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # Repeated triples make rows equal on every item: they must keep their order.
    triples, repeats = data
    rows = [{"N": n, "A": a, "B": b, "C": c} for n, (a, b, c) in enumerate(triples + repeats)]
    key = order_key([(prop(name), descending) for name, descending in items])
    expected = [row["N"] for row in reference_sort(rows, items)]
    spill_dir = tmp_path_factory.mktemp("runs")
    for memory in (memory_rows, len(rows) + 1):
        batches = synchronously(collect(source_of(rows, batch=5), key, memory_rows=memory, batch_size=batch_size, spill_dir=str(spill_dir)))
        assert [row["N"] for row in flat(batches)] == expected
        assert all(len(batch) == batch_size for batch in batches[:-1])
    assert os.listdir(spill_dir) == []


@pytest_twisted.ensureDeferred
async def test_first_rows_is_a_stable_top_n() -> None:
    import random

    from odata_klein.ordering import first_rows

    generator = random.Random(5)
    rows: list[Row] = [{"n": generator.randint(0, 20), "i": i} for i in range(3000)]
    key = order_key([(BoundProperty(("n",), "Edm.Int32"), False)])
    batches = iter([rows[i:i + 250] for i in range(0, len(rows), 250)])

    async def source() -> Optional[list[Row]]:
        return next(batches, None)

    top = await first_rows(source, key, 40)
    assert top == sorted(rows, key=lambda row: row["n"])[:40]
