"""Every case of the corpus, by class (README: Bad input and faults)."""

from __future__ import annotations

from . import cases_data, cases_eval, cases_faults, cases_misc, cases_records, cases_reuse, cases_text, cli_surface

ALL_CASES = [*cases_data.CASES, *cases_faults.CASES, *cases_text.CASES, *cases_misc.CASES,
             *cli_surface.CASES, *cases_eval.CASES, *cases_reuse.CASES, *cases_records.CASES]
