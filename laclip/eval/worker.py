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
from dataclasses import dataclass

from laclip import __version__, claim, layout
from laclip.errors import DataError, NotFound, UsageError
from laclip.eval.config import TASK_RESULT_NAMES, EvalConfig
from laclip.identity import digest
from laclip.storage import open_store

log = logging.getLogger("laclip.eval")
# CLIP_benchmark's names for the linear probe's metrics (its classification ones carry no prefix)
LP_NAMES = {"acc1": "lp_acc1", "acc5": "lp_acc5", "mean_per_class_recall": "lp_mean_per_class_recall"}


@dataclass
class Planned:
    """One (dataset, task) of a request: where its result goes and what decides it."""

    ds: object
    task: str
    path: str
    identity: dict
    classnames: list[str] | None = None
    templates: list[str] | None = None


def _zeroshot_inputs(cfg: EvalConfig, ds) -> tuple[list[str], list[str]]:
    names, templates = ds.classnames(cfg.classnames), ds.templates(cfg.templates)
    own = ds.classnames("auto") if cfg.classnames != "auto" and ds.has_file("classnames.txt") else None
    if own is not None and len(own) != len(names):  # caught here, before any checkpoint is loaded
        raise DataError(f"--classnames {cfg.classnames} has {len(names)} names but {ds.url('classnames.txt')} "
                        f"lists {len(own)} classes")
    return names, templates


def plan(cfg: EvalConfig, store, datasets: list[str] | None = None) -> list[Planned]:
    """Every (dataset, task) asked for, inputs checked; raises on the first bad one."""
    from laclip.eval.datasets import open_eval_dataset
    from laclip.eval.results import checkpoint_version, dataset_version, identity, result_id

    checkpoint = checkpoint_version(cfg)
    refs = datasets or cfg.datasets
    found = [open_eval_dataset(store, ref) for ref in refs]
    planned = []
    for ref, ds in zip(refs, found):
        files = dataset_version(ds)
        for task in supported_tasks(cfg, ds, cfg.tasks_for(ref), from_suite=ref in cfg.dataset_tasks):
            names = templates = inputs = None
            if task == "zeroshot":
                names, templates = _zeroshot_inputs(cfg, ds)
                inputs = {"classnames": digest(names), "templates": digest(templates)}
            ident = identity(cfg, task, ds, checkpoint, files, inputs)
            path = layout.eval_result(cfg.run, cfg.checkpoint_name, ds.name, TASK_RESULT_NAMES[task],
                                      result_id(ident))
            planned.append(Planned(ds, task, path, ident, names, templates))
    return planned


def read_results(store, planned: list[Planned]) -> list[dict]:
    """The result records of `planned` that exist (a damaged one is a DataError naming it)."""
    return [r for r in (claim.read_record(store, p.path, "delete it to evaluate again") for p in planned) if r]


def supported_tasks(cfg: EvalConfig, ds, tasks: list[str], from_suite: bool = False) -> list[str]:
    """`tasks` less those ds cannot do (logged): they would write no result, so stay pending and
    make every later run load the checkpoint again. A suite's linear probe is also left out where
    the dataset has no train split (a hub copy without one): the rest of the suite still runs."""
    if ds.kind == "retrieval":
        dropped, why = [t for t in tasks if t != "retrieval"], "it is a retrieval dataset"
    elif "retrieval" in tasks and not _captioned(ds, cfg.test_split):
        dropped, why = ["retrieval"], f"its {cfg.test_split} split has no .txt captions"
    elif from_suite and "linear_probe" in tasks and not ds.has_split(cfg.train_split):
        dropped, why = ["linear_probe"], f"it has no {cfg.train_split} split to fit the probe on"
    else:
        dropped, why = [], ""
    if dropped:
        log.warning("%s: skipping %s: %s", ds.name, ", ".join(dropped), why)
    return [t for t in tasks if t not in dropped]


def _captioned(ds, split: str) -> bool:
    try:
        return ds.captioned(split)
    except (DataError, NotFound):
        return True  # cannot tell from the shards (cached features may stand in): retrieval says what it finds


def _require_labels(feats, where: str, task: str) -> None:
    """Classification needs a .cls on every sample: few-shot would take the -1 of the unlabelled
    ones as a class, and the linear probe would index out of its classifier."""
    missing = int((feats.labels < 0).sum())
    if missing:
        raise DataError(f"{where}: {missing} of {len(feats.labels)} samples have no .cls label; {task} needs one "
                        "on every sample")


def evaluate_dataset(cfg: EvalConfig, ds, lm, store, todo: list[Planned]) -> list[dict]:
    import numpy as np

    from laclip.eval import fewshot, linear_probe, outcomes, retrieval, zeroshot
    from laclip.eval.features import split_features
    from laclip.eval.results import write_result

    feats = {}

    def split(name: str, task: str | None = None):
        """A split's features; with a task, one that needs every sample labelled."""
        if name not in feats:
            feats[name] = split_features(cfg, lm, ds, name, store)
        if task:
            _require_labels(feats[name], ds.url(name), task)
        return feats[name]

    has_train = ds.has_split(cfg.train_split)
    done = []
    for item in todo:
        task, start = item.task, time.perf_counter()
        test = split(cfg.test_split, None if task == "retrieval" else task)
        extra: dict = {"split": cfg.test_split}
        kept: dict = {}  # per-sample outcomes (laclip.eval.outcomes)
        if task == "retrieval":
            metrics = retrieval.evaluate(lm, test.features, test.captions, cfg.recall_k, where=ds.url(cfg.test_split),
                                         outcomes=kept)
        elif task == "zeroshot":
            classnames, templates = item.classnames, item.templates
            metrics = zeroshot.evaluate(lm, test.features, test.labels, classnames, templates,
                                        where=ds.url(cfg.test_split), outcomes=kept)
            extra.update(classes=len(classnames), templates=len(templates))
        elif task == "fewshot":
            fs = cfg.fewshot
            support = split(cfg.train_split, task) if has_train else None
            metrics = fewshot.evaluate(
                test.features, test.labels, support.features if support else None,
                support.labels if support else None, ways=fs.ways, shots=fs.shots, queries=fs.queries,
                episodes=fs.episodes, k=fs.k, temperature=fs.temperature, seed=cfg.seed, outcomes=kept)
            extra["support_split"] = cfg.train_split if has_train else cfg.test_split
        else:  # linear_probe
            if not has_train:
                raise DataError(f"linear probe needs a {cfg.train_split!r} split in {ds.url()}")
            train = split(cfg.train_split, task)
            val = split(cfg.val_split, task) if cfg.val_split else None
            lp = cfg.linear_probe
            metrics = linear_probe.evaluate(
                train.features, train.labels, test.features, test.labels,
                val.features if val else None, val.labels if val else None, reg_min=lp.reg_min,
                reg_max=lp.reg_max, grid=lp.grid, refine_steps=lp.refine_steps, max_iter=lp.max_iter,
                val_fraction=lp.val_fraction, seed=cfg.seed, device=str(lm.device), outcomes=kept)
            metrics = {LP_NAMES.get(k, k): v for k, v in metrics.items()}
        rid = item.path.rsplit("-", 1)[-1][:-5]
        keys = np.asarray(test.keys)
        kept["keys"] = keys[kept.pop("images")] if "images" in kept else keys
        outcomes_path = layout.eval_outcomes(cfg.run, cfg.checkpoint_name, ds.name, TASK_RESULT_NAMES[task], rid)
        # before the result: a result that exists has its outcomes (create-only; a retry keeps the first)
        claim.write_once(store, outcomes_path, outcomes.to_bytes(kept))
        extra["outcomes"] = outcomes_path.rsplit("/", 1)[-1]
        record = {
            # CLIP_benchmark's names: its webdataset sets are `wds/<name>`, `pretrained` the file open_clip loads
            "dataset": f"wds/{ds.name}", "model": lm.name, "pretrained": item.identity["checkpoint"]["url"],
            "task": TASK_RESULT_NAMES[task], "metrics": metrics, "language": "en",
            "laclip": {"run": cfg.run, "checkpoint": cfg.checkpoint_name, "dataset_url": ds.url(),
                       "images": int(len(test.labels)), "seconds": round(time.perf_counter() - start, 3),
                       "seed": cfg.seed, "version": __version__, "result_id": rid,
                       "identity": item.identity,
                       "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"), **extra},
        }
        write_result(store, item.path, record)
        log.info("%s %s: %s", ds.name, task, json.dumps(metrics))
        done.append(record)
    return done


def _check_same_checkpoint(cfg: EvalConfig, store) -> None:
    """evals/<run>/<name>/ belongs to one checkpoint: two files with the same run folder and
    name (say /a/run7/final.pt and /b/run7/final.pt) must not share one folder of results."""
    try:
        before = (claim.read_record(store, layout.eval_record(cfg.run, cfg.checkpoint_name)) or {})["config"]
    except (DataError, KeyError, TypeError):
        return
    if not isinstance(before, dict):
        return
    url = before.get("checkpoint") or (before.get("checkpoint_root", "").rstrip("/") + "/"
                                       + before.get("checkpoint_path", ""))
    if url.removesuffix(".pt") != cfg.checkpoint_url.removesuffix(".pt"):
        raise UsageError(f"{store.url_of(cfg.out_dir)}/ holds the evaluation of {url}, not of "
                         f"{cfg.checkpoint_url}: give this checkpoint its own --run or name")


def run_eval(cfg: EvalConfig, datasets: list[str] | None = None) -> list[dict]:
    """Evaluate the checkpoint on `datasets` (default: all in the config); every result record of
    this request, those made now and those that already existed for the same settings."""
    from laclip.eval.results import write_result

    store = open_store(cfg.root)
    _check_same_checkpoint(cfg, store)
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
