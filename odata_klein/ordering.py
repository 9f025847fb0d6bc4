"""
``$orderby``: ordering rows as OData 4.01 Part 2, 5.1.5 says, with bounded memory.

`order_key` turns the ordering items into a sort key computed once per row;
`sorted_batches` reads every row of a source, sorts them (spilling sorted
runs to temporary files when there are too many to keep in memory) and hands
them back in batches.

The order of values, for each item in ascending order (descending order is
exactly the reverse; rows equal on every item keep the provider's order):

* null comes before every value (so after every value in descending order);
* numbers compare by value, exactly, whatever their types (``int``,
  ``Decimal`` and ``float`` compare exactly in Python, as in
  `odata_klein.evaluate`): ``1 < Decimal('1.5') < 2.0``; NaN (float or
  Decimal) is not a number to OData and has no defined place, so it comes
  before every number, -INF included, as .NET's default comparer puts it,
  and all NaNs are equal;
* strings compare by code point (``'Z' < 'a' < 'é'``), not by any collation;
* date-times compare by instant, whatever their offsets (a date-time without
  an offset is taken as UTC, as ``cast`` does); dates, times of day (any
  offset ignored), durations compare as themselves; GUIDs by their text
  (``00000000-...`` first); binary values byte by byte; ``false < true``.

Untyped (dynamic) properties may hold values of different kinds in different
rows.  They never make ordering fail: values of different kinds are ordered by
kind, in this order: null, Boolean, NaN, numbers, Date, DateTimeOffset,
TimeOfDay, Duration, Guid, String, Binary, then structures (JSON objects and
arrays) and anything else, which are all equal to each other.  A string that
looks like a date is a string here: ordering cannot read strings as other
types the way ``loose_pair`` does for one comparison, as that order would not
be transitive.

Cost (measured with ClickTime time entries, three items): a key costs about
1.5 us per row, computed batch by batch as rows arrive; sorting 50,000 rows
in memory (the default threshold) blocks for 20 to 60 ms.  Spilling costs
mostly pickling, about 20 us per row written and read back: pass the reactor
as ``clock`` so that it runs between the chunks written.
"""

from __future__ import annotations

import datetime
import heapq
import os
import pickle
import shutil
import tempfile
from decimal import Decimal
from itertools import islice
from operator import itemgetter
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator, Mapping, Optional, Sequence

from twisted.internet.interfaces import IReactorTime

from .bound import BoundExpr
from .evaluate import compile_expression
from .interfaces import Row
from .model import Edm
from .slicing import reactor_turns
from .values import edm_of_value

# A row's sort key: (rank, value) for each ordering item, in one flat tuple.
SortKey = tuple[Any, ...]
_Pair = tuple[SortKey, Row]
_Encode = Callable[[Any], tuple[int, Any]]

# Ranks of the kinds of values, in ascending order (see the module docstring).
# In descending order a value's rank is negated, and its value transformed so
# that ascending comparison of the result gives the reverse order; null has
# rank 0 both ways, which puts it first ascending and last descending.
(
    _NULL,
    _BOOLEAN,
    _NAN,
    _NUMBER,
    _DATE,
    _DATE_TIME,
    _TIME,
    _DURATION,
    _GUID,
    _STRING,
    _BINARY,
    _OTHER,
) = range(12)
_NULL_PART = (_NULL, 0)

_UTC = datetime.timezone.utc
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=_UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)

# UTF-8 orders bytes as code points order characters, and never holds a byte
# above 0xF4.  Mapping byte b to 0xFE - b reverses the order of bytes and
# leaves 0xFF, above every mapped byte, to end the text: a text then sorts
# after every longer text it begins ("ab" after "abc"), as descending wants.
_REVERSED_UTF8 = bytes(max(0xFE - byte, 0) for byte in range(256))


def _descending_text(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass").translate(_REVERSED_UTF8) + b"\xff"


def _instant(value: datetime.datetime) -> datetime.datetime:
    return value if value.utcoffset() is not None else value.replace(tzinfo=_UTC)


def _time_of_day(value: datetime.time) -> int:
    return ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond


def _ascending_decimal(value: Decimal) -> tuple[int, Any]:
    # Decimal NaNs raise (sNaN even on ==) when compared: they get a rank of their own.
    return (_NAN, 0) if value.is_nan() else (_NUMBER, value)


def _descending_decimal(value: Decimal) -> tuple[int, Any]:
    # copy_negate is exact; unary minus would round to the context's precision.
    return (-_NAN, 0) if value.is_nan() else (-_NUMBER, value.copy_negate())


def _ascending_float(value: float) -> tuple[int, Any]:
    return (_NAN, 0) if value != value else (_NUMBER, value)


def _descending_float(value: float) -> tuple[int, Any]:
    return (-_NAN, 0) if value != value else (-_NUMBER, -value)


# The kind of a value (as `edm_of_value` tells it; None for structures) ->
# how to encode it in ascending and in descending order.
_ENCODERS: Mapping[Optional[Edm], tuple[_Encode, _Encode]] = {
    Edm.BOOLEAN: (lambda v: (_BOOLEAN, v), lambda v: (-_BOOLEAN, not v)),
    Edm.INT64: (lambda v: (_NUMBER, v), lambda v: (-_NUMBER, -v)),
    Edm.DECIMAL: (_ascending_decimal, _descending_decimal),
    Edm.DOUBLE: (_ascending_float, _descending_float),
    Edm.DATE: (lambda v: (_DATE, v), lambda v: (-_DATE, -v.toordinal())),
    Edm.DATE_TIME_OFFSET: (
        lambda v: (_DATE_TIME, _instant(v)),
        lambda v: (-_DATE_TIME, (_EPOCH - _instant(v)) // _MICROSECOND),
    ),
    Edm.TIME_OF_DAY: (lambda v: (_TIME, _time_of_day(v)), lambda v: (-_TIME, -_time_of_day(v))),
    Edm.DURATION: (lambda v: (_DURATION, v), lambda v: (-_DURATION, -(v // _MICROSECOND))),
    # A GUID's text is its 128-bit number in hexadecimal: both order alike.
    Edm.GUID: (lambda v: (_GUID, v.int), lambda v: (-_GUID, -v.int)),
    Edm.STRING: (lambda v: (_STRING, v), lambda v: (-_STRING, _descending_text(v))),
    # Hexadecimal text orders as the bytes it spells.
    Edm.BINARY: (lambda v: (_BINARY, v), lambda v: (-_BINARY, _descending_text(v.hex()))),
    None: (lambda v: (_OTHER, 0), lambda v: (-_OTHER, 0)),
}


def _ordering_part(evaluate: Callable[[Row], Any], descending: bool) -> Callable[[Row], tuple[int, Any]]:
    """The (rank, value) pair of one ordering item for a row."""
    direction = 1 if descending else 0
    # The encoder of each Python type met so far: one dictionary look-up per
    # value instead of a chain of isinstance tests.
    by_type: dict[type, _Encode] = {}

    def part(row: Row) -> tuple[int, Any]:
        value = evaluate(row)
        if value is None:
            return _NULL_PART
        encode = by_type.get(type(value))
        if encode is None:
            encode = by_type[type(value)] = _ENCODERS[edm_of_value(value)][direction]
        return encode(value)

    return part


def order_key(items: Sequence[tuple[BoundExpr, bool]]) -> Callable[[Row], SortKey]:
    """
    The sort key of rows for ``$orderby`` items, each a bound expression and
    whether it is descending.  Keys of rows compare (with ``<``) in the order
    OData wants, never raise, and can be pickled.
    """
    parts = [_ordering_part(compile_expression(expr), descending) for expr, descending in items]
    if not parts:
        return lambda row: ()
    first, *rest = parts
    if not rest:
        return first

    def key(row: Row) -> SortKey:
        # One flat tuple (rank, value, rank, value...): fewer objects than a
        # tuple of pairs, for the memory and the garbage collector.
        result: SortKey = first(row)
        for part in rest:
            result += part(row)
        return result

    return key


# --- Sorting ------------------------------------------------------------------------

_by_key, _row_of = itemgetter(0), itemgetter(1)
# The most runs merged at once: bounds the open files and the chunks in memory.
_MERGE_FAN_IN = 16


async def _let_reactor_run(clock: Optional[IReactorTime]) -> None:
    if clock is not None:
        await reactor_turns(clock)()


def _reduce_decimal(value: Decimal) -> tuple[Any, ...]:
    return Decimal, (str(value),)


# What Decimal's own __reduce__ gives, without the generic protocol around it:
# it halves the cost of pickling Decimals, and rows of hours and money are full of them.
_SPILL_REDUCERS: Mapping[type, Callable[[Any], tuple[Any, ...]]] = {Decimal: _reduce_decimal}


def _sorted_pairs(keys: list[SortKey], rows: list[Row]) -> Iterator[_Pair]:
    """Rows with their keys, sorted stably; the pairs are made one at a time, as they are read."""
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return zip(map(keys.__getitem__, order), map(rows.__getitem__, order))


class _SpilledRuns:
    """
    Sorted runs of rows and their keys in files of a private temporary
    directory.  A run is a sequence of pickled chunks (the chunk's keys, then
    its rows), so that reading a run holds one chunk in memory.  The files are
    this process's own: nothing else writes them.
    """

    def __init__(self, parent: Optional[str], chunk_rows: int, clock: Optional[IReactorTime]) -> None:
        self._parent = parent
        self._chunk_rows = chunk_rows
        self._clock = clock
        self._directory: Optional[str] = None
        # Paths of the runs, in the order of the rows they came from: merging
        # keeps equal keys in the order of the runs, which keeps sorting stable.
        self.paths: list[str] = []
        self._readers: list[Iterator[_Pair]] = []

    async def spill(self, pairs: Iterator[_Pair]) -> None:
        """Write sorted pairs as a new run, after the others."""
        self.paths.append(await self._write(pairs))

    async def _write(self, pairs: Iterator[_Pair]) -> str:
        if self._directory is None:
            self._directory = tempfile.mkdtemp(prefix="odata-klein-sort-", dir=self._parent)
        descriptor, path = tempfile.mkstemp(suffix=".run", dir=self._directory)
        with open(descriptor, "wb") as file:
            while chunk := list(islice(pairs, self._chunk_rows)):
                # Keys apart from rows: loading then makes no (key, row) tuple
                # that would live as long as the chunk.
                pickler = pickle.Pickler(file, protocol=pickle.HIGHEST_PROTOCOL)
                pickler.dispatch_table = _SPILL_REDUCERS
                pickler.dump(tuple(zip(*chunk)))
                await _let_reactor_run(self._clock)
        return path

    def _read(self, path: str) -> Iterator[_Pair]:
        reader = _pairs_in(path)
        self._readers.append(reader)
        return reader

    async def merged_with(self, tail: Iterator[_Pair]) -> Iterator[_Pair]:
        """All runs, then ``tail`` (sorted, the last rows read), merged into one sorted stream."""
        # Merge passes over consecutive runs until few enough remain.
        while len(self.paths) > _MERGE_FAN_IN:
            merged_paths = []
            for start in range(0, len(self.paths), _MERGE_FAN_IN):
                group = self.paths[start : start + _MERGE_FAN_IN]
                if len(group) == 1:
                    merged_paths.extend(group)
                    continue
                merged_paths.append(await self._write(heapq.merge(*map(self._read, group), key=_by_key)))
                for path in group:
                    os.remove(path)
            self.paths = merged_paths
        return heapq.merge(*map(self._read, self.paths), tail, key=_by_key)

    def close(self) -> None:
        """Close the files being read and delete them all."""
        for reader in self._readers:
            reader.close()  # type: ignore[attr-defined]
        self._readers.clear()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None


def _pairs_in(path: str) -> Iterator[_Pair]:
    with open(path, "rb") as file:
        while True:
            try:
                keys, rows = pickle.load(file)
            except EOFError:
                return
            yield from zip(keys, rows)


async def sorted_batches(
    source: Callable[[], Awaitable[Optional[list[Row]]]],
    key: Callable[[Row], SortKey],
    *,
    memory_rows: int = 50_000,
    batch_size: int = 1000,
    spill_dir: Optional[str] = None,
    clock: Optional[IReactorTime] = None,
) -> AsyncIterator[list[Row]]:
    """
    The rows of ``source`` sorted by ``key`` (stably), in batches of
    ``batch_size`` rows (the last one may be smaller; no batch when there are
    no rows).

    ``source()`` gives the next batch of rows, None at the end; it is read to
    the end before the first batch comes out, and not closed here.  At most
    ``memory_rows`` rows are kept in memory: beyond that they are sorted in
    runs written to temporary files in ``spill_dir`` (the system's default
    when None), merged at the end with the last rows read, reading each run a
    small chunk at a time (the chunks together hold at most ``memory_rows``
    more rows; no file at all when ``memory_rows`` rows or fewer come).  The
    files are deleted when the iteration ends, fails, or is closed
    (``aclose``).  Raises ValueError, when iterated, if a size is not positive.

    With a ``clock`` (the reactor), the reactor gets to run after each chunk
    of a run is written.
    """
    if memory_rows < 1 or batch_size < 1:
        raise ValueError("memory_rows and batch_size must be positive")
    runs = _SpilledRuns(spill_dir, max(1, min(batch_size, memory_rows // _MERGE_FAN_IN)), clock)
    try:
        keys: list[SortKey] = []
        held: list[Row] = []
        while (rows := await source()) is not None:
            start = 0
            while start < len(rows):
                if len(held) == memory_rows:
                    await runs.spill(_sorted_pairs(keys, held))
                    keys, held = [], []
                taken = rows[start : start + memory_rows - len(held)]
                keys.extend(map(key, taken))
                held.extend(taken)
                start += len(taken)
        pairs = _sorted_pairs(keys, held)
        ordered = map(_row_of, await runs.merged_with(pairs) if runs.paths else pairs)
        while batch := list(islice(ordered, batch_size)):
            yield batch
    finally:
        runs.close()


async def first_rows(
    source: Callable[[], Awaitable[Optional[list[Row]]]],
    key: Callable[[Row], SortKey],
    count: int,
) -> list[Row]:
    """
    The first ``count`` rows of ``source`` in ``key`` order (stably), holding
    at most ``count`` rows: ``$orderby`` with a small ``$top`` (and ``$skip``)
    never needs the whole result, let alone a spill.
    """
    kept: list[_Largest] = []
    seen = 0
    while (rows := await source()) is not None:
        for row in rows:
            # The position breaks ties: among equal keys the earlier row is the
            # smaller entry, so it stays while later ones are pushed out.
            entry = (key(row), seen, row)
            seen += 1
            if len(kept) < count:
                heapq.heappush(kept, _Largest(entry))
            elif _Largest(entry) > kept[0]:
                heapq.heapreplace(kept, _Largest(entry))
    ordered = sorted((item.entry for item in kept), key=lambda entry: (entry[0], entry[1]))
    return [row for _, _, row in ordered]


class _Largest:
    """Reverses the order of an entry, so that heapq's min-heap keeps the smallest entries."""

    __slots__ = ("entry",)

    def __init__(self, entry: tuple[SortKey, int, Row]) -> None:
        self.entry = entry

    def __lt__(self, other: "_Largest") -> bool:
        return (self.entry[0], self.entry[1]) > (other.entry[0], other.entry[1])

    def __gt__(self, other: "_Largest") -> bool:
        return (self.entry[0], self.entry[1]) < (other.entry[0], other.entry[1])
