"""The eval stage's work: evaluate one checkpoint on datasets and tasks (laclip.eval.main).

In an Indexed Job, pod i evaluates dataset i (`JOB_COMPLETION_INDEX`); otherwise every dataset.
`plan` reads and checks every input first (the checkpoint's version, each dataset's files, the
class names and templates) and names each result by what decides it (laclip.eval.results): a
(dataset, task) is done when the result for these settings exists, so a retried pod redoes only
what is missing, and a changed setting never returns the old numbers. Features already cached
are read rather than recomputed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, field

from laclip import __version__, claim, layout
from laclip.errors import DataError, NotFound, UsageError
from laclip.eval import tasks
from laclip.eval.config import EvalConfig
from laclip.storage import open_store

log = logging.getLogger("laclip.eval")


@dataclass
class Planned:
    """One (dataset, task) of a request: where its result goes, what decides it, what it read."""

    ds: object
    task: str
    path: str
    identity: dict
    payload: dict = field(default_factory=dict)  # TaskSpec.inputs: zero-shot's class names and templates

    @property
    def spec(self) -> tasks.TaskSpec:
        return tasks.get(self.task)


def plan(cfg: EvalConfig, store, datasets: list[str] | None = None) -> list[Planned]:
    """Every (dataset, task) asked for, inputs checked (the results folder's owner first); raises on the
    first bad one."""
    from laclip.eval.datasets import open_eval_dataset
    from laclip.eval.results import identity, result_id
    from laclip.eval.sources import checkpoint_version, dataset_version

    _check_same_checkpoint(cfg, store)
    checkpoint = checkpoint_version(cfg)
    refs = datasets or cfg.datasets
    found = [open_eval_dataset(store, ref) for ref in refs]
    planned = []
    for ref, ds in zip(refs, found):
        files = dataset_version(ds)
        for task in supported_tasks(cfg, ds, cfg.tasks_for(ref), from_suite=ref in cfg.dataset_tasks):
            spec = tasks.get(task)
            inputs, payload = spec.inputs(cfg, ds)
            ident = identity(cfg, task, ds, checkpoint, files, inputs)
            path = layout.eval_result(cfg.run, cfg.checkpoint_name, ds.name, spec.result_name, result_id(ident))
            planned.append(Planned(ds, task, path, ident, payload))
    return planned


def read_results(store, planned: list[Planned]) -> list[dict]:
    """The result records of `planned` that exist, each checked (laclip.eval.records)."""
    from laclip.eval.records import read_result

    records = []
    for p in planned:
        try:
            records.append(read_result(store, p.path, p.spec.result_name))
        except NotFound:
            pass
    return records


def supported_tasks(cfg: EvalConfig, ds, wanted: list[str], from_suite: bool = False) -> list[str]:
    """`wanted` less those ds cannot do (TaskSpec.unsupported; logged): they would write no result, so
    stay pending and make every later run load the checkpoint again."""
    why = {t: tasks.get(t).unsupported(cfg, ds, from_suite) for t in wanted}
    for reason in dict.fromkeys(r for r in why.values() if r):
        log.warning("%s: skipping %s: %s", ds.name, ", ".join(t for t in wanted if why[t] == reason), reason)
    return [t for t in wanted if not why[t]]


def _require_labels(feats, where: str, task: str) -> None:
    """Classification needs a .cls on every sample: few-shot would take the -1 of the unlabelled
    ones as a class, and the linear probe would index out of its classifier."""
    missing = int((feats.labels < 0).sum())
    if missing:
        raise DataError(f"{where}: {missing} of {len(feats.labels)} samples have no .cls label; {task} needs one "
                        "on every sample")


def evaluate_dataset(cfg: EvalConfig, ds, lm, store, todo: list[Planned]) -> list[dict]:
    import numpy as np

    from laclip.eval import outcomes
    from laclip.eval.features import split_features
    from laclip.eval.results import write_result

    feats = {}
    done = []
    for item in todo:
        spec, start = item.spec, time.perf_counter()

        def split(name: str, labelled: bool):
            """A split's features; labelled: every sample must carry a .cls (for this task)."""
            if name not in feats:
                feats[name] = split_features(cfg, lm, ds, name, store)
            if labelled:
                _require_labels(feats[name], ds.url(name), item.task)
            return feats[name]

        run = tasks.TaskRun(spec, cfg, lm, ds, item.payload, split)
        metrics = spec.evaluate(run)
        test = feats[cfg.test_split]
        rid = item.path.rsplit("-", 1)[-1][:-5]
        keys = np.asarray(test.keys)
        kept = run.outcomes
        kept["keys"] = keys[kept.pop("images")] if "images" in kept else keys
        outcomes_path = layout.eval_outcomes(cfg.run, cfg.checkpoint_name, ds.name, spec.result_name, rid)
        # before the result: a result that exists has its outcomes (create-only; a retry keeps the first)
        claim.write_once(store, outcomes_path, outcomes.to_bytes(kept))
        record = {
            # CLIP_benchmark's names: its webdataset sets are `wds/<name>`, `pretrained` the file open_clip loads
            "dataset": f"wds/{ds.name}", "model": lm.name, "pretrained": item.identity["checkpoint"]["url"],
            "task": spec.result_name, "metrics": metrics, "language": "en",
            "laclip": {"run": cfg.run, "checkpoint": cfg.checkpoint_name, "dataset_url": ds.url(),
                       "images": int(len(test.labels)), "seconds": round(time.perf_counter() - start, 3),
                       "seed": cfg.seed, "version": __version__, "result_id": rid,
                       "identity": item.identity,
                       "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
                       "split": cfg.test_split, **run.details, "outcomes": outcomes_path.rsplit("/", 1)[-1]},
        }
        write_result(store, item.path, record)
        log.info("%s %s: %s", ds.name, item.task, json.dumps(metrics))
        done.append(record)
    return done


def _check_same_checkpoint(cfg: EvalConfig, store) -> None:
    """An evaluation folder (evals/<run>/<name>/) belongs to one checkpoint: two files with the same run folder and
    name (say /a/run7/final.pt and /b/run7/final.pt) must not share one folder of results."""
    from laclip.eval.records import read_eval_record

    record = read_eval_record(store, layout.eval_record(cfg.run, cfg.checkpoint_name))
    if record is None:
        return
    before = record["config"]
    url = str(before.get("checkpoint") or (str(before.get("checkpoint_root", "")).rstrip("/") + "/"
                                           + str(before.get("checkpoint_path", ""))))
    if url.removesuffix(".pt") != cfg.checkpoint_url.removesuffix(".pt"):
        raise UsageError(f"{store.url_of(cfg.out_dir)}/ holds the evaluation of {url}, not of "
                         f"{cfg.checkpoint_url}: give this checkpoint its own --run or name")


def run_eval(cfg: EvalConfig, datasets: list[str] | None = None) -> list[dict]:
    """Evaluate the checkpoint on `datasets` (default: all in the config); every result record of
    this request, those made now and those that already existed for the same settings."""
    from laclip.eval.results import write_result

    store = open_store(cfg.root)
    # Every input is checked before the (possibly large) checkpoint is fetched and loaded.
    planned = plan(cfg, store, datasets)
    todo = pending(store, planned)
    for p in planned:
        if p not in todo:
            log.info("%s %s: a result for these settings exists (%s)", p.ds.name, p.task, store.url_of(p.path))
    if todo:
        from laclip.eval.features import load_model  # torch and open_clip: only once there is work

        lm = load_model(cfg)
        # The record of what produced this folder (the first attempt's config stands).
        write_result(store, layout.eval_record(cfg.run, cfg.checkpoint_name),
                     {"config": cfg.model_dump(exclude={"cluster"}), "model": lm.name, "version": __version__})
        for ds in dict.fromkeys(p.ds for p in todo):
            evaluate_dataset(cfg, ds, lm, store, [p for p in todo if p.ds is ds])
    return read_results(store, planned)


def pending(store, planned: list[Planned]) -> list[Planned]:
    """What is left: a (dataset, task) is done when its result for these settings exists (its name is
    its identity, laclip.eval.results)."""
    return [p for p in planned if not store.exists(p.path)]


def run(cfg: EvalConfig) -> None:
    """The pod's work: dataset i of an Indexed Job ($JOB_COMPLETION_INDEX), else all of them."""
    index = claim.completion_index() if len(cfg.datasets) > 1 else None
    run_eval(cfg, claim.units_of_index(cfg.datasets, index, what="datasets"))
