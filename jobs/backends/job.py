"""The batch/v1 Job backend: rewrite, eval, get-eval and rewrite import run as one (Indexed) Job.

One renderer for all four (`render`): pod i works on item i (JOB_COMPLETION_INDEX); each index has
its own retries (backoffLimitPerIndex, Kubernetes 1.33 GA); a preemption (`DisruptionTarget`: a
Spot reclaim, a node drain) is not counted; the worker's EXIT_PERMANENT (bad config or input) fails
its index, or the Job, at once instead of retrying; with a Kueue queue the Job is created suspended
and Kueue admits it. A Job of one item is a plain Job with a Job-wide backoff limit.
"""

from __future__ import annotations

from typing import Any

from laclip.config import ClusterOptions
from laclip.errors import EXIT_PERMANENT
from laclip.kube import BATCH_JOB, kubelet_literal, stamp
from laclip_jobs.backends.base import DISRUPTION, Backend, ObjectState, Progress, condition, meta, waiting
from laclip_jobs.common import apply_gke_pod_spec, base_env, batch_job, image_for, labels, resources

INDEX_LABEL = "batch.kubernetes.io/job-completion-index"  # label (1.28+) and annotation on Indexed Job pods


def render(*, component: str, name: str, run: str, root: str, dataset: str, cluster: ClusterOptions, entry: str,
           config: str, items: int, retries: int, annotations: dict[str, str], container: str | None = None,
           image: str | None = None, parallelism: int | None = None, indexed: bool | None = None,
           max_failed_indexes: int | None = None, env: list[dict] | None = None, res: dict | None = None,
           volumes: list[dict] | None = None, mounts: list[dict] | None = None,
           pod_annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """The Job that runs `python -m entry --config CONFIG` for `items` indexes (`config`: the
    worker's JSON, passed as typed: kubelet_literal keeps a `$` in user text). `retries`: per index
    when indexed (the Job fails when `max_failed_indexes` indexes have failed, else when every index
    has used its retries), else for the whole Job. `container`: its name [default: the component];
    `image`: the image's component [default: the component]."""
    container = container or component
    indexed = items > 1 if indexed is None else indexed
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [{
        "name": container,
        "image": image_for(image or component, cluster),
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", entry],
        "args": ["--config", kubelet_literal(config)],
        "env": base_env(root, run) + (env or []),
        "resources": res or resources(cluster),
        **({"volumeMounts": mounts} if mounts else {}),
    }]}
    if volumes:
        pod_spec["volumes"] = volumes
    apply_gke_pod_spec(pod_spec, cluster)
    pod_meta: dict[str, Any] = {"labels": labels(component, run, dataset)}
    if pod_annotations:
        pod_meta["annotations"] = pod_annotations
    spec: dict[str, Any] = {"completions": items, "parallelism": min(items, parallelism or items)}
    if indexed:
        spec["completionMode"] = "Indexed"
        spec["backoffLimitPerIndex"] = retries
        if max_failed_indexes is not None:
            spec["maxFailedIndexes"] = max_failed_indexes
        else:  # each index may use all its retries before the Job, and the indexes still running, end
            spec["backoffLimit"] = (retries + 1) * items
    else:
        spec["backoffLimit"] = retries
    spec["podFailurePolicy"] = {"rules": [
        # Preemption (Spot reclaim, node drain) is not the pod's fault: retry without counting it.
        {"action": "Ignore", "onPodConditions": [{"type": DISRUPTION, "status": "True"}]},
        {"action": "FailIndex" if indexed else "FailJob",
         "onExitCodes": {"containerName": container, "operator": "In", "values": [EXIT_PERMANENT]}},
    ]}
    spec["ttlSecondsAfterFinished"] = cluster.ttl_seconds_after_finished
    if cluster.queue:
        spec["suspend"] = True  # Kueue admits (unsuspends) it when the queue has quota
    spec["template"] = {"metadata": pod_meta, "spec": pod_spec}
    return stamp(batch_job(component, name, run, dataset, cluster, annotations, spec))


def parse_indexes(text: str | None) -> list[int]:
    """`completedIndexes` / `failedIndexes` ("0-2,5") as a sorted list of ints."""
    found: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if part:
            lo, _, hi = part.partition("-")
            found.update(range(int(lo), int(hi or lo) + 1))
    return sorted(found)


class JobBackend(Backend):
    resource = BATCH_JOB
    kueue = True
    index_keys = (INDEX_LABEL,)
    twin = "jobs"

    def state(self, job: dict) -> ObjectState:
        """Suspended (Kueue), running, or finished from its conditions."""
        spec, status = job.get("spec") or {}, job.get("status") or {}
        name = meta(job).get("name", "?")
        for kind in ("Failed", "Complete"):
            cond = condition(job, kind)
            if cond:
                state = "Succeeded" if kind == "Complete" else "Failed"
                return ObjectState("Job", name, state, cond.get("message") or cond.get("reason") or "")
        if meta(job).get("deletionTimestamp"):
            return ObjectState("Job", name, "Terminating", "deletion in progress")
        if spec.get("suspend"):
            return ObjectState("Job", name, "Suspended", waiting(job))
        active, ready = status.get("active", 0), status.get("ready", 0)
        if active and ready:
            return ObjectState("Job", name, "Running", f"{ready} of {active} pods ready")
        return ObjectState("Job", name, "Pending" if active or not status.get("startTime") else "Running",
                           f"{active} pods active" if active else "no pod running yet")

    def progress(self, job: dict) -> Progress:
        """Its indexes (completedIndexes, failedIndexes; `succeeded` for a plain Job) and its clock:
        started, and completed or failed (a failed Job has no completionTime: it ended then)."""
        spec, status = job.get("spec") or {}, job.get("status") or {}
        total = int(spec.get("completions") or spec.get("parallelism") or 1)
        if spec.get("completionMode") == "Indexed":
            done, failed = parse_indexes(status.get("completedIndexes")), parse_indexes(status.get("failedIndexes"))
        else:
            done, failed = list(range(int(status.get("succeeded") or 0))), []
        end = status.get("completionTime") or (condition(job, "Failed") or {}).get("lastTransitionTime")
        return Progress(total, done, failed, status.get("startTime"), end)


BACKEND = JobBackend()
