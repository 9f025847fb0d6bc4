"""Bound expressions written back in OData syntax, for people reading an explanation."""

from __future__ import annotations

import datetime
from decimal import Decimal

from .bound import (
    BoundBinary,
    BoundCall,
    BoundExpr,
    BoundIn,
    BoundLambda,
    BoundLiteral,
    BoundProperty,
    BoundUnary,
)


def _literal(value: object) -> str:
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return str(value)


def describe(expr: BoundExpr) -> str:
    if isinstance(expr, BoundLiteral):
        return _literal(expr.value)
    if isinstance(expr, BoundProperty):
        path = "/".join(expr.path)
        return f"{expr.variable}/{path}" if expr.variable else path
    if isinstance(expr, BoundBinary):
        text = f"{describe(expr.left)} {expr.op} {describe(expr.right)}"
        return f"({text})" if expr.op == "or" else text
    if isinstance(expr, BoundUnary):
        return f"not ({describe(expr.operand)})" if expr.op == "not" else f"-{describe(expr.operand)}"
    if isinstance(expr, BoundIn):
        return f"{describe(expr.operand)} in ({', '.join(describe(v) for v in expr.values)})"
    if isinstance(expr, BoundCall):
        return f"{expr.name}({', '.join(describe(a) for a in expr.args)})"
    assert isinstance(expr, BoundLambda)
    inner = f"{expr.variable}: {describe(expr.predicate)}" if expr.predicate is not None else ""
    return f"{describe(expr.collection)}/{expr.kind}({inner})"
