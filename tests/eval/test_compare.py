"""Paired comparisons: the statistics on synthetic outcomes with known answers, then `laclip eval
compare` on two real demo checkpoints (per-sample outcomes kept by the worker)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from laclip import layout
from laclip.eval import outcomes as oc
from laclip.eval import stats
from laclip.eval.config import EvalConfig
from laclip.eval.worker import run_eval
from laclip_cli.main import app

from .conftest import TINY, save_checkpoint


def test_identical_models_differ_by_exactly_zero():
    rng = np.random.default_rng(1)
    right = (rng.random(500) < 0.6).astype(float)
    d = stats.paired("mean", right, right, binary=True)
    assert d.diff == 0 and d.lo == 0 and d.hi == 0 and d.p_mcnemar == 1.0 and d.discordant == (0, 0)
    labels = rng.integers(0, 8, 500)
    r = stats.paired("class_recall", right, right, labels)
    assert r.diff == 0 and r.lo == 0 == r.hi


def test_a_model_right_on_a_known_extra_five_percent():
    n = 2000
    rng = np.random.default_rng(2)
    a = (rng.random(n) < 0.5).astype(float)
    b = a.copy()
    b[np.flatnonzero(a == 0)[:100]] = 1  # right on 100 more images (5 %), wrong on none A gets right
    d = stats.paired("mean", a, b, binary=True, seed=3)
    assert d.diff == pytest.approx(0.05)
    # the paired difference here is a proportion of 5 % of n: sd = sqrt(.05 * .95 / n)
    half = 1.96 * np.sqrt(0.05 * 0.95 / n)
    assert d.lo == pytest.approx(0.05 - half, abs=0.003) and d.hi == pytest.approx(0.05 + half, abs=0.003)
    assert d.lo > 0
    assert d.discordant == (0, 100) and d.p_mcnemar == pytest.approx(2 * 0.5 ** 100)


def test_interval_width_matches_the_paired_standard_error():
    """Discordant pairs both ways: sd of the mean difference = sqrt((p01 + p10 - (p10 - p01)^2) / n)."""
    n = 4000
    rng = np.random.default_rng(4)
    a = (rng.random(n) < 0.7).astype(float)
    b = a.copy()
    flip_down = rng.choice(np.flatnonzero(a == 1), 200, replace=False)  # 5 % A right, B wrong
    flip_up = rng.choice(np.flatnonzero(a == 0), 320, replace=False)  # 8 % A wrong, B right
    b[flip_down], b[flip_up] = 0, 1
    d = stats.paired("mean", a, b, binary=True)
    p01, p10 = 200 / n, 320 / n
    sd = np.sqrt((p01 + p10 - (p10 - p01) ** 2) / n)
    assert d.diff == pytest.approx(0.03)
    assert (d.hi - d.lo) / 2 == pytest.approx(1.96 * sd, rel=0.06)
    from scipy.stats import binomtest

    assert d.p_mcnemar == pytest.approx(binomtest(320, 520, 0.5).pvalue)


def test_the_average_over_test_sets_has_the_standard_error_of_the_mean_difference():
    """Two sets, +5 points known on each (extra right answers only): the average differs by +5 with
    half-width 1.96 * sqrt(sd1^2 + sd2^2) / 2 (independent sets); identical models give exactly 0."""
    rng = np.random.default_rng(5)
    items, sds = [], []
    for n in (2000, 1000):
        a = (rng.random(n) < 0.5).astype(float)
        b = a.copy()
        b[np.flatnonzero(a == 0)[: n // 20]] = 1
        items.append(("mean", a, b, None))
        sds.append(np.sqrt(0.05 * 0.95 / n))
    diff, lo, hi = stats.paired_average(items, seed=1)
    assert diff == pytest.approx(0.05)
    assert (hi - lo) / 2 == pytest.approx(1.96 * np.sqrt(sds[0] ** 2 + sds[1] ** 2) / 2, rel=0.08)
    same = [("mean", a, a, None) for _, a, _, _ in items]
    assert stats.paired_average(same) == (0.0, 0.0, 0.0)


def test_the_bootstrap_is_seeded_and_resamples_whole_groups():
    rng = np.random.default_rng(5)
    a, b = rng.random(300), rng.random(300)
    assert stats.paired("mean", a, b, seed=7) == stats.paired("mean", a, b, seed=7)
    assert stats.paired("mean", a, b, seed=7).lo != stats.paired("mean", a, b, seed=8).lo
    # 10 images with 30 captions each, all captions of one image alike: the interval is that of
    # 10 observations, far wider than 300 independent ones would give
    groups = np.repeat(np.arange(10), 30)
    img_a, img_b = rng.random(10) < 0.5, rng.random(10) < 0.5
    clustered = stats.paired("cluster_mean", img_a[groups].astype(float), img_b[groups].astype(float), groups)
    naive = stats.paired("mean", img_a[groups].astype(float), img_b[groups].astype(float))
    assert clustered.n == 10 and naive.n == 300
    assert clustered.hi - clustered.lo > 3 * (naive.hi - naive.lo)


def test_mean_per_class_recall_weighs_classes_equally():
    labels = np.array([0] * 90 + [1] * 10)
    a = np.r_[np.ones(90), np.zeros(10)]  # class 0 all right, class 1 all wrong: recall (1 + 0) / 2
    b = np.r_[np.ones(90), np.ones(10)]
    d = stats.paired("class_recall", a, b, labels)
    assert d.a == pytest.approx(0.5) and d.b == pytest.approx(1.0) and d.diff == pytest.approx(0.5)


def test_across_seeds_is_a_student_t_interval():
    s = stats.across_seeds([0.02, 0.04, 0.06])
    from scipy.stats import t

    assert s.mean == pytest.approx(0.04) and s.sd == pytest.approx(0.02)
    assert s.hi - s.mean == pytest.approx(t.ppf(0.975, 2) * 0.02 / np.sqrt(3))
    one = stats.across_seeds([0.03])
    assert one.mean == 0.03 and one.lo is None


def test_outcomes_of_different_test_sets_are_not_paired():
    base = {"keys": np.array(["a", "b", "c"]), "label": np.array([0, 1, 2]), "rank": np.array([0, 1, 0]),
            "pred": np.array([0, 2, 2]), "classes": np.array(3)}
    other = dict(base, keys=np.array(["a", "b", "d"]))
    assert oc.same_samples("zeroshot_classification", base, base) is None
    assert "other test samples" in oc.same_samples("zeroshot_classification", base, other)
    with pytest.raises(Exception, match="cannot pair"):
        oc.compare("zeroshot_classification", base, other)
    diffs = oc.compare("zeroshot_classification", base, base)
    assert set(diffs) == {"acc1", "mean_per_class_recall"}  # 3 classes: no top-5


def test_compare_two_demo_checkpoints(ckpt_store, tiny_models, tmp_path):
    root = str(ckpt_store.local_path(""))
    save_checkpoint(ckpt_store, "other-run", 1, TINY, seed=1)
    for ref in ("clip-run/step_1", "other-run/step_1"):
        run_eval(EvalConfig.for_checkpoint(ref, root=root, workers=0, batch_size=64,
                                           fewshot={"episodes": 40},
                                           linear_probe={"grid": 3, "refine_steps": 0}))
    # outcomes sit beside each result, under the same identity
    for _, dataset, task, rid, path in layout.eval_results(ckpt_store, "clip-run"):
        found = oc.from_bytes(ckpt_store.read_bytes(layout.eval_outcomes("clip-run", "step_1", dataset, task, rid)))
        record = json.loads(ckpt_store.read_text(path))
        assert len(found["keys"]) == record["laclip"]["images"]
        if task == "zeroshot_classification":
            assert np.mean(found["rank"] == 0) == pytest.approx(record["metrics"]["acc1"])
            assert np.mean(found["rank"] < 5) == pytest.approx(record["metrics"]["acc5"])
        if task == "fewshot_knn":
            assert len(found["episode_acc"]) == 40
            assert found["episode_acc"].mean() == pytest.approx(record["metrics"]["acc1"])
        if task == "linear_probe":
            assert np.mean(found["pred"] == found["label"]) == pytest.approx(record["metrics"]["lp_acc1"])
        if task == "zeroshot_retrieval":
            assert np.mean(found["t2i_rank"] < 5) == pytest.approx(record["metrics"]["image_retrieval_recall@5"])
            assert np.mean(found["i2t_rank"] < 1) == pytest.approx(record["metrics"]["text_retrieval_recall@1"])

    runner = CliRunner()
    env = {"LACLIP_ROOT": root}
    out = tmp_path / "c.json"
    png = tmp_path / "c.png"
    res = runner.invoke(app, ["eval", "compare", "clip-run", "other-run/step_1", "--json", str(out),
                              "--png", str(png)], env=env)
    assert res.exit_code == 0, res.output
    assert "McNemar" in res.output and "95% CI" in res.output
    summary = json.loads(out.read_text())
    rows = {(r["task"], r["metric"]): r for r in summary["rows"]}
    assert {("zeroshot_classification", "acc1"), ("fewshot_knn", "acc1"), ("linear_probe", "acc1"),
            ("zeroshot_retrieval", "image_retrieval_recall@1")} <= set(rows)
    zs = rows["zeroshot_classification", "acc1"]
    assert zs["lo"] <= zs["diff"] <= zs["hi"] and 0 <= zs["p_mcnemar"] <= 1 and zs["n"] == 80
    assert zs["diff"] == pytest.approx(zs["b"] - zs["a"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a checkpoint against itself: every difference is 0
    res = runner.invoke(app, ["eval", "compare", "clip-run", "clip-run", "--json", str(out), "--no-png"], env=env)
    assert res.exit_code == 0, res.output
    same = json.loads(out.read_text())["rows"]
    assert same and all(r["diff"] == 0 and r["lo"] == 0 and r["hi"] == 0 for r in same)
    assert all(r["p_mcnemar"] in (None, 1.0) for r in same)

    # the report shows each headline metric with its interval
    md = runner.invoke(app, ["eval", "report", "clip-run", "--markdown", "--no-png"], env=env)
    assert md.exit_code == 0 and "[" in md.output.splitlines()[2]

    # a checkpoint named by its path finds the results under its own root
    by_path = runner.invoke(app, ["eval", "compare", f"{root}/checkpoints/clip-run/step_1.pt", "other-run",
                                  "--datasets", "demo-eval", "--json", str(out), "--no-png", "--markdown"], env=env)
    assert by_path.exit_code == 0, by_path.output
    assert by_path.output.startswith("**B - A: A = clip-run/step_1, B = other-run/step_1")
    assert json.loads(out.read_text())["rows"] == summary["rows"]

    missing = runner.invoke(app, ["eval", "compare", "clip-run", "nowhere"], env=env)
    assert missing.exit_code != 0 and "no evaluation results" in str(missing.exception)
