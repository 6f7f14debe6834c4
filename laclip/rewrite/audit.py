"""`laclip rewrites audit DATASET REWRITE_ID`: what a rewrite set holds, source by source.

Read from the set's parquets (laclip.rewrite.output): per source, how many rewrites were kept and how
many fell back by each reason (`<source>_rejected`, detail stripped), the words objected to most often,
the distribution of the kept rewrites' lengths (words) and of the words changed from the caption (a
word-level edit distance: words inserted, deleted or replaced), and a seeded sample of rows side by
side (the caption, each source's text and verdict). A rejected rewrite is not stored (the column holds
the caption it fell back to), so the sample shows its verdict, not its text. laclip.rewrite.audit_html
renders the same as a self-contained page.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field

from laclip import layout
from laclip.rewrite import output as out
from laclip.rewrite.config import REJECT_SUFFIX
from laclip.rewrite.filters import reason_of
from laclip.storage.base import Store

BUCKETS = ((0, 0), (1, 2), (3, 5), (6, 10), (11, 20), (21, 40), (41, None))  # words: closed ranges
_WORD = re.compile(r"\w+")
_QUOTED = re.compile(r"'([^']+)'")


@dataclass
class SourceAudit:
    name: str
    rows: int = 0
    kept: int = 0
    reasons: Counter = field(default_factory=Counter)
    objections: dict = field(default_factory=dict)  # reason -> Counter of the words objected to
    lengths: list = field(default_factory=list)  # words of each kept rewrite
    changed: list = field(default_factory=list)  # words changed by each kept rewrite

    def add(self, caption: str, text: str | None, rejected: str | None) -> None:
        self.rows += 1
        if rejected is None:
            self.kept += 1
            words = _words(text or "")
            self.lengths.append(len(words))
            self.changed.append(edit_distance(_words(caption), words))
            return
        reason = reason_of(rejected)
        self.reasons[reason] += 1
        m = _QUOTED.search(rejected[len(reason):])
        if m:
            self.objections.setdefault(reason, Counter())[m.group(1)] += 1


@dataclass
class Audit:
    dataset: str
    rewrite_id: str
    record: dict
    shards_read: int
    shards_total: int
    sources: dict  # name -> SourceAudit
    sample: list  # rows: {"key", "caption", source: (text, verdict)}


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def edit_distance(a: list[str], b: list[str]) -> int:
    """Words inserted, deleted or replaced to turn `a` into `b` (Levenshtein over words)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def histogram(values: list[int]) -> list[tuple[str, int]]:
    rows = []
    for lo, hi in BUCKETS:
        n = sum(1 for v in values if v >= lo and (hi is None or v <= hi))
        rows.append((f"{lo}+" if hi is None else str(lo) if lo == hi else f"{lo}-{hi}", n))
    return rows


def percentiles(values: list[int]) -> dict:
    if not values:
        return {}
    v = sorted(values)
    at = lambda q: v[min(len(v) - 1, int(q * len(v)))]  # noqa: E731
    return {"min": v[0], "p10": at(0.1), "median": at(0.5), "p90": at(0.9), "max": v[-1],
            "mean": round(sum(v) / len(v), 1)}


def audit(store: Store, dataset: str, rewrite_id: str, sample: int = 20, seed: int = 0,
          max_shards: int | None = None) -> Audit:
    record = out.read_record(store, dataset, rewrite_id)  # a clear error for an unknown set
    shard_ids = layout.rewritten_shards(store, dataset, rewrite_id)
    chosen = shard_ids if max_shards is None else shard_ids[:max_shards]
    sources: dict[str, SourceAudit] = {}
    rng = random.Random(seed)
    reservoir: list[dict] = []
    seen = 0
    for sid in chosen:
        table = out.read_shard(store, dataset, rewrite_id, sid)
        names = out.source_columns(table)
        cols = {c: table.column(c).to_pylist() for c in table.column_names}
        for s in names:
            sources.setdefault(s, SourceAudit(s))
        none = [None] * table.num_rows
        for i in range(table.num_rows):
            caption = cols["caption"][i] or ""
            row = {"key": cols["key"][i], "caption": caption}
            for s in names:
                rejected = cols.get(s + REJECT_SUFFIX, none)[i]
                sources[s].add(caption, cols[s][i], rejected)
                row[s] = (cols[s][i] or "", rejected or "keep")
            seen += 1  # reservoir sampling: every row equally likely, one pass
            if len(reservoir) < sample:
                reservoir.append(row)
            else:
                j = rng.randrange(seen)
                if j < sample:
                    reservoir[j] = row
    return Audit(dataset, rewrite_id, record, len(chosen), len(shard_ids), sources, reservoir)
