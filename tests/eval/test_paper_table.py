"""`laclip eval report --layout paper`: the paper's table (rows zero-shot, linear probe, few-shot; a column
per dataset in the suite's order and the downstream average), Markdown and CSV, a difference row for two
runs; over results made by the real eval on the demo set and over result files of the paper's suite."""

from __future__ import annotations

import csv
import io

import pytest
from typer.testing import CliRunner

from laclip import layout
from laclip.eval import paper, suites
from laclip.eval.config import EvalConfig
from laclip.eval.results import load_rows, write_result
from laclip.eval.worker import run_eval
from laclip.storage import open_store
from laclip_cli.main import app

from .conftest import TINY, save_checkpoint

TASKS = {"zeroshot": "zeroshot_classification", "linear_probe": "linear_probe", "fewshot": "fewshot_knn"}


def report(root, *args):
    return CliRunner().invoke(app, ["eval", "report", *args], env={"LACLIP_ROOT": str(root)})


@pytest.mark.slow
def test_the_paper_layout_over_demo_results(ckpt_store, tiny_models):
    """Two runs evaluated for real on demo-eval: a row per task and run, the demo-eval column, the average
    (demo-eval alone: it equals the cell) and the difference row."""
    root = ckpt_store.local_path("")
    save_checkpoint(ckpt_store, "laclip-run", 1, TINY, seed=1)
    for run in ("clip-run", "laclip-run"):
        cfg = EvalConfig.for_checkpoint(f"{run}/step_1", root=str(root), tasks="zeroshot,fewshot,linear_probe",
                                        workers=0, batch_size=64, fewshot={"episodes": 20},
                                        linear_probe={"grid": 2, "refine_steps": 0, "max_iter": 20})
        assert len(run_eval(cfg)) == 3
    res = report(root, "clip-run", "laclip-run", "--layout", "paper")
    assert res.exit_code == 0, res.output + repr(res.exception)
    lines = [line for line in res.output.splitlines() if line.startswith("|")]
    assert lines[0] == "| task | run | demo-eval | Average (1) |"
    body = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert [b[:2] for b in body] == [
        ["zero-shot", "clip-run/step_1"], ["zero-shot", "laclip-run/step_1"],
        ["zero-shot", "Δ laclip-run/step_1 − clip-run/step_1"],
        ["linear probe", "clip-run/step_1"], ["linear probe", "laclip-run/step_1"],
        ["linear probe", "Δ laclip-run/step_1 − clip-run/step_1"],
        ["few-shot", "clip-run/step_1"], ["few-shot", "laclip-run/step_1"],
        ["few-shot", "Δ laclip-run/step_1 − clip-run/step_1"]]
    rows = {(r.run, r.task): r for r in load_rows(ckpt_store, "clip-run") + load_rows(ckpt_store, "laclip-run")}
    for i, task in enumerate(TASKS.values()):
        a, b = rows["clip-run", task].value, rows["laclip-run", task].value
        assert body[3 * i][2] == body[3 * i][3] == f"{100 * a:.1f}"  # the average of one dataset is that one
        assert body[3 * i + 1][2] == f"{100 * b:.1f}"
        # the difference with its paired 95% interval (bootstrap over the test images, episodes for few-shot)
        diff, _, interval = body[3 * i + 2][2].partition(" ")
        assert diff == f"{100 * (b - a):+.1f}"
        lo, hi = (float(x) for x in interval.strip("[]").split(", "))
        assert lo <= float(diff) <= hi and hi > lo
        assert body[3 * i + 2][3] == body[3 * i + 2][2]  # the average of one dataset: the same interval
    # CSV: the same numbers with two decimals, one line per row
    as_csv = report(root, "clip-run", "laclip-run", "--layout", "paper", "--csv", "-")
    table = list(csv.reader(io.StringIO(as_csv.output)))
    assert table[0] == ["task", "run", "checkpoint", "demo-eval", "average", "averaged_over"]
    zs = rows["clip-run", "zeroshot_classification"].value
    assert table[1][:5] == ["zero-shot", "clip-run", "step_1", f"{100 * zs:.2f}", f"{100 * zs:.2f}"]
    assert len(table) == 10
    one = report(root, "clip-run/step_1", "--layout", "paper")  # RUN/CHECKPOINT; one run: no difference row
    assert one.exit_code == 0 and "Δ" not in one.output
    missing = report(root, "clip-run/step_9", "--layout", "paper")
    assert missing.exit_code != 0 and "has no results of checkpoint step_9 (it has: step_1)" in str(missing.exception)


def _write(store, run: str, dataset: str, task: str, metrics: dict, named: str | None = None) -> None:
    """A result as the worker writes it: the runs' results differ in their checkpoint only, so they pair."""
    identity = {"version": 4, "task": task, "checkpoint": {"url": f"{run}/step_100.pt"}, "dataset": dataset}
    write_result(store, layout.eval_result(run, "step_100", dataset, task, "a1b2c3d4e5f6"),
                 {"dataset": named or dataset, "task": task, "metrics": metrics,
                  "laclip": {"created": "2026-01-01T00:00:00.000+00:00", "identity": identity}})


def test_the_paper_suite_columns_average_and_protocol(tmp_path):
    """The laclip-paper suite: 15 downstream columns in the paper's order, their average, then ImageNet;
    few-shot blank on ImageNet; the average over the downstream sets only, marked when one is missing."""
    store = open_store(str(tmp_path / "store"))
    suite = suites.load("laclip-paper")
    for k, entry in enumerate(suite.datasets):
        for key in entry.tasks:
            for run, base in (("clip", 0.40), ("laclip", 0.50)):
                if run == "laclip" and entry.name == "cub" and key == "zeroshot":
                    continue  # one result missing
                _write(store, run, entry.name, TASKS[key], {"acc1": base + k / 100})
    res = report(tmp_path / "store", "clip", "laclip", "--layout", "paper")
    assert res.exit_code == 0, res.output + repr(res.exception)
    lines = [line for line in res.output.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["task", "run", "Food-101", "CIFAR-10", "CIFAR-100", "CUB", "SUN397", "Cars", "Aircraft", "DTD",
                      "Pets", "Caltech-101", "Flowers", "STL-10", "EuroSAT", "RESISC45", "GTSRB", "Average (15)",
                      "ImageNet"]
    body = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): [c.strip() for c in line.strip("|").split("|")]
            for line in lines[2:]}
    downstream = [0.40 + k / 100 for k in range(1, 16)]
    zs = body["zero-shot", "clip/step_100"]
    assert zs[17] == f"{100 * sum(downstream) / 15:.1f}" and zs[18] == "40.0"  # ImageNet: k = 0, not averaged
    laclip_zs = body["zero-shot", "laclip/step_100"]
    assert laclip_zs[5] == "-" and laclip_zs[17].endswith("* (14/15)")
    assert body["few-shot", "clip/step_100"][18] == ""  # not part of the protocol on ImageNet
    diff = body["linear probe", "Δ laclip/step_100 − clip/step_100"]
    assert diff[2:] == ["+10.0"] * 17  # every column and the average
    assert "* the mean over the datasets with a result" in res.output
    # a result that names its dataset as CLIP_benchmark does (wds/<name>) lands in the same column
    _write(store, "wds-named", "vtab-cifar10", "zeroshot_classification", {"acc1": 0.875}, named="wds/vtab/cifar10")
    named = report(tmp_path / "store", "wds-named", "--layout", "paper", "--suite", "laclip-paper")
    assert "| zero-shot | wds-named/step_100 | - | 87.5 |" in named.output
    assert paper.dataset_key("wds/vtab/cifar10") == "vtab-cifar10" == paper.dataset_key("vtab-cifar10")
    assert paper.dataset_key("wds/fgvc_aircraft") == "fgvc-aircraft"


def test_a_suite_main_metric_and_the_interval_hook(tmp_path, monkeypatch):
    """DataComp scores some sets by their own metric (mean per-class recall, mean recall@1): the table
    shows it where the result has it; the difference row carries a paired interval where outcomes give one."""
    store = open_store(str(tmp_path / "store"))
    for run, v in (("a", 0.3), ("b", 0.4)):
        _write(store, run, "vtab-caltech101", "zeroshot_classification", {"acc1": v, "mean_per_class_recall": v / 2})
        _write(store, run, "flickr30k", "zeroshot_retrieval",
               {"image_retrieval_recall@1": v, "text_retrieval_recall@1": v + 0.2})
        _write(store, run, "wilds-fmow", "zeroshot_classification", {"acc1": v})
    rows = load_rows(store, "a") + load_rows(store, "b")
    runs = [("a", "step_100"), ("b", "step_100")]
    tab = paper.build(rows, runs, suites.load("datacomp"))
    zs = next(r for r in tab.rows if r[1] == "a/step_100")
    col = {c.key: i + 2 for i, c in enumerate(tab.columns)}
    assert zs[col["vtab-caltech101"]] == "15.0"  # mean per-class recall, not acc1
    assert zs[col["wilds-fmow"]] == "30.0" and any("acc_worst_region (shown: acc1)" in n for n in tab.notes)
    # 35 classification sets average here: WinoGAViL has no laclip task, Flickr and MSCOCO are retrieval
    assert zs[col["@average"]].endswith("* (2/35)")
    assert all(r[0] != "retrieval" for r in tab.rows)  # the paper's rows: zero-shot, linear probe, few-shot
    assert paper.metric_of(next(r for r in rows if r.dataset == "flickr30k"), "mean_recall@1") == \
        (pytest.approx(0.4), "mean_recall@1")
    no_outcomes = paper.build(rows, runs, suites.load("datacomp"), store=store)  # written without outcomes
    assert next(r for r in no_outcomes.rows if r[1].startswith("Δ"))[col["vtab-caltech101"]] == "+5.0"
    monkeypatch.setattr(paper, "paired_interval", lambda pairs, *_: (0.01 * len(pairs), 0.02 * len(pairs)))
    tab = paper.build(rows, runs, suites.load("datacomp"))
    diff = next(r for r in tab.rows if r[1].startswith("Δ"))
    assert diff[col["vtab-caltech101"]] == "+5.0 [+1.0, +2.0]" and diff[col["@average"]] == "+7.5 [+2.0, +4.0]"
