"""Render the rewrite stage as one Kubernetes Indexed Job (pure: config in, dicts out).

One completion index = `shards_per_pod` shards; the pod learns its index from
JOB_COMPLETION_INDEX. Failures are handled per index (backoffLimitPerIndex,
maxFailedIndexes, Kubernetes 1.33 GA); preemption of Spot VMs (`DisruptionTarget`) is
not counted as a failure, and the worker's permanent-error exit code (3: bad config or
data) fails its index at once instead of retrying.

How the model reaches the pod: `--model gs://BUCKET/PATH` is mounted read-only through
the Cloud Storage FUSE CSI driver at /models/<name> (pod annotation
`gke-gcsfuse/volumes: "true"`; the Workload Identity service account needs read access
to the bucket) and vLLM loads it from there; any other value is passed through (a path
baked into the image or a hub id fetched into the /tmp cache, which needs egress).
"""

from __future__ import annotations

from typing import Any

from laclip.errors import UsageError
from laclip.rewrite.config import RewriteConfig
from laclip_jobs.common import (
    apply_gke_pod_spec, base_env, check_name, image_for, kubelet_literal, labels, object_labels, resources,
)

COMPONENT = "rewrite"
CONTAINER = "rewrite"
MODELS_MOUNT = "/models"
EXIT_PERMANENT = 3  # laclip.rewrite.worker.EXIT_PERMANENT (not imported: keep jobs/ light)
GCSFUSE_DRIVER = "gcsfuse.csi.storage.gke.io"
DEFAULT_PARALLELISM = 64  # pods at once unless --parallelism says otherwise (Kueue may admit fewer)
# Above this many completions the API server needs maxFailedIndexes and parallelism of at most 10,000.
MAX_INDEXES = 100_000


def completions(num_shards: int, shards_per_pod: int) -> int:
    return max(1, -(-num_shards // shards_per_pod))


def model_volume(model: str | None) -> tuple[str | None, dict | None, dict | None]:
    """(model path in the pod, volume, mount) for a gs:// model; other models pass through."""
    if not model or not model.startswith("gs://"):
        return model, None, None
    bucket, _, path = model[len("gs://"):].partition("/")
    if not bucket:  # gcsfuse would mount nothing and vLLM fail in every pod
        raise UsageError(f"--model {model!r} names no bucket (gs://BUCKET/path/to/model)")
    path = path.strip("/")
    name = path.rsplit("/", 1)[-1] if path else bucket
    attrs = {"bucketName": bucket, "mountOptions": "implicit-dirs" + (f",only-dir={path}" if path else "")}
    volume = {"name": "model", "csi": {"driver": GCSFUSE_DRIVER, "readOnly": True, "volumeAttributes": attrs}}
    mount_path = f"{MODELS_MOUNT}/{name}"
    return mount_path, volume, {"name": "model", "mountPath": mount_path, "readOnly": True}


def render_rewrite_job(cfg: RewriteConfig, *, run: str, root: str, num_shards: int) -> list[dict[str, Any]]:
    """The Job that rewrites `num_shards` shards of cfg.dataset; `run` names it."""
    check_name(run, "run id")
    cluster = cfg.cluster
    n = completions(num_shards, cfg.shards_per_pod)
    if n > MAX_INDEXES:
        raise UsageError(f"{num_shards} shards at {cfg.shards_per_pod} per pod make {n} indexes; a Job takes at most "
                         f"{MAX_INDEXES:,}: raise --shards-per-pod")
    if cfg.max_failed_indexes is not None and cfg.max_failed_indexes > n:
        raise UsageError(f"--max-failed-indexes {cfg.max_failed_indexes} is more than the Job's {n} indexes "
                         "(Kubernetes refuses it)")
    parallelism = min(cfg.parallelism or DEFAULT_PARALLELISM, n)
    max_failed = cfg.max_failed_indexes if cfg.max_failed_indexes is not None else max(1, n // 100)
    model_in_pod, volume, mount = model_volume(cfg.model)
    rewrite_id = cfg.resolved_rewrite_id()  # fixed here: the pod sees another model path
    worker_cfg = cfg.model_copy(update={"model": model_in_pod, "num_shards": num_shards, "rewrite_id": rewrite_id,
                                        "model_origin": cfg.model if volume else None})
    env = base_env(root, run) + [
        {"name": "HF_HOME", "value": "/tmp/.cache/huggingface"},
        {"name": "VLLM_CACHE_ROOT", "value": "/tmp/.cache/vllm"},
    ]
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image_for(COMPONENT, cluster),
        "command": ["python", "-m", "laclip.rewrite.worker"],
        # kubelet_literal: a `$` in user text (a model path, an endpoint) reaches the worker as typed
        "args": ["--config", kubelet_literal(worker_cfg.worker_json())],
        "env": env,
        "resources": resources(cluster),
    }
    if cfg.engine == "openai":
        container["env"].append({"name": "OPENAI_API_KEY", "valueFrom": {"secretKeyRef": {
            "name": "laclip-openai", "key": "api-key", "optional": True}}})
    pod_meta: dict[str, Any] = {"labels": labels(COMPONENT, run, cfg.dataset)}
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if volume:
        pod_meta["annotations"] = {"gke-gcsfuse/volumes": "true"}
        spec["volumes"] = [volume]
        container["volumeMounts"] = [mount]
    apply_gke_pod_spec(spec, cluster)

    job_spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": n,
        "parallelism": parallelism,
        "backoffLimitPerIndex": cfg.backoff_limit_per_index,
        "maxFailedIndexes": max_failed,
        "podFailurePolicy": {"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailIndex", "onExitCodes": {"containerName": CONTAINER, "operator": "In",
                                                    "values": [EXIT_PERMANENT]}},
        ]},
        "ttlSecondsAfterFinished": cluster.ttl_seconds_after_finished,
        "template": {"metadata": pod_meta, "spec": spec},
    }
    if cluster.queue:
        job_spec["suspend"] = True  # Kueue admits (unsuspends) it when the queue has quota
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": run,
            "namespace": check_name(cluster.namespace, "namespace"),
            "labels": object_labels(COMPONENT, run, cfg.dataset, cluster),
            "annotations": {
                "laclip.dev/rewrite-id": rewrite_id,
                "laclip.dev/output": f"{root.rstrip('/')}/rewrites/{cfg.dataset}/{rewrite_id}/",
                "laclip.dev/shards": str(num_shards),
            },
        },
        "spec": job_spec,
    }
    return [job]
