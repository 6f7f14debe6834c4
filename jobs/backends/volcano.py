"""The Volcano backend (batch.volcano.sh/v1alpha1 Job): the training AppDef as TorchX's own Kubernetes
scheduler renders it (`submit_dryrun`), patched for GKE. For clusters that run Volcano, and for
elastic node counts (torchrun's `--nnodes MIN:MAX`); Kueue cannot admit a Volcano Job.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

from laclip.errors import EXIT_PERMANENT, UsageError
from laclip.kube import Resource, stamp
from laclip_jobs.backends.base import ROLE, Backend, ObjectState, Progress, TrainRequest, meta
from laclip_jobs.common import as_json, check_subdomain

RESOURCE = Resource("batch.volcano.sh/v1alpha1", "Job", "jobs", optional=True, title="Volcano Job",
                    install="install Volcano (helm install volcano volcano-sh/volcano -n volcano-system)")
DEFAULT_QUEUE = "default"
# TorchX renders one Volcano task per node (~4 KB each); past this the Job nears etcd's 1.5 MiB object limit.
MAX_NODES = 256
TASK_INDEX = "volcano.sh/task-index"
TORCHX_REPLICA = "torchx.pytorch.org/replica-id"  # train pods rendered by TorchX: the node index


def _replace(obj: Any, old: str, new: str) -> Any:
    if isinstance(obj, str):
        return obj.replace(old, new)
    if isinstance(obj, list):
        return [_replace(v, old, new) for v in obj]
    if isinstance(obj, dict):
        return {k: _replace(v, old, new) for k, v in obj.items()}
    return obj


class VolcanoBackend(Backend):
    name = "volcano"
    resource = RESOURCE
    elastic = True
    index_keys = (TORCHX_REPLICA, TASK_INDEX)
    twin = "jobs.batch.volcano.sh,podgroups"
    problem_states = ("Pending", "Failed")
    help = "TorchX's Volcano Job (elastic --nodes MIN:MAX; Kueue cannot admit it)"

    def longest_pod_name(self, run: str, nodes: int) -> str:
        return f"{run}-{ROLE}-{nodes - 1}-0"  # Volcano's <job>-<task>-<index>; TorchX's task is <role>-<node>

    def check_train(self, cfg, lo: int, hi: int) -> None:
        if hi > MAX_NODES:
            raise UsageError(f"--nodes {cfg.nodes}: at most {MAX_NODES} nodes (one Volcano task each; a larger Job "
                             "exceeds the API server's object size limit)")

    def render_train(self, req: TrainRequest) -> dict[str, Any]:
        """The Volcano Job, as TorchX renders it, patched for GKE."""
        from torchx.schedulers.kubernetes_scheduler import create_scheduler

        cfg, cluster = req.cfg, req.cfg.cluster
        opts = {"namespace": cluster.namespace,
                "queue": check_subdomain(cluster.queue or DEFAULT_QUEUE, "Volcano queue name"),
                "service_account": cluster.service_account}
        if cluster.priority_class:
            opts["priority_class"] = cluster.priority_class
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchX warns that Volcano retries are imperfect; we restart in torchrun
            info = create_scheduler("laclip").submit_dryrun(req.app, opts)
        job = as_json(copy.deepcopy(info.request.resource))  # V1Pod models -> dicts
        # TorchX names the job <app>-<random>; use the run id so kubectl and laclip agree
        job = _replace(job, job["metadata"]["name"], cfg.run)
        job = {"apiVersion": job["apiVersion"], "kind": job["kind"],
               "metadata": {"name": cfg.run, "namespace": cluster.namespace, "labels": dict(req.template_labels)},
               "spec": job["spec"]}
        job["spec"]["ttlSecondsAfterFinished"] = cluster.ttl_seconds_after_finished
        job["spec"]["maxRetry"] = req.retries  # TorchX sets max_restarts; on Spot preemptions need more
        for task in job["spec"]["tasks"]:
            task["maxRetry"] = req.retries
            # Volcano takes the first task policy that matches a pod's end: the permanent exit code
            # must come before TorchX's "PodFailed -> RestartJob", or a typo would restart the Job.
            task["policies"] = [{"exitCode": EXIT_PERMANENT, "action": "TerminateJob"}] + task.get("policies", [])
            template = task["template"]
            template["metadata"].setdefault("labels", {}).update(req.template_labels)
            req.patch_pod(template["spec"])
        return stamp(job)

    def pod_templates(self, obj: dict) -> list[dict[str, Any]]:
        return [{"apiVersion": "v1", "kind": "Pod", "metadata": t["template"]["metadata"],
                 "spec": t["template"]["spec"]} for t in obj["spec"]["tasks"]]

    def state(self, vjob: dict) -> ObjectState:
        """The phase of status.state."""
        state = ((vjob.get("status") or {}).get("state") or {})
        phase = state.get("phase") or "Pending"
        mapped = {"Completed": "Succeeded", "Failed": "Failed", "Aborted": "Failed", "Terminated": "Failed",
                  "Running": "Running", "Restarting": "Running", "Completing": "Running",
                  "Aborting": "Terminating", "Terminating": "Terminating"}.get(phase, "Pending")
        detail = state.get("message") or state.get("reason") or f"Volcano phase {phase}"
        return ObjectState("VolcanoJob", meta(vjob).get("name", "?"), mapped, detail)

    def progress(self, vjob: dict) -> Progress:
        ended = self.state(vjob).state in ("Succeeded", "Failed")
        state = (vjob.get("status") or {}).get("state") or {}
        return Progress(started=meta(vjob).get("creationTimestamp"),
                        finished=state.get("lastTransitionTime") if ended else None)


BACKEND = VolcanoBackend()
