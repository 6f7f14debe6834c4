"""The eval stage as a Kubernetes Job: one pod per dataset (Indexed when there are several).

`render_eval_job(cfg)` is pure (config in, objects out). `submit_eval_for_checkpoint(...)` is
what a training run calls after writing a checkpoint to queue its evaluation:

    from laclip_jobs.eval import submit_eval_for_checkpoint
    submit_eval_for_checkpoint("gs://bucket/checkpoints/RUN/step_1000.pt", datasets=["imagenet1k"])

It creates the Job through the kubernetes client (in-cluster credentials inside a pod, the
kubeconfig elsewhere) and returns the Job's name; asking twice for the same evaluation is harmless
(the Job stands), while asking for other datasets or tasks while that Job exists is an error.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from laclip.errors import LaclipError
from laclip.eval.config import EvalConfig
from laclip_jobs.common import (
    apply_gke_pod_spec,
    base_env,
    check_images_configured,
    check_label_value,
    check_name,
    image_for,
    kubelet_literal,
    labels,
    object_labels,
    resources,
)

COMPONENT = "eval"
CONTAINER = "eval"
CHECKPOINT_LABEL = "laclip.dev/checkpoint"
# What a Job evaluates, compared when a Job of the same name already exists.
DATASETS_ANNOTATION = "laclip.dev/datasets"
TASKS_ANNOTATION = "laclip.dev/tasks"
# The worker exits with this code for bad input (unknown dataset, wrong checkpoint...):
# retrying cannot help, so the pod failure policy fails the index at once.
EXIT_BAD_INPUT = 3
RETRIES_PER_DATASET = 2


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def job_name(cfg: EvalConfig) -> str:
    """`eval-<run>-<checkpoint>`, shortened with a hash when too long: at most 63 characters, less
    the `-<index>` that the API server requires room for in an Indexed Job's pod hostnames."""
    n = len(cfg.datasets)
    limit = 63 - (len(f"-{n - 1}") if n > 1 else 0)
    name = f"eval-{_slug(cfg.run)}-{_slug(cfg.checkpoint_name)}".strip("-")
    if len(name) > limit:
        digest = hashlib.sha256(f"{cfg.run}/{cfg.checkpoint_name}".encode()).hexdigest()[:6]
        name = name[:limit - 7].rstrip("-") + "-" + digest
    return check_name(name, "eval job name", limit)


def dataset_label(cfg: EvalConfig) -> str:
    names = [d.rstrip("/").rsplit("/", 1)[-1] for d in cfg.datasets]
    joined = _slug("-".join(names))
    return joined if len(names) == 1 or len(joined) <= 63 else f"{len(names)}-datasets"


def render_eval_job(cfg: EvalConfig) -> list[dict[str, Any]]:
    """The batch/v1 Job that evaluates cfg's checkpoint; a pure function of the config."""
    cluster = cfg.cluster
    n = len(cfg.datasets)
    name = job_name(cfg)
    dataset = check_label_value(dataset_label(cfg), "dataset label")
    ckpt_label = {CHECKPOINT_LABEL: check_label_value(_slug(cfg.checkpoint_name), "checkpoint name")}
    container = {
        "name": CONTAINER,
        "image": image_for(COMPONENT, cluster),
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "laclip.eval.worker"],
        # The pods need no cluster options. kubelet_literal: a `$` in user text reaches the process as is.
        "args": ["--config", kubelet_literal(cfg.model_dump_json(exclude={"cluster"}))],
        "env": base_env(cfg.root, cfg.run),
        "resources": resources(cluster),
    }
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    apply_gke_pod_spec(pod_spec, cluster)
    failure_rules = [
        # Preemption (Spot reclaim, node drain) is not the pod's fault: retry without counting it.
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailIndex" if n > 1 else "FailJob",
         "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": [EXIT_BAD_INPUT]}},
    ]
    spec: dict[str, Any] = {
        "completions": n,
        "parallelism": n,
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
    spec["template"] = {
        "metadata": {"labels": {**labels(COMPONENT, cfg.run, dataset), **ckpt_label}},
        "spec": pod_spec,
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": check_name(cluster.namespace, "namespace"),
            "labels": {**object_labels(COMPONENT, cfg.run, dataset, cluster), **ckpt_label},
            "annotations": {"laclip.dev/checkpoint-url": cfg.checkpoint_url,
                            DATASETS_ANNOTATION: ",".join(cfg.datasets), TASKS_ANNOTATION: ",".join(cfg.tasks)},
        },
        "spec": spec,
    }
    return [job]


def connect():
    """An ApiClient: in-cluster credentials inside a pod (a training run), else the kubeconfig."""
    import os

    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            # The client reads $KUBECONFIG once at import; read it now so the current value counts.
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
        except (config.ConfigException, FileNotFoundError, TypeError) as exc:
            raise LaclipError(f"no Kubernetes cluster configured ({exc}): run `gcloud container clusters "
                              "get-credentials CLUSTER --region REGION` or set $KUBECONFIG; "
                              "--dry-run prints the Job instead") from None
    return client.ApiClient()


def create_job(job: dict[str, Any], api_client=None) -> tuple[str, str]:
    """Create the Job. (name, "created"); (name, "same") when a Job of that name already asks for
    the same datasets and tasks (a repeated request: it stands); (name, "unchecked") when it
    exists but this account may not read it. A Job asking for other datasets or tasks is an error:
    the name (run + checkpoint) is taken, and reusing it would silently evaluate the old request."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    check_images_configured([job])
    if api_client is None:
        api_client = connect()
    api = client.BatchV1Api(api_client)
    meta = job["metadata"]
    where = f"{meta['namespace']}/{meta['name']}"
    try:
        api.create_namespaced_job(meta["namespace"], job)
        return meta["name"], "created"
    except ApiException as exc:
        if exc.status != 409:
            raise LaclipError(f"creating Job {where}: the API server answered {exc.status} {exc.reason}") from None
    try:
        existing = api.read_namespaced_job(meta["name"], meta["namespace"]).metadata.annotations or {}
    except ApiException as exc:
        if exc.status == 403:  # the training pods' Role may only create: the Job stands, as asked before
            return meta["name"], "unchecked"
        raise LaclipError(f"Job {where} exists but cannot be read: {exc.status} {exc.reason}") from None
    for key in (DATASETS_ANNOTATION, TASKS_ANNOTATION):
        want, have = meta["annotations"][key], existing.get(key)
        if have is not None and set(have.split(",")) != set(want.split(",")):  # older Jobs have no tasks
            what = key.rsplit("/", 1)[-1]
            raise LaclipError(f"Job {where} already evaluates this checkpoint with {what} {have}, not {want}: "
                              f"delete it first (`kubectl delete job -n {meta['namespace']} {meta['name']}`; "
                              f"its results stay) or ask for the same {what}")
    return meta["name"], "same"


def submit_eval_for_checkpoint(checkpoint: str, root: str | None = None, *, api_client=None,
                               **options) -> str:
    """Queue an eval Job for one checkpoint (the hook for the training stage); the Job name."""
    cfg = EvalConfig.for_checkpoint(checkpoint, root=root, **options)
    return create_job(render_eval_job(cfg)[0], api_client)[0]
