"""Round two, the evaluation side: ties scored as correct (101), results made with other settings paired (102),
damaged eval records (106), eval arguments that end as internal errors or blame the wrong thing (108).

Results are written as the worker writes them (tests.hostile.evalstore, through laclip's own metric, outcome and
id functions), then read by `laclip eval report` (both layouts) and `laclip eval compare` as a user runs them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import evalstore as es
from .harness import Case, assert_clean_error, assert_ok, laclip

TIES = ["equal", "neg-inf", "nan", "nan-rows", "true-tied", "top5-edge", "coarse", "inf-tie", "random"]
LABEL = {"zeroshot": "zero-shot", "linear_probe": "linear probe", "fewshot": "few-shot"}


def _report(root: Path, *argv: str):
    return laclip("--root", str(root), "eval", *argv)


def _compare(root: Path, a: str = "run-a", b: str = "run-b", tmp: Path | None = None, *extra: str):
    out = (tmp or root) / "compare.json"
    res = _report(root, "compare", a, b, "--no-png", "--json", str(out), "--resamples", "500", *extra)
    return res, (json.loads(out.read_text()) if res.rc == 0 and out.exists() else None)


def _metric(record: dict, task: str, name: str = "acc1") -> float:
    return 100 * record["metrics"][("lp_" if task == "linear_probe" else "") + name]


def _paper_rows(res) -> dict[str, list[str]]:
    """The paper layout's rows by their run cell (`run-a/step_1`, `Δ ...`), per task label, as 'label|run'."""
    return {f"{r[0]}|{r[1]}": r for r in es.cells(res.out) if len(r) > 2}


# -- 101: ties scored as correct -------------------------------------------------------------------
def _ties_library(kind: str, task: str) -> Case:
    """The outcomes give the result's own numbers, and every interval holds its point."""
    def run(tmp: Path) -> None:
        from laclip.eval import outcomes as oc
        from laclip.eval.zeroshot import classification_metrics

        logits, labels = es.scores(kind), np.arange(es.IMAGES) % es.CLASSES
        metrics, found = classification_metrics(logits, labels), oc.classification(logits, labels)
        name = es.TASKS[task]
        for metric, iv in oc.intervals(name, found, resamples=300).items():
            assert iv.lo <= iv.value <= iv.hi, (metric, iv)
            assert abs(iv.value - metrics[metric]) < 1e-6, f"{metric}: outcomes {iv.value} vs result {metrics[metric]}"
    return Case(101, f"ties-{kind}-{task}-outcomes-agree", run)


def _ties_report(kind: str, task: str) -> Case:
    def run(tmp: Path) -> None:
        root = tmp / "store"
        _, _, record = es.write(root, "run-a", task, logits=es.scores(kind))
        res = _report(root, "report", "run-a", "--markdown", "--no-png")
        assert_ok(res)
        header, line = es.cells(res.out)[:2]
        column = next(i for i, h in enumerate(header) if h.startswith("evalset"))
        es.holds(line[column], _metric(record, task))
    return Case(101, f"ties-{kind}-{task}-report", run)


def _ties_compare(kind: str) -> Case:
    def run(tmp: Path) -> None:
        root = tmp / "store"
        _, _, ra = es.write(root, "run-a", "linear_probe", logits=es.scores(kind))
        _, _, rb = es.write(root, "run-b", "linear_probe", logits=es.scores("random", 1))
        res, summary = _compare(root, tmp=tmp)
        assert_ok(res)
        rows = {r["metric"]: r for r in summary["rows"] if r["metric"]}
        top1 = rows["acc1"]
        assert abs(top1["a"] - _metric(ra, "linear_probe")) < 1e-6, (top1["a"], ra["metrics"])
        assert abs(top1["b"] - _metric(rb, "linear_probe")) < 1e-6, (top1["b"], rb["metrics"])
        assert top1["lo"] <= top1["diff"] <= top1["hi"]
    return Case(101, f"ties-{kind}-compare", run)


def _ties_paper(kind: str) -> Case:
    def run(tmp: Path) -> None:
        root = tmp / "store"
        _, _, ra = es.write(root, "run-a", "zeroshot", logits=es.scores(kind))
        _, _, rb = es.write(root, "run-b", "zeroshot", logits=es.scores("random", 2))
        res = _report(root, "report", "run-a", "run-b", "--layout", "paper")
        assert_ok(res)
        rows = _paper_rows(res)
        es.holds(rows["zero-shot|run-a/step_1"][2], _metric(ra, "zeroshot"))
        es.holds(rows["zero-shot|run-b/step_1"][2], _metric(rb, "zeroshot"))
        delta = next(r for k, r in rows.items() if k.startswith("zero-shot|Δ"))
        es.holds(delta[2], _metric(rb, "zeroshot") - _metric(ra, "zeroshot"))
    return Case(101, f"ties-{kind}-paper", run)


def _ties_end_to_end(tmp: Path) -> None:
    """A real evaluation of a set whose images are all one image: the probe's scores tie on every class."""
    from .harness import jpeg, write_checkpoint, write_eval_set

    root = tmp / "store"
    same = jpeg(32, 1)
    items = lambda n, p: [(f"{p}{i:04d}", same, str(i % 8).encode()) for i in range(n)]  # noqa: E731
    write_eval_set(root, "evalset", items(32, "t"), items(64, "r"), classes=8)
    for run in ("run-a", "run-b"):
        write_checkpoint(root, run, 1)
        assert_ok(laclip("--root", str(root), "submit", "eval", "--checkpoint", f"{run}/step_1", "--datasets",
                         "evalset", "--tasks", "linear_probe", "--local", "--workers", "0", "--batch-size", "16"))
    [path] = (root / "evals" / "run-a" / "step_1" / "evalset").glob("linear_probe-*.json")
    value = 100 * json.loads(path.read_text())["metrics"]["lp_acc1"]
    res = _report(root, "report", "run-a", "--markdown", "--no-png")
    assert_ok(res)
    es.holds(es.cells(res.out)[1][2], value)
    res, summary = _compare(root, tmp=tmp)
    assert_ok(res)
    assert abs(next(r for r in summary["rows"] if r["metric"] == "acc1")["a"] - value) < 1e-6


CLASS101 = ([_ties_library(k, t) for k in TIES for t in ("zeroshot", "linear_probe")]
            + [_ties_report(k, t) for k in TIES for t in ("zeroshot", "linear_probe")]
            + [_ties_compare(k) for k in TIES] + [_ties_paper(k) for k in TIES]
            + [Case(101, "ties-a-collapsed-probe-end-to-end", _ties_end_to_end, slow=True)])


# -- 102: results made with other settings are paired -------------------------------------------------
SETTINGS = [  # (task, dotted identity key, other value)
    ("fewshot", "seed", 1), ("fewshot", "fewshot.episodes", 200), ("fewshot", "fewshot.k", 3),
    ("fewshot", "fewshot.temperature", 0.1), ("fewshot", "fewshot.ways", 10), ("fewshot", "train_split", "val"),
    ("zeroshot", "inputs.templates", "u" * 64), ("zeroshot", "inputs.classnames", "d" * 64),
    ("linear_probe", "seed", 1), ("linear_probe", "linear_probe.grid", 3), ("linear_probe", "val_split", "val"),
    ("retrieval", "recall_k", [1, 5]), ("zeroshot", "precision", "amp"), ("zeroshot", "test_split", "val"),
    ("linear_probe", "dataset.files", "g" * 32), ("fewshot", "version", 2),
]


def _mixed(task: str, key: str, value, surface: str) -> Case:
    """A's result and B's differ in one setting besides the checkpoint: no difference is shown, and the
    screen (not only the JSON) says why, naming the setting."""
    def run(tmp: Path) -> None:
        root = tmp / "store"
        es.write(root, "run-a", task)
        es.write(root, "run-b", task, ident=es.identity(root, "run-b", task, **{key: value}))
        word = key.split(".")[-1]
        if surface == "compare":
            res, summary = _compare(root, tmp=tmp)
            assert_ok(res)
            assert not [r for r in summary["rows"] if r["metric"]], "a difference of results made with other settings"
            shown = res.out.split("json:")[0]
            assert "not paired" in shown and word in shown, shown[-600:]
        else:
            res = _report(root, "report", "run-a", "run-b", "--layout", "paper")
            assert_ok(res)
            delta = next(r for k, r in _paper_rows(res).items() if k.startswith(f"{LABEL[task]}|Δ"))
            assert es.number(delta[2]) is None, f"a difference of results made with other settings: {delta}"
            assert word in res.out.split("Δ")[-1], res.out[-600:]
    return Case(102, f"settings-{task}-{key}-{surface}", run)


def _paired_when_same(task: str, surface: str) -> Case:
    """The control: the same settings but the checkpoint are paired."""
    def run(tmp: Path) -> None:
        root = tmp / "store"
        es.write(root, "run-a", task)
        es.write(root, "run-b", task, logits=es.scores("random", 3) if task != "fewshot" else None,
                 episodes=np.linspace(0.3, 0.5, 40) if task == "fewshot" else None)
        if surface == "compare":
            res, summary = _compare(root, tmp=tmp)
            assert_ok(res)
            assert [r for r in summary["rows"] if r["metric"]]
        else:
            res = _report(root, "report", "run-a", "run-b", "--layout", "paper")
            assert_ok(res)
            delta = next(r for k, r in _paper_rows(res).items() if k.startswith(f"{LABEL[task]}|Δ"))
            es.holds(delta[2])
    return Case(102, f"settings-same-{task}-{surface}", run)


def _itself_under_another_seed(surface: str) -> Case:
    """One checkpoint file evaluated as two runs with other few-shot seeds: no difference between it and itself."""
    def run(tmp: Path) -> None:
        root = tmp / "store"
        es.write(root, "run-a", "fewshot", episodes=np.linspace(0.2, 0.6, 40))
        same = es.identity(root, "run-a", "fewshot", seed=1)
        es.write(root, "run-b", "fewshot", ident=same, episodes=np.linspace(0.21, 0.61, 40))
        if surface == "compare":
            res, summary = _compare(root, tmp=tmp)
            assert_ok(res)
            assert not [r for r in summary["rows"] if r["metric"]]
        else:
            res = _report(root, "report", "run-a", "run-b", "--layout", "paper")
            assert_ok(res)
            delta = next(r for k, r in _paper_rows(res).items() if k.startswith("few-shot|Δ"))
            assert es.number(delta[2]) is None, delta
    return Case(102, f"settings-itself-another-seed-{surface}", run)


def _newest_pair_of_same_settings(surface: str) -> Case:
    """A has results of seed 0 and (newer) seed 1, B of seed 0 only: the seed-0 pair is the one compared."""
    def run(tmp: Path) -> None:
        root = tmp / "store"
        _, _, a0 = es.write(root, "run-a", "fewshot", episodes=np.linspace(0.2, 0.6, 40))
        es.write(root, "run-a", "fewshot", ident=es.identity(root, "run-a", "fewshot", seed=1),
                 episodes=np.linspace(0.5, 0.9, 40), created="2025-02-01T00:00:00.000+00:00")
        _, _, b0 = es.write(root, "run-b", "fewshot", episodes=np.linspace(0.3, 0.7, 40))
        want = _metric(b0, "fewshot") - _metric(a0, "fewshot")
        if surface == "compare":
            res, summary = _compare(root, tmp=tmp)
            assert_ok(res)
            assert abs(next(r for r in summary["rows"] if r["metric"])["diff"] - want) < 1e-6
        else:
            res = _report(root, "report", "run-a", "run-b", "--layout", "paper")
            assert_ok(res)
            rows = _paper_rows(res)
            es.holds(rows["few-shot|run-a/step_1"][2], _metric(a0, "fewshot"))
            es.holds(next(r for k, r in rows.items() if k.startswith("few-shot|Δ"))[2], want)
    return Case(102, f"settings-newest-same-pair-{surface}", run)


CLASS102 = ([_mixed(t, k, v, s) for t, k, v in SETTINGS for s in ("compare", "paper") if s == "compare" or
             t in LABEL]
            + [_paired_when_same(t, s) for t in ("zeroshot", "fewshot", "linear_probe") for s in ("compare", "paper")]
            + [f(s) for f in (_itself_under_another_seed, _newest_pair_of_same_settings) for s in ("compare", "paper")])


# -- 106: damaged records ------------------------------------------------------------------------
OUTCOME_DAMAGE = ["deleted", "truncated-half", "truncated-10", "empty", "text", "missing-rank", "missing-keys",
                  "missing-label", "keys-2d", "rank-short", "rank-negative", "rank-too-big", "object-array",
                  "label-float"]
ACC1 = {"true": True, "string": "0.9", "percent": 90.0, "negative": -0.5, "list": [0.9], "nan": float("nan"),
        "disagrees": 0.9}  # 0.9 where the outcomes give 12.5 %: the hand-edited or mixed-up result
RESULT_DAMAGE = {
    **{f"acc1-{k}": (lambda r, v=v: r["metrics"].update(acc1=v)) for k, v in ACC1.items()},
    "metrics-missing": lambda r: r.pop("metrics"), "metrics-list": lambda r: r.update(metrics=[0.9]),
    "task-other": lambda r: r.update(task="fewshot_knn"), "identity-text": lambda r: r["laclip"].update(identity="x"),
    "created-number": lambda r: r["laclip"].update(created=5), "dataset-number": lambda r: r.update(dataset=7),
}
RAW_DAMAGE = {"truncated": lambda t: t[:len(t) // 2], "json-list": lambda t: "[1, 2]", "empty": lambda t: "",
              "binary": lambda t: "\x00\xff garbage"}


def _damaged(what: str, kind: str, surface: str) -> Case:
    """One damaged record of run A: every surface that reads it ends in one line naming the file."""
    def run(tmp: Path) -> None:
        root = tmp / "store"
        task = "linear_probe" if what == "outcomes" else "zeroshot"
        result, outcomes, record = es.write(root, "run-a", task)
        es.write(root, "run-b", task, logits=es.scores("random", 4))
        if what == "outcomes":
            from laclip.eval import outcomes as oc

            data = outcomes.read_bytes()
            if kind == "deleted":  # the result names it: not a result from before outcomes were kept
                outcomes.unlink()
            else:
                outcomes.write_bytes(es.damaged_outcomes(kind, data, oc.from_bytes(data)))
        elif kind in RAW_DAMAGE:
            result.write_text(RAW_DAMAGE[kind](result.read_text()), errors="surrogateescape")
        else:
            RESULT_DAMAGE[kind](record)
            result.write_text(json.dumps(record))
        rid = record["laclip"]["result_id"]
        if surface == "compare":
            res = _compare(root, tmp=tmp)[0]
        elif surface == "paper":
            res = _report(root, "report", "run-a", "run-b", "--layout", "paper")
        else:
            res = _report(root, "report", "run-a", "--no-png")
        assert_clean_error(res, rid)
    return Case(106, f"damaged-{what}-{kind}-{surface}", run)


def _damaged_episodes(kind: str) -> Case:
    def run(tmp: Path) -> None:
        root = tmp / "store"
        acc = np.linspace(0.2, 0.6, 40)
        acc[3] = np.nan if kind == "nan" else 1.5
        _, _, record = es.write(root, "run-a", "fewshot", episodes=acc)
        record["metrics"]["acc1"] = 0.4
        (root / "evals/run-a/step_1/evalset" / f"fewshot_knn-{record['laclip']['result_id']}.json").write_text(
            json.dumps(record))
        es.write(root, "run-b", "fewshot")
        assert_clean_error(_compare(root, tmp=tmp)[0], record["laclip"]["result_id"])
    return Case(106, f"damaged-outcomes-episodes-{kind}-compare", run)


def _damaged_before_evaluating(what: str) -> Case:
    """`submit eval --local` finds a damaged record of this request: one line naming it, before any pod."""
    def run(tmp: Path) -> None:
        from laclip.eval.config import EvalConfig
        from laclip.eval.worker import plan
        from laclip.storage import open_store

        from .harness import labelled, write_checkpoint, write_eval_set

        root = tmp / "store"
        write_eval_set(root, "evalset", labelled(6))
        write_checkpoint(root, "run-a", 1)
        cfg = EvalConfig(checkpoint="run-a/step_1", root=str(root), datasets=["evalset"], tasks=["zeroshot"])
        if what == "result":  # the result of exactly this request, truncated
            [item] = plan(cfg, open_store(str(root)))
            name = item.path.rsplit("/", 1)[-1]
            (root / item.path).parent.mkdir(parents=True)
            (root / item.path).write_text('{"dataset": "wds/evalset", "metr')
        else:  # the record of what made the folder
            name = "config.json"
            (root / "evals/run-a/step_1").mkdir(parents=True)
            (root / "evals/run-a/step_1" / name).write_text("[1, 2]")
        res = laclip("--root", str(root), "submit", "eval", "--checkpoint", "run-a/step_1", "--datasets", "evalset",
                     "--tasks", "zeroshot", "--local", "--workers", "0", "--batch-size", "4")
        assert_clean_error(res, name)
    return Case(106, f"damaged-{what}-submit-eval-local", run, slow=True)


SURFACES = ("report", "compare", "paper")
CLASS106 = ([_damaged("outcomes", k, s) for k in OUTCOME_DAMAGE for s in SURFACES]
            + [_damaged("result", k, s) for k in [*RESULT_DAMAGE, *RAW_DAMAGE] for s in SURFACES]
            + [_damaged_episodes(k) for k in ("nan", "above-one")]
            + [_damaged_before_evaluating(w) for w in ("result", "eval-record")])


# -- 108: eval arguments ------------------------------------------------------------------------------
BAD_REFS = ["//", "/", "gs://", "gs://bucket", "gs:///checkpoints/r/step_1", "a/b/c", "", "   ", "..", "./", "~",
            "/x/checkpoints/", "/x/checkpoints/r", "run-a/step_1/extra", "bad run!", "r" * 100, "checkpoints/",
            "-", "//checkpoints/run-a/step_1", "run-a/step 1", "run-a\nstep_1"]


def _bad_ref(ref: str, command: str) -> Case:
    """A malformed run or checkpoint argument: one line that names it (or the argument), never exit 70."""
    def run(tmp: Path) -> None:
        root = tmp / "store"
        es.write(root, "run-a", "zeroshot")
        named = repr(ref.strip())[1:-1]  # as a message quotes it
        if command == "compare":
            res = _report(root, "compare", "run-a", ref, "--no-png", "--json", str(tmp / "c.json"))
            assert_clean_error(res, named or "B")
        else:
            res = _report(root, "report", ref, "--no-png")
            assert_clean_error(res, named or "run")
    return Case(108, f"eval-{command}-argument-{ref.strip() or 'blank'}-{len(ref)}", run)


def _output_is_a_folder(which: str) -> Case:
    """The default output file of `eval compare` is taken by a folder in the current folder."""
    def run(tmp: Path) -> None:
        root = tmp / "store"
        es.write(root, "run-a", "zeroshot")
        es.write(root, "run-b", "zeroshot", logits=es.scores("random", 5))
        (tmp / f"compare-run-a_step_1-vs-run-b_step_1.{which}").mkdir()
        argv = ["--resamples", "200"] + (["--no-png"] if which == "json" else [])
        assert_clean_error(_report(root, "compare", "run-a", "run-b", *argv), f".{which}")
    return Case(108, f"eval-compare-default-{which}-is-a-folder", run)


CLASS108 = ([_bad_ref(r, "compare") for r in BAD_REFS] + [_bad_ref(r, "report") for r in BAD_REFS]
            + [_output_is_a_folder(w) for w in ("json", "png")])

CASES = [*CLASS101, *CLASS102, *CLASS106, *CLASS108]
