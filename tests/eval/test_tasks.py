"""The task arithmetic on known features: metrics vs scikit-learn, few-shot episodes, linear probe."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, top_k_accuracy_score

from laclip.errors import DataError
from laclip.eval import fewshot, linear_probe
from laclip.eval.zeroshot import check_labels, classification_metrics


def clusters(n_per_class: int, classes: int, dim: int = 32, spread: float = 0.3, seed: int = 0):
    """Unit-norm features around one random direction per class (spread 0: identical points)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    labels = np.repeat(np.arange(classes), n_per_class)
    x = centres[labels] + spread * np.linalg.norm(centres, axis=1).mean() * rng.normal(size=(len(labels), dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def test_classification_metrics_match_sklearn():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(300, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 300)
    labels[:20] = 3  # unbalanced classes: balanced accuracy differs from accuracy
    m = classification_metrics(logits, labels)
    assert m["acc1"] == pytest.approx(accuracy_score(labels, logits.argmax(1)))
    assert m["acc5"] == pytest.approx(top_k_accuracy_score(labels, logits, k=5, labels=range(10)))
    assert m["mean_per_class_recall"] == pytest.approx(balanced_accuracy_score(labels, logits.argmax(1)))
    assert classification_metrics(logits[:, :4], labels % 4)["acc5"] is None  # fewer than 5 classes


def test_labels_beyond_the_class_names():
    with pytest.raises(DataError, match="label 7 but the class-name list has only 7 names.*wrong length"):
        check_labels(np.array([0, 7]), ["c"] * 7, "demo-eval/test")
    with pytest.raises(DataError, match="no .cls label"):
        check_labels(np.array([0, -1]), ["c"] * 7, "demo-eval/test")


def test_fewshot_separable_and_chance():
    x, y = clusters(30, 10, spread=0.2)
    good = fewshot.evaluate(x, y, episodes=200, seed=0)
    assert good["acc1"] > 0.95 and 0 < good["acc1_ci95"] < 0.02
    noise = np.random.default_rng(0).normal(size=x.shape).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    chance = fewshot.evaluate(noise, y, episodes=300, seed=0)
    assert abs(chance["acc1"] - 1 / 5) < 0.05  # 5-way


def test_fewshot_is_seeded_and_uses_the_support_split():
    x, y = clusters(25, 8, spread=1.0)
    a = fewshot.evaluate(x, y, episodes=50, seed=7)
    assert a == fewshot.evaluate(x, y, episodes=50, seed=7)
    assert a["acc1"] != fewshot.evaluate(x, y, episodes=50, seed=8)["acc1"]
    assert a["queries"] == 15
    sx, sy = clusters(5, 8, spread=1.0, seed=0)  # the same centres: supports from another split
    b = fewshot.evaluate(x, y, sx, sy, episodes=50, seed=7)
    assert b["queries"] == 15 and 0.2 < b["acc1"] <= 1


def test_fewshot_too_few_classes():
    x, y = clusters(30, 4)
    with pytest.raises(DataError, match="5-way 5-shot episodes need 5 classes.*only 4"):
        fewshot.evaluate(x, y)


def test_fewshot_small_pools_shrink_the_queries():
    x, y = clusters(8, 6)
    assert fewshot.evaluate(x, y, episodes=5)["queries"] == 3  # 8 images: 5 support + 3 queries


def test_linear_probe_learns_and_picks_regularisation():
    from sklearn.linear_model import LogisticRegression

    x, y = clusters(60, 6, spread=0.25, seed=2)
    x, y, tx, ty = x[::2], y[::2], x[1::2], y[1::2]  # same classes, disjoint images
    m = linear_probe.evaluate(x, y, tx, ty, grid=5, refine_steps=2)
    best_sklearn = max(LogisticRegression(C=c, max_iter=2000).fit(x, y).score(tx, ty) for c in (0.1, 1, 10, 100))
    assert m["acc1"] > 0.8 and m["acc1"] >= best_sklearn - 0.05 and 1e-6 <= m["reg"] <= 1e2
    assert m["train_size"] == 180 and m["val_size"] == 36 and m["regs_tried"] >= 5
    noise = np.random.default_rng(0).normal(size=x.shape).astype(np.float32)
    assert linear_probe.evaluate(noise, y, tx, ty, grid=3, refine_steps=0)["acc1"] < 0.4


def test_linear_probe_uses_a_given_validation_split():
    x, y = clusters(30, 5, spread=0.5)
    vx, vy = clusters(6, 5, spread=0.5, seed=1)
    m = linear_probe.evaluate(x, y, x, y, vx, vy, grid=3, refine_steps=0)
    assert m["val_size"] == 30 and m["train_size"] == 180
    # A class only the validation split has still gets a column (cross-entropy raised IndexError).
    vy = vy.copy()
    vy[-1] = 5
    assert linear_probe.evaluate(x, y, x, y, vx, vy, grid=3, refine_steps=0)["val_size"] == 30


def test_holdout_is_stratified():
    y = np.repeat(np.arange(4), [10, 5, 2, 1])
    tr, va = linear_probe.holdout(y, 0.2, seed=0)
    assert set(tr).isdisjoint(va) and len(tr) + len(va) == len(y)
    assert set(y[tr]) == {0, 1, 2, 3}  # every class keeps a training sample
    assert sorted(y[va].tolist()) == [0, 0, 1]
