"""Weighted sources: how often training draws each text of a sample (`--text-probs SOURCE=W,...`).

LaCLIP draws each sample's text uniformly from its original caption and its kept rewrites. With text
probabilities the draw is weighted by source, `caption` naming the original: `caption=2,chatgpt=1,...`.
The rule is open_clip's (`--json-text-key` with `--json-text-key-probs`): the sample's fields are put in
a random order drawn by their weights, the fields of weight 0 after them in their listed order, and the
first non-empty field wins. A text therefore comes with probability proportional to its weight among
the sample's texts that exist (a rejected rewrite does not), and a weight of 0 keeps a source as a
fallback only. laclip's trainer (laclip.train.data.choose_texts, for one text or several per image) and
the export's printed open_clip flags (laclip.rewrite.export.open_clip_args) both follow it.

Weights are stored normalised (summing to 1, 12 decimals), so `caption=2,chatgpt=1` and
`caption=4,chatgpt=2` are the same run; every source of the rewrite set and `caption` must be given.
"""

from __future__ import annotations

import math
import random

from laclip.errors import UsageError

ORIGINAL = "caption"


def parse_text_probs(text: str, flag: str = "--text-probs") -> dict[str, float]:
    """`caption=2,chatgpt=1,...` -> normalised weights; UsageError naming what is wrong."""
    found: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, eq, raw = part.partition("=")
        name = name.strip()
        if not eq or not name:
            raise UsageError(f"{flag} {part!r}: expected SOURCE=WEIGHT, e.g. caption=2,chatgpt=1")
        if name in found:
            raise UsageError(f"{flag} names {name!r} twice")
        try:
            value = float(raw)
        except ValueError:
            raise UsageError(f"{flag} {part!r}: the weight is not a number") from None
        found[name] = _weight(value, name, flag)
    return normalise(found, flag)


def _weight(value: float, name: str, flag: str) -> float:
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"{flag} {name}={value}: a weight is a finite number >= 0")
    return value


def normalise(probs: dict[str, float], flag: str = "--text-probs") -> dict[str, float]:
    """Check (names, finite, >= 0, not all 0) and scale to sum 1."""
    from laclip.rewrite.config import SOURCE_RE

    if not probs:
        raise UsageError(f"{flag} is empty: give SOURCE=WEIGHT for {ORIGINAL} and every rewrite source")
    for name, w in probs.items():
        if name != ORIGINAL and not SOURCE_RE.fullmatch(str(name)):
            raise UsageError(f"{flag}: {name!r} is no source name ({ORIGINAL}, or a rewrite source such as chatgpt)")
        if isinstance(w, bool) or not isinstance(w, (int, float)):
            raise UsageError(f"{flag} {name}={w!r}: a weight is a number")
        _weight(float(w), name, flag)
    total = sum(probs.values())
    if total <= 0:
        raise UsageError(f"{flag}: every weight is 0; at least one must be above 0")
    return {name: round(w / total, 12) for name, w in probs.items()}


def check_sources(probs: dict[str, float] | None, sources: list[str], where: str, flag: str = "--text-probs") -> None:
    """The weights name exactly `caption` and the rewrite set's sources."""
    if probs is None:
        return
    known = [ORIGINAL, *sources]
    unknown = [n for n in probs if n not in known]
    missing = [n for n in known if n not in probs]
    if unknown or missing:
        what = "; ".join(filter(None, [f"unknown: {', '.join(unknown)}" if unknown else "",
                                       f"missing: {', '.join(missing)}" if missing else ""]))
        raise UsageError(f"{flag} must weigh {', '.join(known)} ({where}); {what}")


def weighted_order(items: list, weights: list[float], rng: random.Random) -> list:
    """`items` in a random order drawn by `weights` (each next item with probability proportional to its
    weight among those left), the items of weight 0 after them in their given order: open_clip's order."""
    left = [(x, w) for x, w in zip(items, weights) if w > 0]
    order = []
    while left:
        r = rng.random() * sum(w for _, w in left)
        k = 0
        while k < len(left) - 1 and r >= left[k][1]:
            r -= left[k][1]
            k += 1
        order.append(left.pop(k)[0])
    return order + [x for x, w in zip(items, weights) if w <= 0]


def as_flag(probs: dict[str, float]) -> str:
    return ",".join(f"{k}={format(v, 'g')}" for k, v in probs.items())
