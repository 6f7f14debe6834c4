"""The hostile-input corpus: every hostile input and fault ends in its documented outcome (a clear message, or a
counted fallback with nothing lost). `python -m tests.hostile.measure` prints the per-class table."""

from __future__ import annotations

import pytest

from .corpus import ALL_CASES


def marks(case) -> list:
    return ([pytest.mark.slow] if case.slow else []) + ([pytest.mark.xdist_group(case.group)] if case.group else [])


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=marks(c)) for c in ALL_CASES])
def test_case(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    case.check(tmp_path)
