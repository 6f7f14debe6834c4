"""Render the eval stage as a Kubernetes Job: one pod per dataset (Indexed when there are several).
Pure: config in, objects out; laclip.cluster creates them.

Pod i evaluates datasets[i] (JOB_COMPLETION_INDEX). Each index has its own retries; a
preemption (`DisruptionTarget`) is not counted, and the worker's EXIT_PERMANENT (bad input:
an unknown dataset, a checkpoint that does not load) fails its index at once.
"""

from __future__ import annotations

from typing import Any

from laclip.eval.config import EvalConfig
from laclip.followup import point_at, slug
from laclip_jobs.common import (
    EXIT_PERMANENT, apply_gke_pod_spec, base_env, batch_job, check_label_value, check_name, image_for, labels,
    resources,
)

COMPONENT = "eval"
CONTAINER = "eval"
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
    container = {
        "name": CONTAINER,
        "image": image_for(COMPONENT, cluster),
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", ENTRY_MODULE],
        "args": ["--config", ""],  # point_at puts the config in
        "env": base_env(cfg.root, cfg.run),
        "resources": resources(cluster),
    }
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    apply_gke_pod_spec(pod_spec, cluster)
    failure_rules = [
        # Preemption (Spot reclaim, node drain) is not the pod's fault: retry without counting it.
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailIndex" if n > 1 else "FailJob",
         "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": [EXIT_PERMANENT]}},
    ]
    spec: dict[str, Any] = {
        "completions": n,
        "parallelism": min(n, cfg.parallelism or n),
        "ttlSecondsAfterFinished": cluster.ttl_seconds_after_finished,
        "podFailurePolicy": {"rules": failure_rules},
    }
    if n > 1:
        spec["completionMode"] = "Indexed"  # pod i evaluates datasets[i] (JOB_COMPLETION_INDEX)
        spec["backoffLimitPerIndex"] = RETRIES_PER_DATASET
        # every index may fail RETRIES_PER_DATASET + 1 times before it is failed on its own; a
        # smaller Job-wide limit would end the Job, and the datasets still running, before that
        spec["backoffLimit"] = (RETRIES_PER_DATASET + 1) * n
    else:
        spec["backoffLimit"] = RETRIES_PER_DATASET
    if cluster.queue:
        spec["suspend"] = True  # Kueue admits (unsuspends) it when the queue has quota
    spec["template"] = {"metadata": {"labels": labels(COMPONENT, cfg.run, dataset)}, "spec": pod_spec}
    job = batch_job(COMPONENT, name, cfg.run, dataset, cluster,
                    {DATASETS_ANNOTATION: ",".join(cfg.datasets), TASKS_ANNOTATION: ",".join(cfg.tasks),
                     **({SUITES_ANNOTATION: ",".join(cfg.suites)} if cfg.suites else {})}, spec)
    return [point_at(job, cfg.model_dump_json(exclude={"cluster"}), cfg.checkpoint)]
