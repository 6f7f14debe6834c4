"""Paired statistics for comparing two checkpoints on the same test images (numpy and scipy only).

Two models evaluated on the same test set are paired: image i is easy or hard for both. The
difference of their accuracies is therefore estimated far more precisely than two separate
intervals suggest, and this module estimates it directly:

- `paired(kind, a, b)`: the difference B - A of a metric with a 95 % percentile interval from a
  paired bootstrap. Each resample draws n test images (or few-shot episodes, or retrieval query
  images) with replacement and scores both models on the same draw. Resampling n observations
  with replacement is the same as drawing multinomial(n, 1/n, ...) counts of each observation,
  and observations with the same contribution can share one count: so the resamples are drawn
  as multinomial counts over the distinct observation rows (4 rows for top-1 accuracy, whatever
  n is), which makes 10,000 resamples of ImageNet a matter of milliseconds. Seeded: the same
  inputs give the same interval.
- McNemar's exact test for a binary per-image outcome (top-1 correct): under "no difference",
  each image that one model gets right and the other wrong goes either way with probability
  1/2, so the count of one kind among the discordant images is Binomial(discordant, 1/2)
  (scipy.stats.binomtest, two-sided).
- `across_seeds(diffs)`: the mean of per-seed differences with a Student-t interval, the
  training-noise interval that `laclip pipeline --seeds N` reports.

Metric kinds: "mean" (a per-observation score, averaged: accuracy, recall@K), "cluster_mean"
(per-query scores grouped by test image, resampled by image: text-to-image retrieval with
several captions per image) and "class_recall" (mean per-class recall: per-class accuracy,
averaged over the classes present in the resample).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

RESAMPLES = 10_000
CONFIDENCE = 0.95
_CHUNK_CELLS = 4_000_000  # resample weights held at once (resamples x distinct rows)
# Work cap: a metric with many distinct rows (mean per-class recall of 1,000 classes has up to
# 4,000) gets fewer resamples, never under MIN_RESAMPLES; the count used is in the result.
_MAX_CELLS, MIN_RESAMPLES = 10_000_000, 2_000


@dataclass(frozen=True)
class Difference:
    """B - A of one metric on paired observations, as fractions (0.05 = 5 points)."""

    a: float
    b: float
    diff: float
    lo: float  # the interval of diff
    hi: float
    n: int  # observations paired (test images, episodes, query images)
    p_mcnemar: float | None = None  # exact McNemar p-value, for binary per-image outcomes
    discordant: tuple[int, int] | None = None  # (A right and B wrong, A wrong and B right)
    resamples: int = RESAMPLES
    confidence: float = CONFIDENCE

    def to_dict(self) -> dict:
        d = asdict(self)
        d["discordant"] = list(self.discordant) if self.discordant else None
        return d


@dataclass(frozen=True)
class Interval:
    """One model's metric with its bootstrap interval (fractions)."""

    value: float
    lo: float
    hi: float
    n: int


def _rows(kind: str, a: np.ndarray, b: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """The observation matrix the statistic is a function of (one row per resampled unit)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired outcomes must be 1-D of one length, not {a.shape} and {b.shape}")
    if kind == "mean":
        return np.stack([a, b, np.ones_like(a)], axis=1)
    if kind == "cluster_mean":  # resample whole groups (query images); per group: sums and size
        if groups is None or len(groups) != len(a):
            raise ValueError("cluster_mean needs a group id per observation")
        _, inverse = np.unique(groups, return_inverse=True)
        k = int(inverse.max()) + 1 if len(inverse) else 0
        return np.stack([np.bincount(inverse, a, k), np.bincount(inverse, b, k),
                         np.bincount(inverse, None, k).astype(np.float64)], axis=1)
    if kind == "class_recall":
        if groups is None or len(groups) != len(a):
            raise ValueError("class_recall needs the true class of each observation")
        return np.stack([a, b, np.asarray(groups, dtype=np.float64)], axis=1)
    raise ValueError(f"unknown metric kind {kind!r}")


def _values(kind: str, w: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(resamples, 2): each model's metric under resample weights w (resamples x rows)."""
    if kind in ("mean", "cluster_mean"):
        sums = w @ rows  # (r, 3)
        with np.errstate(invalid="ignore", divide="ignore"):
            return sums[:, :2] / sums[:, 2:3]
    # class_recall: rows sorted by class, so each class is one run of columns
    classes = rows[:, 2]
    starts = np.flatnonzero(np.r_[True, classes[1:] != classes[:-1]])
    count = np.add.reduceat(w, starts, axis=1)
    out = []
    for col in (0, 1):
        right = np.add.reduceat(w * rows[:, col], starts, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(count > 0, right / np.where(count > 0, count, 1), np.nan)
        out.append(np.nanmean(recall, axis=1))
    return np.stack(out, axis=1)


def _bootstrap(kind: str, rows: np.ndarray, resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(point values (2,), resampled values (resamples used, 2))."""
    distinct, counts = np.unique(rows, axis=0, return_counts=True)
    resamples = min(resamples, max(MIN_RESAMPLES, _MAX_CELLS // max(1, len(distinct))))
    if kind == "class_recall":  # np.unique sorts lexicographically by column 0 first: class order again
        order = np.lexsort((distinct[:, 1], distinct[:, 0], distinct[:, 2]))
        distinct, counts = distinct[order], counts[order]
    n = int(counts.sum())
    point = _values(kind, counts[None, :].astype(np.float64), distinct)[0]
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_CELLS // max(1, len(distinct)))
    parts = []
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        w = rng.multinomial(n, counts / n, size=size).astype(np.float64)
        parts.append(_values(kind, w, distinct))
    return point, np.concatenate(parts)


def _quantiles(x: np.ndarray, confidence: float) -> tuple[float, float]:
    x = x[np.isfinite(x)]
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(x, [tail, 1 - tail])
    return float(lo), float(hi)


def mcnemar(a_right, b_right) -> tuple[float, tuple[int, int]]:
    """Exact two-sided McNemar p-value of two paired binary outcomes, and the discordant counts
    (A right and B wrong, A wrong and B right)."""
    from scipy.stats import binomtest

    a_right, b_right = np.asarray(a_right, dtype=bool), np.asarray(b_right, dtype=bool)
    only_a, only_b = int((a_right & ~b_right).sum()), int((~a_right & b_right).sum())
    if only_a + only_b == 0:
        return 1.0, (0, 0)
    return float(binomtest(only_b, only_a + only_b, 0.5, alternative="two-sided").pvalue), (only_a, only_b)


def paired(kind: str, a, b, groups=None, *, binary: bool = False, resamples: int = RESAMPLES, seed: int = 0,
           confidence: float = CONFIDENCE) -> Difference:
    """B - A of a metric over paired observations, with its paired-bootstrap interval.

    a, b: per-observation scores of the two models (1/0 for right/wrong, or an episode's
    accuracy); groups: the query image of each observation ("cluster_mean") or the true class
    ("class_recall"). binary: also McNemar's exact test (a and b must be 0/1)."""
    if resamples < 1:
        raise ValueError("resamples must be at least 1")
    rows = _rows(kind, a, b, groups)
    if len(rows) == 0:
        raise ValueError("no paired observations")
    point, boot = _bootstrap(kind, rows, resamples, seed)
    resamples = len(boot)
    lo, hi = _quantiles(boot[:, 1] - boot[:, 0], confidence)
    diff = float(point[1] - point[0])
    # the percentile interval of a difference that never varies is exactly the point
    lo, hi = min(lo, diff), max(hi, diff)
    p, disc = mcnemar(a, b) if binary else (None, None)
    return Difference(float(point[0]), float(point[1]), diff, lo, hi, len(rows), p, disc, resamples, confidence)


def paired_average(items, *, resamples: int = RESAMPLES, seed: int = 0,
                   confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean of B - A, lo, hi) over several test sets, each item (kind, a, b, groups) one set: each
    set is resampled on its own (its own seed stream), and resample r's differences are averaged
    over the sets, so the interval is that of the average of the per-set differences."""
    items = list(items)
    if not items:
        raise ValueError("no test sets")
    points, boots = [], []
    for i, (kind, a, b, groups) in enumerate(items):
        point, boot = _bootstrap(kind, _rows(kind, a, b, groups), resamples, seed + 7919 * i)
        points.append(point[1] - point[0])
        boots.append(boot[:, 1] - boot[:, 0])
    used = min(len(x) for x in boots)
    diff = float(np.mean(points))
    lo, hi = _quantiles(np.mean([x[:used] for x in boots], axis=0), confidence)
    return diff, min(lo, diff), max(hi, diff)


def point(kind: str, a, groups=None) -> float:
    """The metric itself over all observations (what the bootstrap resamples)."""
    a = np.asarray(a, dtype=np.float64)
    if kind != "class_recall":  # a cluster mean over every query image is the plain mean
        return float(a.mean())
    return float(np.mean([a[groups == g].mean() for g in np.unique(groups)]))


def interval(kind: str, a, groups=None, *, resamples: int = RESAMPLES, seed: int = 0,
             confidence: float = CONFIDENCE) -> Interval:
    """One model's metric with its bootstrap interval over the same observations."""
    rows = _rows(kind, a, a, groups)
    point, boot = _bootstrap(kind, rows, resamples, seed)
    lo, hi = _quantiles(boot[:, 0], confidence)
    return Interval(float(point[0]), min(lo, float(point[0])), max(hi, float(point[0])), len(rows))


@dataclass(frozen=True)
class SeedSummary:
    """The mean over training seeds of a per-seed difference, with a Student-t interval."""

    mean: float
    lo: float | None  # None with one seed: no spread to estimate
    hi: float | None
    seeds: int
    sd: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def across_seeds(diffs, confidence: float = CONFIDENCE) -> SeedSummary:
    """Mean of per-seed differences and its t-interval (seeds are independent training runs)."""
    x = np.asarray(list(diffs), dtype=np.float64)
    if len(x) == 0:
        raise ValueError("no seeds")
    mean = float(x.mean())
    if len(x) < 2:
        return SeedSummary(mean, None, None, 1, None)
    from scipy.stats import t

    sd = float(x.std(ddof=1))
    half = float(t.ppf(0.5 + confidence / 2, len(x) - 1)) * sd / math.sqrt(len(x))
    return SeedSummary(mean, mean - half, mean + half, len(x), sd)
