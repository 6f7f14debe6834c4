"""`laclip rewrites check`: the rewrite worker's filters on caption/rewrite pairs from a file.

Input: JSON Lines, one object per line with string fields `caption` (as in the dataset) and `rewrite` (an
engine's output: its first line is the rewrite, as in the worker). Output: one JSON object per input line,
in order: the input's fields, then `verdict` (`keep`, or the reason of the filter that rejects it, as the
`<source>_rejected` column would say) and `detail` (what it objected to, or null). The caption is cleaned
as the worker cleans it (laclip.rewrite.prompts.clean_caption, RewriteConfig's defaults) and judged by the
same RewriteFilter. Every line is read and checked before anything is written: a bad line ends the run
with one message naming it, and the output (written to a temporary file, then renamed) is all or nothing.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Iterable, TextIO

from laclip.errors import DataError, UsageError
from laclip.rewrite.filters import RewriteFilter
from laclip.rewrite.prompts import clean_caption

FIELDS = ("caption", "rewrite")


def read_pairs(lines: Iterable[str], where: str) -> list[dict]:
    """The rows of a pairs file; DataError naming the first bad line."""
    rows, blank_at = [], None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            blank_at = blank_at or n
            continue
        if blank_at is not None:
            raise DataError(f"{where} line {blank_at} is blank: one JSON object per line")
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{where} line {n} is not JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise DataError(f"{where} line {n} is a JSON {type(row).__name__}, not an object with "
                            f"\"caption\" and \"rewrite\"")
        for field in FIELDS:
            if field not in row:
                raise DataError(f"{where} line {n} has no \"{field}\" field (fields: {', '.join(row) or 'none'})")
            if not isinstance(row[field], str):
                kind = "null" if row[field] is None else type(row[field]).__name__
                raise DataError(f"{where} line {n}: \"{field}\" is {kind}, not a string")
        rows.append(row)
    return rows


def judge_rows(rows: list[dict], rewrite_filter: RewriteFilter, max_words: int, max_chars: int) -> list[dict]:
    out, prepared = [], {}
    for row in rows:
        clean = clean_caption(row["caption"], max_words, max_chars)
        if not clean:
            verdict, detail = "empty_input", None
        else:
            prep = prepared.get(clean)
            if prep is None:
                prep = prepared[clean] = rewrite_filter.prepare(clean)
            v = rewrite_filter(row["rewrite"], prep)
            verdict, detail = v.reason or "keep", v.detail
        out.append({**row, "verdict": verdict, "detail": detail})
    return out


def check_file(pairs: str, out: str | None, faithfulness: str, max_words: int, max_chars: int,
               stdout: TextIO) -> Counter:
    """Judge the pairs file; write the rows to `out` (or `stdout`); the verdicts counted."""
    path = Path(pairs).expanduser()
    try:
        with open(path, encoding="utf-8") as f:
            rows = read_pairs(f, str(path))
    except FileNotFoundError:
        raise UsageError(f"--pairs {path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"--pairs {path} is a folder, not a JSON Lines file") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise UsageError(f"cannot read --pairs {path}: {exc.strerror or exc}") from None
    judged = judge_rows(rows, RewriteFilter(faithfulness), max_words, max_chars)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in judged)
    if out is None:
        stdout.write(text)
    else:
        target = Path(out).expanduser()
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise UsageError(f"cannot write --out {target}: {exc.strerror or exc}") from None
    return Counter(r["verdict"] for r in judged)
