"""Every case of the corpus, by class (laclip issue 11)."""

from __future__ import annotations

from . import cases_data, cases_faults

ALL_CASES = [*cases_data.CASES, *cases_faults.CASES]
