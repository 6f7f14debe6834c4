"""Render `laclip datasets get-eval --job` as a Kubernetes Job: one CPU pod per dataset (Indexed when
there are several) that copies it from the Hugging Face hub into the bucket. Pure: config in,
objects out (laclip_jobs.backends.job); laclip.cluster creates them.

Pod i fetches datasets[i] (JOB_COMPLETION_INDEX) with laclip.fetch.main. Each index has its own
retries (a hub outage, a preemption not counted); EXIT_PERMANENT (no such repository, a set without
a published copy) fails its index at once. A retried pod resumes: files in the bucket stay.
"""

from __future__ import annotations

from typing import Any

from laclip.eval.config import slug
from laclip.fetch.config import FetchConfig
from laclip.kube import kubelet_literal
from laclip_jobs.backends import job
from laclip_jobs.common import check_label_value, check_name, check_subdomain, resources

COMPONENT = "get-eval"
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
    env = [{"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"}]
    if cfg.endpoint:
        env.append({"name": "HF_ENDPOINT", "value": kubelet_literal(cfg.endpoint)})
    if cfg.token_secret:
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {
            "name": check_subdomain(cfg.token_secret, "token secret"), "key": "HF_TOKEN"}}})
    res = resources(cluster)
    res["requests"]["ephemeral-storage"] = cfg.scratch_size
    res["limits"]["ephemeral-storage"] = cfg.scratch_size
    return [job.render(
        component=COMPONENT, name=name, run=cfg.run, root=cfg.root, dataset=label, cluster=cluster,
        entry=ENTRY_MODULE, config=pod_cfg.model_dump_json(exclude={"cluster"}), image=IMAGE, items=n,
        parallelism=cfg.parallelism, retries=RETRIES_PER_DATASET, env=env, res=res,
        volumes=[{"name": "scratch", "emptyDir": {"sizeLimit": cfg.scratch_size}}],
        mounts=[{"name": "scratch", "mountPath": SCRATCH}], annotations={DATASETS_ANNOTATION: ",".join(cfg.datasets)})]
