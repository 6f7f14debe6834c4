"""Render the rewrite stage as one Kubernetes Indexed Job (pure: config in, dicts out).

One completion index = `shards_per_pod` shards; the pod learns its index from
JOB_COMPLETION_INDEX. Failures are handled per index (backoffLimitPerIndex,
maxFailedIndexes, Kubernetes 1.33 GA); preemption of Spot VMs (`DisruptionTarget`) is
not counted as a failure, and the worker's EXIT_PERMANENT (bad config or data) fails its
index at once instead of retrying.

How the model reaches the pod: `--model gs://BUCKET/PATH` is mounted read-only through
the Cloud Storage FUSE CSI driver at /models/<name> (pod annotation
`gke-gcsfuse/volumes: "true"`; the Workload Identity service account needs read access
to the bucket) and vLLM loads it from there; any other value is passed through (a path
baked into the image or a hub id fetched into the /tmp cache, which needs egress).
"""

from __future__ import annotations

from typing import Any

import re

from laclip import layout
from laclip.errors import UsageError
from laclip.rewrite.config import RewriteConfig
from laclip.rewrite.engines import spec
from laclip.storage.gcs import BUCKET_RULE, valid_bucket
from laclip_jobs.backends import job
from laclip_jobs.common import check_name

COMPONENT = "rewrite"
ENTRY_MODULE = "laclip.rewrite.main"
MODELS_MOUNT = "/models"
# What an object path may hold to become a gcsfuse `only-dir=` mount option: no ',' (it would add
# options), no '=' or white space.
_MOUNT_PATH = re.compile(r"[A-Za-z0-9._~@+/-]*")
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
    if not valid_bucket(bucket):
        raise UsageError(f"--model {model!r}: {bucket!r} is not a bucket name ({BUCKET_RULE})")
    path = path.strip("/")
    if not _MOUNT_PATH.fullmatch(path) or "//" in path or any(p in (".", "..") for p in path.split("/")):
        raise UsageError(f"--model {model!r}: the folder in the bucket may hold letters, digits and . _ ~ @ + - / "
                         "only (gcsfuse reads ',' and '=' as mount options)")
    name = path.rsplit("/", 1)[-1] if path else bucket
    attrs = {"bucketName": bucket, "mountOptions": "implicit-dirs" + (f",only-dir={path}" if path else "")}
    volume = {"name": "model", "csi": {"driver": GCSFUSE_DRIVER, "readOnly": True, "volumeAttributes": attrs}}
    mount_path = f"{MODELS_MOUNT}/{name}"
    return mount_path, volume, {"name": "model", "mountPath": mount_path, "readOnly": True}


def render(cfg: RewriteConfig) -> list[dict[str, Any]]:
    """The Job that rewrites cfg.num_shards shards of cfg.dataset; cfg.run names it."""
    run, root, num_shards = cfg.run, cfg.root, cfg.num_shards
    if not (run and root and num_shards):
        raise UsageError("the rewrite Job needs the run id, the store root and the shard count (submit sets them)")
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
    cfg = cfg.for_cluster()
    rewrite_id = cfg.resolved_rewrite_id()  # fixed here: the pod sees another model path
    worker_cfg = cfg.model_copy(update={"model": model_in_pod, "num_shards": num_shards, "rewrite_id": rewrite_id,
                                        "model_origin": cfg.model if volume else None,
                                        "tensor_parallel": cfg.gpus_per_pod})
    env = [{"name": "HF_HOME", "value": "/tmp/.cache/huggingface"},
           {"name": "VLLM_CACHE_ROOT", "value": "/tmp/.cache/vllm"}]
    env += [{"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}}}
            for name, (secret, key) in spec(cfg.engine).secret_env.items()]
    return [job.render(
        component=COMPONENT, name=run, run=run, root=root, dataset=cfg.dataset, cluster=cluster, entry=ENTRY_MODULE,
        config=worker_cfg.worker_json(), items=n, indexed=True, parallelism=parallelism,
        retries=cfg.backoff_limit_per_index, max_failed_indexes=max_failed, env=env,
        volumes=[volume] if volume else None, mounts=[mount] if mount else None,
        pod_annotations={"gke-gcsfuse/volumes": "true"} if volume else None,
        annotations={"laclip.dev/rewrite-id": rewrite_id,
                     "laclip.dev/output": f"{root.rstrip('/')}/{layout.rewrite_folder(cfg.dataset, rewrite_id)}/",
                     "laclip.dev/shards": str(num_shards)})]
