"""Outcomes agree with their results on any scores: ties, NaN, all equal, -inf and +inf. A result's metrics and
the per-sample outcomes beside it come from one rank in argmax's order (laclip.eval.tasks.classification), so
the accuracy the outcomes give is the result's, and every bootstrap interval holds its point estimate."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from laclip.eval import outcomes as oc
from laclip.eval import stats
from laclip.eval.tasks import classification
from laclip.eval.zeroshot import classification_metrics

# few distinct values, so that ties are the rule rather than the exception
VALUES = st.sampled_from([0.0, 1.0, -1.0, 2.5, float("nan"), float("-inf"), float("inf")])


@st.composite
def scored(draw):
    n, c = draw(st.integers(1, 24)), draw(st.integers(1, 9))
    shape = draw(st.sampled_from(["mixed", "equal", "nan", "-inf"]))
    fill = {"equal": 0.0, "nan": float("nan"), "-inf": float("-inf")}.get(shape)
    flat = [fill] * (n * c) if fill is not None else draw(st.lists(VALUES, min_size=n * c, max_size=n * c))
    labels = draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n))
    return np.asarray(flat, dtype=np.float32).reshape(n, c), np.asarray(labels)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(scored())
def test_outcomes_give_the_results_numbers_and_intervals_hold_them(case):
    logits, labels = case
    metrics = classification_metrics(logits, labels)
    found = oc.classification(logits, labels)
    # rank 0 exactly when argmax names the true class
    assert np.array_equal(found["rank"] == 0, logits.argmax(axis=1) == labels)
    assert np.array_equal(found["pred"], logits.argmax(axis=1))
    for task in ("zeroshot_classification", "linear_probe"):
        for metric, (kind, values, groups, _) in oc.observations(task, found).items():
            assert stats.point(kind, values, groups) == pytest.approx(metrics[metric], abs=1e-12), metric
        for metric, iv in oc.intervals(task, found, resamples=200).items():
            assert iv.lo <= iv.value <= iv.hi, (metric, iv)
            assert iv.value == pytest.approx(metrics[metric], abs=1e-12)


def test_ranks_follow_argmax_order():
    """Higher first, NaN above every number, equal scores by index (the lower first)."""
    row = np.array([[1.0, np.nan, 3.0, 3.0, np.nan, -np.inf, np.inf]])
    order = [1, 4, 6, 2, 3, 0, 5]  # NaN (by index), +inf, the two 3.0 by index, 1.0, -inf
    assert [int(classification.ranks(row, [c])[0]) for c in order] == list(range(7))
    assert int(row.argmax()) == order[0]


def test_all_tied_scores_are_chance_not_perfect():
    """The collapsed probe of the report: 8 classes, every score equal, top-1 12.5 % in result and outcomes."""
    logits, labels = np.zeros((32, 8), dtype=np.float32), np.arange(32) % 8
    found = oc.classification(logits, labels)
    assert classification_metrics(logits, labels)["acc1"] == 0.125 == float(np.mean(found["rank"] == 0))
    iv = oc.intervals("linear_probe", found, resamples=500)["acc1"]
    assert iv.lo <= 0.125 <= iv.hi < 1


def test_ranks_in_pieces_equal_ranks_at_once(monkeypatch):
    rng = np.random.default_rng(0)
    logits = np.round(rng.normal(size=(50, 6)), 1).astype(np.float32)
    labels = rng.integers(0, 6, 50)
    whole = classification.ranks(logits, labels)
    monkeypatch.setattr(classification, "_ROWS", 7)
    assert np.array_equal(classification.ranks(logits, labels), whole)


def test_retrieval_recall_comes_from_the_same_ranks():
    """Text-to-image and image-to-text recall@K from ranks in argmax's order, with every score tied."""
    from laclip.eval import retrieval

    texts = 6
    scores = np.zeros((texts, 3), dtype=np.float32)
    owner = np.array([0, 0, 1, 1, 2, 2])
    t2i = classification.ranks(scores, owner)
    assert t2i.tolist() == [0, 0, 1, 1, 2, 2]
    best = retrieval._best_caption(scores[np.arange(texts), owner], owner, 3)
    assert best.tolist() == [0, 2, 4]  # ties: each image's first caption
    assert classification.ranks(scores.T, best).tolist() == [0, 2, 4]
