"""Joining and splitting chains of and/or over bound expressions."""

from __future__ import annotations

from odata_klein.bound import BoundBinary, BoundExpr, BoundLiteral, conjunction, conjuncts, disjunction, disjuncts


def depth(expr: BoundExpr) -> int:
    return 1 + max(depth(expr.left), depth(expr.right)) if isinstance(expr, BoundBinary) else 1


def test_long_chains_are_balanced_and_split_back_in_order() -> None:
    parts: list[BoundExpr] = [BoundLiteral(i, "Edm.Int32") for i in range(5000)]
    joined = conjunction(parts)
    assert joined is not None and depth(joined) == 14  # ceil(log2(5000)) + 1
    assert conjuncts(joined) == parts
    either = disjunction(parts)
    assert either is not None and disjuncts(either) == parts


def test_a_chain_thousands_deep_splits_without_recursion() -> None:
    # As providers may build them: each part added on the left.
    parts: list[BoundExpr] = [BoundLiteral(i, "Edm.Int32") for i in range(20_000)]
    chain = parts[0]
    for part in parts[1:]:
        chain = BoundBinary("and", chain, part, "Edm.Boolean")
    assert conjuncts(chain) == parts


def test_short_chains_keep_their_shape() -> None:
    a, b, c = (BoundLiteral(v, "Edm.Boolean") for v in (True, False, None))
    assert conjunction([]) is None and conjunction([a]) is a
    assert conjunction([a, b, c]) == BoundBinary("and", BoundBinary("and", a, b, "Edm.Boolean"), c, "Edm.Boolean")
