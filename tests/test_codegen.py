"""Generated functions: one compilation per source, globals of their own."""

from __future__ import annotations

from odata_klein.codegen import _compiled, define

SOURCE = "def remember(value):\n    seen.append(value)\n    return len(seen)\n"


def test_functions_of_one_source_keep_their_own_globals() -> None:
    first = define(SOURCE, "remember", {"seen": []})
    second = define(SOURCE, "remember", {"seen": []})
    assert (first("a"), first("b"), second("c")) == (1, 2, 1)


def test_a_source_is_compiled_once() -> None:
    define(SOURCE, "remember", {"seen": []})
    hits = _compiled.cache_info().hits
    define(SOURCE, "remember", {"seen": []})
    assert _compiled.cache_info().hits == hits + 1
