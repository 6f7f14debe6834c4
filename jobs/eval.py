"""Render the eval stage as a Kubernetes Job: one pod per dataset (Indexed when there are several;
laclip_jobs.backends.job). Pure: config in, objects out; laclip.cluster creates them.

Pod i evaluates datasets[i] (JOB_COMPLETION_INDEX). Each index has its own retries; a
preemption (`DisruptionTarget`) is not counted, and the worker's EXIT_PERMANENT (bad input:
an unknown dataset, a checkpoint that does not load) fails its index at once.
"""

from __future__ import annotations

from typing import Any

from laclip.eval.config import EvalConfig, slug
from laclip.eval.request import apply_checkpoint
from laclip_jobs.backends import job as backends_job
from laclip_jobs.common import check_label_value, check_name

COMPONENT = "eval"
ENTRY_MODULE = "laclip.eval.main"
# What a Job evaluates, shown by `laclip status` and kubectl.
DATASETS_ANNOTATION = "laclip.dev/datasets"
TASKS_ANNOTATION = "laclip.dev/tasks"
RETRIES_PER_DATASET = 2


SUITES_ANNOTATION = "laclip.dev/suites"


def dataset_label(cfg: EvalConfig) -> str:
    """The datasets' names joined, else the suite's name (`laclip-paper`), else `<n>-datasets`."""
    names = [d.rstrip("/").rsplit("/", 1)[-1] for d in cfg.datasets]
    joined = slug("-".join(names))
    if len(names) == 1 or len(joined) <= 63:
        return joined
    if cfg.suites:
        others = len(names) - sum(1 for d in cfg.datasets if d in cfg.dataset_tasks)
        label = slug("-".join(cfg.suites) + (f"-and-{others}" if others else ""))
        if len(label) <= 63:
            return label
    return f"{len(names)}-datasets"


def render(cfg: EvalConfig) -> list[dict[str, Any]]:
    """The batch/v1 Job that evaluates cfg's checkpoint."""
    cluster = cfg.cluster
    n = len(cfg.datasets)
    name = check_name(cfg.job_name(), "eval job name", 63 - (len(f"-{n - 1}") if n > 1 else 0))
    dataset = check_label_value(dataset_label(cfg), "dataset label")
    check_label_value(slug(cfg.checkpoint_name)[:63].strip("-"), "checkpoint name")
    job = backends_job.render(
        component=COMPONENT, name=name, run=cfg.run, root=cfg.root, dataset=dataset, cluster=cluster,
        entry=ENTRY_MODULE, config="", items=n, parallelism=cfg.parallelism, retries=RETRIES_PER_DATASET,
        annotations={DATASETS_ANNOTATION: ",".join(cfg.datasets), TASKS_ANNOTATION: ",".join(cfg.tasks),
                     **({SUITES_ANNOTATION: ",".join(cfg.suites)} if cfg.suites else {})})
    return [apply_checkpoint(job, cfg)]
