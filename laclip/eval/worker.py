"""Eval pod entrypoint: `python -m laclip.eval.worker --config '<EvalConfig JSON>'`.

In an Indexed Job, pod i evaluates dataset i (`JOB_COMPLETION_INDEX`); otherwise every dataset.
A (dataset, task) is done when its result JSON exists, so a retried pod redoes only what is
missing, and features already cached are read rather than recomputed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from pydantic import ValidationError

from laclip import __version__
from laclip.errors import DataError, LaclipError, NotFound, UsageError
from laclip.eval.config import TASK_RESULT_NAMES, EvalConfig
from laclip.storage import open_store

log = logging.getLogger("laclip.eval")
EXIT_BAD_INPUT = 3  # laclip_jobs.eval.EXIT_BAD_INPUT
CONFIG_ENV = "LACLIP_EVAL_CONFIG"


def pending_tasks(cfg: EvalConfig, ds, store) -> list[str]:
    """The tasks without a result for ds. Results are kept by dataset folder name, so one left by
    another dataset of the same name (say cifar10 and gs://x/eval/cifar10) is an error, not a result."""
    from laclip.eval.results import result_path

    todo = []
    for task in cfg.tasks:
        path = result_path(cfg.run, cfg.checkpoint_name, ds.name, TASK_RESULT_NAMES[task])
        try:
            record = json.loads(store.read_text(path))
        except NotFound:
            todo.append(task)
            continue
        except ValueError:
            continue  # written but unreadable: it stands, as every create-only result does
        info = record.get("laclip") if isinstance(record, dict) else None
        theirs = info.get("dataset_url") if isinstance(info, dict) else None
        if theirs and theirs.rstrip("/") != ds.url().rstrip("/"):
            raise UsageError(f"{store.url_of(path)} is a result of dataset {theirs}, not {ds.url()}: both are "
                             f"named {ds.name!r}; rename one folder, or delete that result to evaluate this one")
    return todo


def supported_tasks(cfg: EvalConfig, ds, tasks: list[str]) -> list[str]:
    """`tasks` less those ds cannot do (logged): they would write no result, so stay pending and
    make every later run load the checkpoint again."""
    if ds.kind == "retrieval":
        dropped, why = [t for t in tasks if t != "retrieval"], "it is a retrieval dataset"
    elif "retrieval" in tasks and not _captioned(ds, cfg.test_split):
        dropped, why = ["retrieval"], f"its {cfg.test_split} split has no .txt captions"
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


def evaluate_dataset(cfg: EvalConfig, ds, lm, store, todo: list[str] | None = None) -> list[dict]:
    from laclip.eval import fewshot, linear_probe, retrieval, zeroshot
    from laclip.eval.features import split_features
    from laclip.eval.results import result_path, write_result

    if todo is None:
        todo = supported_tasks(cfg, ds, pending_tasks(cfg, ds, store))
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
    for task in todo:
        start = time.perf_counter()
        test = split(cfg.test_split, None if task == "retrieval" else task)
        extra: dict = {"split": cfg.test_split}
        if task == "retrieval":
            metrics = retrieval.evaluate(lm, test.features, test.captions, cfg.recall_k, where=ds.url(cfg.test_split))
        elif task == "zeroshot":
            classnames, templates = ds.classnames(cfg.classnames), ds.templates(cfg.templates)
            metrics = zeroshot.evaluate(lm, test.features, test.labels, classnames, templates,
                                        where=ds.url(cfg.test_split))
            extra.update(classes=len(classnames), templates=len(templates))
        elif task == "fewshot":
            fs = cfg.fewshot
            support = split(cfg.train_split, task) if has_train else None
            metrics = fewshot.evaluate(
                test.features, test.labels, support.features if support else None,
                support.labels if support else None, ways=fs.ways, shots=fs.shots, queries=fs.queries,
                episodes=fs.episodes, k=fs.k, temperature=fs.temperature, seed=cfg.seed)
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
                val_fraction=lp.val_fraction, seed=cfg.seed, device=str(lm.device))
        record = {
            "dataset": ds.name, "model": lm.name, "pretrained": cfg.checkpoint_url,
            "task": TASK_RESULT_NAMES[task], "metrics": metrics, "language": "en",
            "laclip": {"run": cfg.run, "checkpoint": cfg.checkpoint_name, "dataset_url": ds.url(),
                       "images": int(len(test.labels)), "seconds": round(time.perf_counter() - start, 3),
                       "seed": cfg.seed, "version": __version__, **extra},
        }
        write_result(store, result_path(cfg.run, cfg.checkpoint_name, ds.name, TASK_RESULT_NAMES[task]), record)
        log.info("%s %s: %s", ds.name, task, json.dumps(metrics))
        done.append(record)
    return done


def _check_same_checkpoint(cfg: EvalConfig, store) -> None:
    """evals/<run>/<name>/ belongs to one checkpoint: two files with the same run folder and
    name (say /a/run7/final.pt and /b/run7/final.pt) must not share cached features or results."""
    path = f"{cfg.out_dir}/config.json"
    try:
        before = json.loads(store.read_text(path))["config"]
    except (NotFound, ValueError, KeyError, TypeError):
        return
    url = before.get("checkpoint_root", "").rstrip("/") + "/" + before.get("checkpoint_path", "")
    if url.removesuffix(".pt") != cfg.checkpoint_url.removesuffix(".pt"):
        raise UsageError(f"{store.url_of(cfg.out_dir)}/ holds the evaluation of {url}, not of "
                         f"{cfg.checkpoint_url}: give this checkpoint its own run folder or name")


def run_eval(cfg: EvalConfig, datasets: list[str] | None = None) -> list[dict]:
    """Evaluate the checkpoint on `datasets` (default: all in the config); the new result records."""
    from laclip.eval.datasets import open_eval_dataset
    from laclip.eval.results import write_result

    store = open_store(cfg.root)
    _check_same_checkpoint(cfg, store)
    # Every dataset is checked before the (possibly large) checkpoint is fetched and loaded.
    found = [open_eval_dataset(store, ref) for ref in datasets or cfg.datasets]
    todo = {ds: supported_tasks(cfg, ds, pending_tasks(cfg, ds, store)) for ds in found}
    for ds in found:
        if not todo[ds]:
            log.info("%s: every task it can do already has a result", ds.name)
    work = [ds for ds in found if todo[ds]]
    if not work:
        return []
    from laclip.eval.features import load_model  # torch and open_clip: only once there is work

    lm = load_model(cfg)
    # The record of what produced this folder (the first attempt's config stands).
    write_result(store, f"{cfg.out_dir}/config.json",
                 {"config": cfg.model_dump(exclude={"cluster"}), "model": lm.name, "version": __version__})
    results = []
    for ds in work:
        results.extend(evaluate_dataset(cfg, ds, lm, store, todo[ds]))
    return results


class _JsonLines(logging.Formatter):
    """One JSON object per line, the shape Cloud Logging parses (severity, message)."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"severity": record.levelname, "logger": record.name, "message": record.getMessage()})


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("LACLIP_LOG_FORMAT") == "json":
        handler.setFormatter(_JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("laclip").setLevel(logging.INFO)  # open_clip logs its set-up chatter on the root logger


def _read_config(text: str | None) -> EvalConfig:
    text = text if text is not None else os.environ.get(CONFIG_ENV)
    if not text:
        raise UsageError(f"no eval config: pass --config '<EvalConfig JSON>' or set ${CONFIG_ENV}")
    try:
        return EvalConfig.model_validate_json(text)
    except ValidationError as exc:  # pydantic's message spans lines: one line per problem, joined
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
        raise UsageError(f"invalid eval config: {problems}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m laclip.eval.worker", description=__doc__)
    parser.add_argument("--config", help=f"EvalConfig as JSON (default: ${CONFIG_ENV})")
    args = parser.parse_args(argv)
    _setup_logging()
    try:
        cfg = _read_config(args.config)
        index = os.environ.get("JOB_COMPLETION_INDEX")
        datasets = [cfg.datasets[int(index)]] if index is not None and len(cfg.datasets) > 1 else None
        run_eval(cfg, datasets)
    except (DataError, UsageError, NotFound) as exc:
        log.error("%s", exc)
        return EXIT_BAD_INPUT  # the Job's podFailurePolicy fails the index: a retry cannot help
    except LaclipError as exc:
        log.error("%s", exc)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
