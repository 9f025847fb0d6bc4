"""
The code type-checks: mypy, with the zope.interface plugin (Twisted's
interfaces are zope ones), over what pyproject.toml's [tool.mypy] names:
the shipped packages, the tests and the benchmarks.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

PROJECT = Path(__file__).resolve().parent.parent


def test_mypy_finds_no_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    # The files to check are named relative to the project, in pyproject.toml.
    monkeypatch.chdir(PROJECT)
    report, errors, status = api.run(["--cache-dir", "/dev/null"])
    assert status == 0, report + errors
