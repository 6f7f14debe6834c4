"""The eval Job of one checkpoint, from the eval Job the CLI rendered for its training run.

A training run with `--eval-datasets` carries in its config (TrainConfig.eval_job) the eval Job
that laclip_jobs.eval rendered at submit time; after each checkpoint, rank 0 makes that Job's
copy for the new checkpoint with `for_checkpoint` and creates it through laclip.cluster. The
fields that name a checkpoint are set here only, for the renderer and the copies alike.
"""

from __future__ import annotations

import copy
import json

from laclip.kube import kubelet_literal, stamp
from laclip.eval.config import EvalConfig, slug

CHECKPOINT_LABEL = "laclip.dev/checkpoint"
CHECKPOINT_ANNOTATION = "laclip.dev/checkpoint-url"


def _container(job: dict) -> dict:
    return job["spec"]["template"]["spec"]["containers"][0]


def config_of(job: dict, model: type[EvalConfig] = EvalConfig) -> EvalConfig:
    """The EvalConfig in an eval Job's container args (`--config JSON`)."""
    args = _container(job)["args"]
    text = args[args.index("--config") + 1].replace("$$", "$")
    return model.model_validate(json.loads(text))


def apply_checkpoint(job: dict, cfg: EvalConfig) -> dict:
    """Set the Job's name, checkpoint label and annotation and container config to cfg's, in place."""
    label = slug(cfg.checkpoint_name)[:63].strip("-")
    job["metadata"]["name"] = cfg.job_name()
    for meta in (job["metadata"], job["spec"]["template"]["metadata"]):
        meta.setdefault("labels", {})[CHECKPOINT_LABEL] = label
    job["metadata"].setdefault("annotations", {})[CHECKPOINT_ANNOTATION] = cfg.checkpoint
    args = _container(job)["args"]
    # The pods need no cluster options. kubelet_literal: a `$` in user text reaches the process as is.
    args[args.index("--config") + 1] = kubelet_literal(cfg.model_dump_json(exclude={"cluster"}))
    return stamp(job)


def for_checkpoint(template: dict, checkpoint_url: str, model: type[EvalConfig] = EvalConfig) -> dict:
    """A copy of `template` that evaluates `checkpoint_url` (a checkpoint of the same run)."""
    base = config_of(template, model)
    cfg = model.model_validate({**base.model_dump(exclude={"checkpoint"}), "checkpoint": checkpoint_url})
    return apply_checkpoint(copy.deepcopy(template), cfg)
