"""Render `laclip datasets get-eval --job` as a Kubernetes Job: one CPU pod per dataset (Indexed when
there are several) that copies it from the Hugging Face hub into the bucket. Pure: config in,
objects out; laclip.cluster creates them.

Pod i fetches datasets[i] (JOB_COMPLETION_INDEX) with laclip.fetch.main. Each index has its own
retries (a hub outage, a preemption not counted); EXIT_PERMANENT (no such repository, a set without
a published copy) fails its index at once. A retried pod resumes: files in the bucket stay.
"""

from __future__ import annotations

from typing import Any

from laclip.cluster import stamp
from laclip.eval.config import slug
from laclip.fetch.config import FetchConfig
from laclip_jobs.common import (
    EXIT_PERMANENT, apply_gke_pod_spec, base_env, batch_job, check_label_value, check_name, check_subdomain,
    image_for, kubelet_literal, labels, resources,
)

COMPONENT = "get-eval"
CONTAINER = "get-eval"
IMAGE = "eval"  # the eval image holds laclip[eval], huggingface_hub included
ENTRY_MODULE = "laclip.fetch.main"
DATASETS_ANNOTATION = "laclip.dev/datasets"
RETRIES_PER_DATASET = 4
SCRATCH = "/scratch"


def render(cfg: FetchConfig) -> list[dict[str, Any]]:
    cluster = cfg.cluster
    n = len(cfg.datasets)
    name = check_name(cfg.job_name(), "get-eval job name", 63 - (len(f"-{n - 1}") if n > 1 else 0))
    label = check_label_value(slug(cfg.suites[0] if len(cfg.suites) == 1 else
                                   (cfg.datasets[0] if n == 1 else f"{n}-datasets"))[:63].strip("-"), "dataset label")
    pod_cfg = cfg.model_copy(update={"scratch": SCRATCH})
    env = base_env(cfg.root, cfg.run) + [{"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"}]
    if cfg.endpoint:
        env.append({"name": "HF_ENDPOINT", "value": kubelet_literal(cfg.endpoint)})
    if cfg.token_secret:
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {
            "name": check_subdomain(cfg.token_secret, "token secret"), "key": "HF_TOKEN"}}})
    res = resources(cluster)
    res["requests"]["ephemeral-storage"] = cfg.scratch_size
    res["limits"]["ephemeral-storage"] = cfg.scratch_size
    container = {
        "name": CONTAINER,
        "image": image_for(IMAGE, cluster),
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", ENTRY_MODULE],
        "args": ["--config", kubelet_literal(pod_cfg.model_dump_json(exclude={"cluster"}))],
        "env": env,
        "resources": res,
        "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH}],
    }
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container],
                                "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": cfg.scratch_size}}]}
    apply_gke_pod_spec(pod_spec, cluster)
    spec: dict[str, Any] = {
        "completions": n,
        "parallelism": min(n, cfg.parallelism),
        "ttlSecondsAfterFinished": cluster.ttl_seconds_after_finished,
        "podFailurePolicy": {"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailIndex" if n > 1 else "FailJob",
             "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": [EXIT_PERMANENT]}},
        ]},
    }
    if n > 1:
        spec["completionMode"] = "Indexed"
        spec["backoffLimitPerIndex"] = RETRIES_PER_DATASET
        spec["backoffLimit"] = (RETRIES_PER_DATASET + 1) * n
    else:
        spec["backoffLimit"] = RETRIES_PER_DATASET
    if cluster.queue:
        spec["suspend"] = True
    spec["template"] = {"metadata": {"labels": labels(COMPONENT, cfg.run, label)}, "spec": pod_spec}
    job = batch_job(COMPONENT, name, cfg.run, label, cluster, {DATASETS_ANNOTATION: ",".join(cfg.datasets)}, spec)
    return [stamp(job)]
