"""Awaiting what providers return: a Deferred, a coroutine or a plain value."""

from __future__ import annotations

from typing import Any


async def settle(value: Any) -> Any:
    if hasattr(value, "__await__"):
        return await value
    return value
