"""
How long parsing and binding a $filter takes, beside odata-query's parser.

Generates 1,000 distinct filters such as Power BI, Excel and Tableau send to
the ClickTime service (date ranges with date-time literals at an offset, eq
and in on IDs, contains, and/or groups, nested parentheses), then measures on
the same strings in the same run:

- odata-klein, parse + bind against the ClickTime model
  (``build_model([], sees_rates=True)``), mean per filter:
  cold: the first sight of each text (the parser's cache misses; a fresh
  Binder each time, as each request has), and cached: the same texts again
  (the parser's cache hits, binding still done);
  parse only, cold, for comparison with odata-query, which binds nothing;
- odata-query 0.10 (the ``bench`` extra): its ODataLexer + ODataParser only;

and prints the ratios and the strings odata-query rejects (it covers less of
the language).  The grammar is compiled once, before timing; that cost is
printed on its own.

Then, for long filters (Power BI folds a list of chosen values into an
or-list of eq; 4.01 clients send ``in``), parse + bind time per value at
1,000, 10,000 and 50,000 values: it should stay flat as lists grow, since the
reactor is held while a URL is parsed.

    python benchmarks/parse_filters.py [--count 1000] [--seed 1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime
import random
import statistics
import string
import time
from typing import Callable

from odata_query.grammar import ODataLexer, ODataParser

from odata_klein.binder import Binder
from odata_klein.model import EntityType, Model
from odata_klein.parser import QueryParser
from odata_klein_plugins.clicktime.schema import build_model

OFFSETS = ("-05:00", "-04:00", "-08:00", "-07:00", "Z", "+01:00", "+02:00", "+05:30")
COMMENT_WORDS = ("client", "meeting", "review", "deploy", "planning", "support", "O''Brien", "Müller")
USER_NAMES = ("Zoë O''Brien", "Ann Adams", "王芳")


class FilterMaker:
    """Realistic BI-tool filters over the ClickTime model, from one seeded generator."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.users = [self._id() for _ in range(40)]
        self.jobs = [self._id() for _ in range(120)]
        self.tasks = [self._id() for _ in range(25)]

    def _id(self) -> str:
        return "".join(self.rng.choices(string.ascii_letters + string.digits, k=23))

    def _day(self) -> datetime.date:
        return datetime.date(2024, 11, 1) + datetime.timedelta(days=self.rng.randrange(730))

    def _moment(self, day: datetime.date) -> str:
        """A date as Power BI writes it: midnight at the user's offset (sometimes a plain date)."""
        if self.rng.random() < 0.25:
            return day.isoformat()
        return f"{day.isoformat()}T00:00:00{self.rng.choice(OFFSETS)}"

    def date_range(self) -> str:
        start = self._day()
        end = start + datetime.timedelta(days=self.rng.choice((1, 7, 14, 30, 31, 90, 365)))
        return f"Date ge {self._moment(start)} and Date lt {self._moment(end)}"

    def ids(self, column: str, pool: list[str]) -> str:
        chosen = self.rng.sample(pool, self.rng.choice((1, 1, 2, 3, 5, 12)))
        form = self.rng.random()
        if len(chosen) == 1:
            return f"{column} eq '{chosen[0]}'"
        if form < 0.5:
            return "(" + " or ".join(f"{column} eq '{value}'" for value in chosen) + ")"
        return f"{column} in (" + ",".join(f"'{value}'" for value in chosen) + ")"

    def condition(self) -> str:
        kind = self.rng.random()
        if kind < 0.3:
            return self.date_range()
        if kind < 0.55:
            return self.ids(*self.rng.choice((("UserID", self.users), ("JobID", self.jobs), ("TaskID", self.tasks))))
        if kind < 0.65:
            return f"contains(Comment,'{self.rng.choice(COMMENT_WORDS)}')"
        if kind < 0.72:
            return f"Hours {self.rng.choice(('gt', 'ge', 'lt', 'le'))} {self.rng.choice(('0', '0.5', '2', '7.75', '8'))}"
        if kind < 0.78:
            return self.rng.choice(("Comment ne null", "StartTime eq null", "not (Comment eq null)"))
        if kind < 0.84:
            return f"year(Date) eq {self.rng.choice((2025, 2026))} and month(Date) eq {self.rng.randrange(1, 13)}"
        # Less common, but sent: Excel's and Tableau's forms, navigation, time-of-day literals.
        return self.rng.choice(
            (
                f"startswith(Comment,'{self.rng.choice(('W', 'Fix', 'Deploy'))}') eq true",
                f"Hours add BreakTime gt {self.rng.choice((8, 10))}",
                f"Job/ClientID eq '{self.rng.choice(self.jobs)}'",
                f"User/Name eq '{self.rng.choice(USER_NAMES)}'",
                f"StartTime ge {self.rng.choice(('08:00:00', '09:30:00', '13:00'))}",
                f"Date eq {self._day().isoformat()}T00:00:00.000{self.rng.choice(OFFSETS)}",
                f"tolower(Comment) eq '{self.rng.choice(COMMENT_WORDS).lower()}'",
                f"round(Hours) eq {self.rng.randrange(1, 9)}",
                "Hours mod 1 eq 0.5",
                "cast(Hours,Edm.Int32) gt 4",
                f"matchesPattern(Comment,'^{self.rng.choice(('W', 'D', 'R'))}')",
                "CustomFields/Overtime eq true",
            )
        )

    def group(self, depth: int) -> str:
        """An and/or group of conditions, nested up to ``depth`` parentheses deep."""
        parts = []
        for _ in range(self.rng.choice((1, 1, 2, 2, 3))):
            if depth > 0 and self.rng.random() < 0.3:
                parts.append("(" + self.group(depth - 1) + ")")
            else:
                parts.append(self.condition())
        joiner = " and " if self.rng.random() < 0.75 else " or "
        text = joiner.join(parts)
        return f"not ({text})" if self.rng.random() < 0.05 else text

    def filters(self, count: int) -> list[str]:
        made: dict[str, None] = {}
        while len(made) < count:
            made[self.group(depth=2)] = None
        return list(made)


Timings = dict[str, float]  # text -> seconds, for the texts accepted
Rejections = list[tuple[str, str]]  # (text, why)


def timed(texts: list[str], work: Callable[[str], object]) -> tuple[Timings, Rejections]:
    """Seconds of ``work`` per text it accepts; and what it rejected, with why."""
    times, rejected = {}, []
    for text in texts:
        started = time.perf_counter()
        try:
            work(text)
        except Exception as error:  # odata-query's errors share no base class worth naming
            rejected.append((text, f"{type(error).__name__}: {error}"))
            continue
        times[text] = time.perf_counter() - started
    return times, rejected


def klein_work(parser: QueryParser, model: Model, entity_type: EntityType, bind: bool) -> Callable[[str], object]:
    def parse_and_bind(text: str) -> object:
        expr = parser.parse_filter(text)
        return Binder(model).bind_filter(expr, entity_type) if bind else expr

    return parse_and_bind


def odata_query_work() -> Callable[[str], object]:
    lexer, parser = ODataLexer(), ODataParser()
    return lambda text: parser.parse(lexer.tokenize(text))


def best_of(repeat: int, measure: Callable[[], tuple[Timings, Rejections]]) -> tuple[Timings, Rejections]:
    """Per text, the fastest of ``repeat`` runs (the others hold more of the machine's noise)."""
    runs = [measure() for _ in range(repeat)]
    fastest = {text: min(run[0][text] for run in runs) for text in runs[0][0]}
    return fastest, runs[0][1]


def main(count: int, seed: int, repeat: int) -> None:
    texts = FilterMaker(seed).filters(count)
    model = build_model([], sees_rates=True)
    entity_set = model.entity_set("TimeEntries")
    assert entity_set is not None
    entity_type = model.type_of(entity_set)
    print(f"{len(texts)} distinct filters, {statistics.fmean(map(len, texts)):.0f} characters on average "
          f"(longest {max(map(len, texts))}); e.g.\n  {texts[0]}\n  {texts[1]}")

    started = time.perf_counter()
    QueryParser()
    print(f"compiling odata-klein's grammar (once per process): {(time.perf_counter() - started) * 1000:.1f} ms")

    def klein(bind: bool, warm: bool) -> Callable[[], tuple[Timings, Rejections]]:
        def measure() -> tuple[Timings, Rejections]:
            parser = QueryParser(cache_size=2 * len(texts))
            work = klein_work(parser, model, entity_type, bind)
            if warm:
                timed(texts, work)
            return timed(texts, work)

        return measure

    cold, klein_rejected = best_of(repeat, klein(bind=True, warm=False))
    cached, _ = best_of(repeat, klein(bind=True, warm=True))
    parse_only, _ = best_of(repeat, klein(bind=False, warm=False))
    theirs, their_rejected = best_of(repeat, lambda: timed(texts, odata_query_work()))
    both = [text for text in texts if text in cold and text in theirs]

    def mean(timings: Timings) -> float:
        return statistics.fmean(timings[text] for text in both)

    print(f"mean per filter over the {len(both)} filters both accept (per filter, best of {repeat} runs):")
    for label, timings in (
        ("odata-klein parse + bind, cold", cold),
        ("odata-klein parse + bind, parser cache hit", cached),
        ("odata-klein parse only, cold", parse_only),
        ("odata-query ODataLexer + ODataParser", theirs),
    ):
        print(f"  {label:<44} {mean(timings) * 1e6:9.1f} µs")
    print("ratios (odata-klein / odata-query):")
    print(f"  parse + bind cold {mean(cold) / mean(theirs):.2f}, parse only cold {mean(parse_only) / mean(theirs):.2f}, "
          f"parse + bind cached {mean(cached) / mean(theirs):.2f}")
    if klein_rejected:
        print(f"odata-klein rejected {len(klein_rejected)}: {klein_rejected[:3]}")
    long_lists(model, entity_type)
    print(f"odata-query rejected {len(their_rejected)} of {count}:")
    for reason, examples in group_reasons(their_rejected).items():
        print(f"  {len(examples):>4} x {reason}\n         e.g. {examples[0][:160]}")


def long_lists(model: Model, entity_type: EntityType) -> None:
    print("long lists, parse + bind, cold (per value):")
    for values in (1_000, 10_000, 50_000):
        shapes = {
            "or-list of eq on IDs": " or ".join(f"JobID eq 'job{i:06d}'" for i in range(values)),
            "in-list of numbers": "Hours in (" + ",".join(str(i) for i in range(values)) + ")",
        }
        for label, text in shapes.items():
            work = klein_work(QueryParser(), model, entity_type, bind=True)
            started = time.perf_counter()
            work(text)
            seconds = time.perf_counter() - started
            print(f"  {label:<22} {values:>7,} values ({len(text) / 1024:6.0f} KB): "
                  f"{seconds:6.2f} s, {seconds / values * 1e6:5.1f} µs per value")


def group_reasons(rejected: Rejections) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for text, reason in rejected:
        # Messages name the offending token; group by the message's first words.
        grouped.setdefault(" ".join(reason.split()[:6]), []).append(text)
    return dict(sorted(grouped.items(), key=lambda item: -len(item[1])))


if __name__ == "__main__":
    arguments = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    arguments.add_argument("--count", type=int, default=1000)
    arguments.add_argument("--seed", type=int, default=1)
    arguments.add_argument("--repeat", type=int, default=3)
    options = arguments.parse_args()
    main(options.count, options.seed, options.repeat)
