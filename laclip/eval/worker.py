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

from laclip import __version__
from laclip.errors import DataError, LaclipError, NotFound, UsageError
from laclip.eval.config import TASK_RESULT_NAMES, EvalConfig
from laclip.storage import open_store

log = logging.getLogger("laclip.eval")
EXIT_BAD_INPUT = 3  # laclip_jobs.eval.EXIT_BAD_INPUT


def pending_tasks(cfg: EvalConfig, ds, store) -> list[str]:
    from laclip.eval.results import result_path

    return [t for t in cfg.tasks
            if not store.exists(result_path(cfg.run, cfg.checkpoint_name, ds.name, TASK_RESULT_NAMES[t]))]


def evaluate_dataset(cfg: EvalConfig, ds, lm, store) -> list[dict]:
    from laclip.eval import fewshot, linear_probe, retrieval, zeroshot
    from laclip.eval.features import split_features
    from laclip.eval.results import result_path, write_result

    todo = pending_tasks(cfg, ds, store)
    feats = {}

    def split(name: str):
        if name not in feats:
            feats[name] = split_features(cfg, lm, ds, name, store)
        return feats[name]

    has_train = ds.has_split(cfg.train_split)
    done = []
    for task in todo:
        start = time.perf_counter()
        test = split(cfg.test_split)
        extra: dict = {"split": cfg.test_split}
        if task == "retrieval":
            if not any(test.captions):
                log.warning("%s has no .txt captions: skipping retrieval", ds.name)
                continue
            metrics = retrieval.evaluate(lm, test.features, test.captions, cfg.recall_k, where=ds.url(cfg.test_split))
        elif ds.kind == "retrieval":
            log.warning("%s is a retrieval dataset: skipping %s", ds.name, task)
            continue
        elif task == "zeroshot":
            classnames, templates = ds.classnames(cfg.classnames), ds.templates(cfg.templates)
            metrics = zeroshot.evaluate(lm, test.features, test.labels, classnames, templates,
                                        where=ds.url(cfg.test_split))
            extra.update(classes=len(classnames), templates=len(templates))
        elif task == "fewshot":
            fs = cfg.fewshot
            support = split(cfg.train_split) if has_train else None
            metrics = fewshot.evaluate(
                test.features, test.labels, support.features if support else None,
                support.labels if support else None, ways=fs.ways, shots=fs.shots, queries=fs.queries,
                episodes=fs.episodes, k=fs.k, temperature=fs.temperature, seed=cfg.seed)
            extra["support_split"] = cfg.train_split if has_train else cfg.test_split
        else:  # linear_probe
            if not has_train:
                raise DataError(f"linear probe needs a {cfg.train_split!r} split in {ds.url()}")
            train = split(cfg.train_split)
            val = split(cfg.val_split) if cfg.val_split else None
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
    work = [ds for ds in found if pending_tasks(cfg, ds, store)]
    for ds in set(found) - set(work):
        log.info("%s: every task already has a result", ds.name)
    if not work:
        return []
    from laclip.eval.features import load_model  # torch and open_clip: only once there is work

    lm = load_model(cfg)
    # The record of what produced this folder (the first attempt's config stands).
    write_result(store, f"{cfg.out_dir}/config.json",
                 {"config": cfg.model_dump(exclude={"cluster"}), "model": lm.name, "version": __version__})
    results = []
    for ds in work:
        results.extend(evaluate_dataset(cfg, ds, lm, store))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m laclip.eval.worker", description=__doc__)
    parser.add_argument("--config", help="EvalConfig as JSON (default: $LACLIP_EVAL_CONFIG)")
    args = parser.parse_args(argv)
    _setup_logging()
    try:
        cfg = EvalConfig.model_validate_json(args.config or os.environ["LACLIP_EVAL_CONFIG"])
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
