"""The task registry (laclip.eval.tasks): one spec per task, and everything else reading it."""

from __future__ import annotations

import pytest

from laclip.eval import tasks
from laclip.eval.config import EvalConfig
from laclip.eval.results import identity

CKPT = "gs://bkt/checkpoints/run/step_1"


def test_every_name_of_a_task_names_one_task():
    spoken = [n for t in tasks.TASKS for n in {t.name, t.result_name, *t.aliases}]
    assert len(spoken) == len(set(spoken))
    for t in tasks.TASKS:
        assert tasks.get(t.name) is t and tasks.of_result(t.result_name) is t
        assert {tasks.canonical(n) for n in (t.name, t.result_name, *t.aliases)} == {t.name}
    with pytest.raises(ValueError, match="unknown task 'captioning' .tasks: zeroshot, fewshot, linear_probe"):
        tasks.canonical("captioning")


def test_the_config_is_made_from_the_specs():
    """--tasks takes every name; a task's options are EvalConfig.<name>; its identity fields are config fields."""
    cfg = EvalConfig(checkpoint=CKPT, tasks=",".join(n for t in tasks.TASKS for n in (t.result_name, *t.aliases)))
    assert cfg.tasks == tasks.names() == EvalConfig(checkpoint=CKPT).tasks
    for t in tasks.TASKS:
        if t.options:
            assert isinstance(getattr(cfg, t.name), t.options)
        assert all(f in EvalConfig.model_fields for f in t.identity_fields), t.name
    # the task fields come after the shared ones, as before the registry: the pods' JSON is unchanged
    assert list(EvalConfig.model_fields)[-3:] == ["cluster", "fewshot", "linear_probe"]
    assert EvalConfig.model_validate_json(cfg.model_dump_json()) == cfg


def test_a_result_identity_holds_what_its_spec_names():
    class Ds:
        def url(self):
            return "gs://bkt/datasets/d"

    cfg = EvalConfig(checkpoint=CKPT, seed=3, fewshot={"episodes": 7})
    for t in tasks.TASKS:
        ident = identity(cfg, t.name, Ds(), {"url": CKPT}, "files", {"x": 1} if t.name == "zeroshot" else None)
        assert {"version", "task", "checkpoint", "model", "precision", "dataset", "test_split"} <= set(ident)
        assert set(t.identity_fields) <= set(ident) and ("inputs" in ident) == (t.name == "zeroshot")
    assert identity(cfg, "fewshot", Ds(), {}, "f")["fewshot"]["episodes"] == 7
    assert identity(cfg, "fewshot", Ds(), {}, "f")["seed"] == 3


def test_the_tables_read_the_specs():
    """The paper layout's rows (zero-shot, linear probe, few-shot) and each task's headline metric."""
    rows = sorted((t for t in tasks.TASKS if t.paper_row is not None), key=lambda t: t.paper_row)
    assert [t.title for t in rows] == ["zero-shot", "linear probe", "few-shot"]
    assert {t.name: t.headline_result for t in tasks.TASKS} == {
        "zeroshot": "acc1", "fewshot": "acc1", "linear_probe": "lp_acc1", "retrieval": "image_retrieval_recall@1"}
    assert tasks.get("linear_probe").metric_label("acc5") == "linear top-5"
    assert tasks.get("retrieval").metric_label("text_retrieval_recall@5") == "i2t R@5"
