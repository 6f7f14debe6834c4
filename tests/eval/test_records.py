"""Records read back are checked (laclip.eval.records, laclip.eval.outcomes.read), and two results pair only
when every setting but the checkpoint is the same (laclip.eval.comparison)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from laclip import layout
from laclip.errors import DataError, UsageError
from laclip.eval import comparison as cmp
from laclip.eval import outcomes as oc
from laclip.eval.records import check_result, read_eval_record
from laclip.eval.results import RESULTS_VERSION, load_rows, result_id
from laclip.eval.zeroshot import classification_metrics
from laclip.storage import open_store

LOGITS = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
LABELS = np.arange(40) % 8


def identity(run: str, **changed) -> dict:
    ident = {"version": RESULTS_VERSION, "task": "zeroshot", "checkpoint": {"url": f"/s/checkpoints/{run}/step_1.pt",
             "version": "1-2"}, "model": None, "precision": "fp32", "dataset": {"url": "/s/datasets/d", "files": "f"},
             "test_split": "test", "inputs": {"classnames": "c", "templates": "t"}}
    return {**ident, **changed}


def write(store, run: str, ident: dict | None = None, created: str = "2026-01-01T00:00:00.000+00:00",
          logits=LOGITS) -> str:
    ident = ident or identity(run)
    rid = result_id(ident)
    task = "zeroshot_classification"
    store.write_bytes(layout.eval_outcomes(run, "step_1", "d", task, rid),
                      oc.to_bytes({**oc.classification(logits, LABELS), "keys": np.arange(40).astype(str)}))
    record = {"dataset": "wds/d", "task": task, "metrics": classification_metrics(logits, LABELS),
              "laclip": {"created": created, "identity": ident, "result_id": rid}}
    store.write_text(layout.eval_result(run, "step_1", "d", task, rid), json.dumps(record))
    return rid


@pytest.mark.parametrize("metrics, why", [
    ({"acc1": True}, "is true, not a number"), ({"acc1": "0.9"}, 'is "0.9", not a number'),
    ({"acc1": 90.0}, "outside [0, 1] (metrics are fractions"), ({"acc1": float("nan")}, "is NaN, not a number"),
    ({"lp_acc5": -0.1}, "outside [0, 1]"), ({}, "not an object of metrics"),
])
def test_a_result_with_a_wrong_metric_is_refused_naming_it(metrics, why):
    with pytest.raises(DataError, match="result r.json: .*" + why.replace("[", r"\[").replace("(", r"\(")):
        check_result({"dataset": "d", "task": "t", "metrics": metrics}, "r.json")
    # counts and None stay as they are: the unit rule is for rates only
    check_result({"dataset": "d", "task": "t", "metrics": {"acc1": None, "images": 500, "reg": 100.0}}, "r.json")


def test_damaged_files_name_themselves(tmp_path):
    store = open_store(str(tmp_path))
    rid = write(store, "a")
    path = layout.eval_outcomes("a", "step_1", "d", "zeroshot_classification", rid)
    data = store.read_bytes(path)
    store.write_bytes(path, data[:len(data) // 2])
    with pytest.raises(DataError, match=f"{rid}.outcomes.npz is not a readable outcomes file"):
        load_rows(store, "a")[0].outcomes(store)
    record = layout.eval_result("a", "step_1", "d", "zeroshot_classification", rid)
    store.write_text(record, store.read_text(record)[:30])
    with pytest.raises(DataError, match=f"result .*{rid}.json is not JSON"):
        load_rows(store, "a")
    store.write_text(layout.eval_record("a", "step_1"), "[1]")
    with pytest.raises(DataError, match="evaluation record .*config.json holds a JSON list"):
        read_eval_record(store, layout.eval_record("a", "step_1"))


def test_outcomes_that_do_not_give_their_result_are_refused(tmp_path):
    store = open_store(str(tmp_path))
    rid = write(store, "a")
    path = layout.eval_result("a", "step_1", "d", "zeroshot_classification", rid)
    record = json.loads(store.read_text(path))
    record["metrics"]["acc1"] = 0.9
    store.write_text(path, json.dumps(record))
    with pytest.raises(DataError, match=r"says zero-shot top-1 90.0 % but its outcomes .* give \d+.\d %"):
        load_rows(store, "a")[0].outcomes(store)


def test_results_pair_only_when_their_settings_match_but_the_checkpoint(tmp_path):
    store = open_store(str(tmp_path))
    write(store, "a")
    write(store, "b", logits=LOGITS[:, ::-1].copy())
    a, b = (load_rows(store, r)[0] for r in "ab")
    assert cmp.settings(a) == cmp.settings(b) and cmp.unlike(a, b) is None
    other = identity("b", precision="amp", inputs={"classnames": "c", "templates": "other templates"})
    write(store, "b", other, created="2026-02-01T00:00:00.000+00:00")
    newer = max(load_rows(store, "b", newest=False), key=lambda r: r.created)
    assert cmp.unlike(a, newer) == ('evaluated with other settings (inputs.templates "t" vs "other templates"; '
                                    'precision "fp32" vs "amp")')
    # the newest pair made alike is compared, not the newest of each
    sides = [cmp.resolve(store, r) for r in "ab"]
    [item] = cmp.compare(*sides)
    assert item.differences and item.note is None
    # only B's other result: no difference, and the note says why
    [item] = cmp.compare(*sides, results={a.result_id, newer.result_id})
    assert not item.differences and item.note.startswith("not paired: evaluated with other settings")
    assert cmp.notes(cmp.flat([item])) == [f"d zero-shot: {item.note}"]
    # a result that records no settings pairs with nothing
    a.record["laclip"].pop("identity")
    assert "does not record its settings" in cmp.unlike(a, b)


@pytest.mark.parametrize("ref", ["//", "/", "gs://", "gs://b", "a/b/c", "", "..", "bad run!", "/x/checkpoints/r"])
def test_compare_refuses_what_names_no_checkpoint(tmp_path, ref):
    with pytest.raises(UsageError, match="^B "):
        cmp.resolve(open_store(str(tmp_path)), ref, "B")
