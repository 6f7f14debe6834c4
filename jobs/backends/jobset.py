"""The JobSet backend (jobset.x-k8s.io/v1alpha2): the training run's default on GKE, admitted by Kueue
as one workload. A TorchX AppDef role as a JobSet is the smallest pure mapping, data in, data out;
TorchX has no JobSet scheduler, and this is what one would render for a `dist.ddp` role.

    one replicated Job of `nodes` Indexed pods (completionMode Indexed, one pod per node)
    network.enableDNSHostnames: pod i is <jobset>-<rjob>-0-<i>.<subdomain>, published before it is
        ready, so torchrun's c10d rendezvous finds pod 0 by name from the start
    TorchX's macros: ${app_id} = the JobSet name, ${rank0_env} = RANK0_ENV (set to pod 0's DNS name
        in every pod), ${replica_id} = $(JOB_COMPLETION_INDEX) (the kubelet expands it)
    failures: the Job fails on its first pod failure (backoffLimit 0); its podFailurePolicy names
        why (a permanent exit code, or a disruption such as a Spot reclaim or a preemption), and
        the JobSet's failurePolicy acts on that name: fail at once, restart the gang without
        counting, or (anything else) restart the gang and count it against maxRestarts

Kubernetes writes the reason into the failed Job's condition message, and JobSet (v0.10+) matches
rules on it (onJobFailureMessagePatterns, RE2, searched anywhere in the message):
    Container <c> for pod <ns>/<pod> failed with exit code <N> matching FailJob rule at index <i>
    Pod <ns>/<pod> has condition DisruptionTarget matching FailJob rule at index <i>
"""

from __future__ import annotations

import copy
from typing import Any

from laclip.errors import EXIT_PERMANENT, UsageError
from laclip.kube import Resource, stamp
from laclip_jobs.backends.base import (DISRUPTION, ROLE, Backend, ObjectState, TrainRequest, condition, meta,
                                       waiting)

RESOURCE = Resource("jobset.x-k8s.io/v1alpha2", "JobSet", "jobsets", optional=True, singular="jobset",
                    install="install JobSet v0.10 or later (kubectl apply --server-side -f https://github.com/"
                          "kubernetes-sigs/jobset/releases/download/v0.12.0/manifests.yaml)")
API, KIND = RESOURCE.api_version, RESOURCE.kind
# What the torchrun command reads for the rendezvous host (TorchX's ${rank0_env} macro).
RANK0_ENV = "LACLIP_RDZV_HOST"
# The Job controller names pods <job>-<index>-<5 random characters>; JobSet's webhook checks
# that the longest such name is a DNS-1035 label (at most 63 characters, a letter first).
POD_NAME_SUFFIX = "-abcde"
POD_FAILURE_REASON = "PodFailurePolicy"  # the reason of a Job failed by its podFailurePolicy
NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"  # on the Jobs (and pods) a JobSet creates
CONTAINER = "train"


def hostname(name: str, rjob: str, pod: int, job: int = 0) -> str:
    """A pod's stable hostname (JobSet's <jobset>-<replicatedJob>-<jobIndex>-<podIndex>)."""
    return f"{name}-{rjob}-{job}-{pod}"


def rank0_host(name: str, rjob: str, subdomain: str | None = None) -> str:
    """Pod 0's DNS name, resolvable from every pod of the JobSet (the headless service's)."""
    return f"{hostname(name, rjob, 0)}.{subdomain or name}"


def longest_pod_name(name: str, rjob: str, nodes: int) -> str:
    """The longest pod name of a JobSet with one replicated Job of `nodes` pods, as the webhook checks it."""
    return hostname(name, rjob, nodes - 1) + POD_NAME_SUFFIX


def failure_policies(container: str, permanent_exit: int) -> tuple[dict, list[dict]]:
    """(the Job's podFailurePolicy, the JobSet's failurePolicy.rules) that read each other: the Job
    fails naming the rule index, and each JobSet rule matches one index."""
    pod_rules = [
        {"action": "FailJob", "onExitCodes": {"containerName": container, "operator": "In",
                                              "values": [permanent_exit]}},
        {"action": "FailJob", "onPodConditions": [{"type": DISRUPTION, "status": "True"}]},
    ]
    rules = [
        {"name": "PermanentError", "action": "FailJobSet", "onJobFailureReasons": [POD_FAILURE_REASON],
         "onJobFailureMessagePatterns": [f"failed with exit code {permanent_exit} matching FailJob rule at index 0$"]},
        {"name": "Disrupted", "action": "RestartJobSetAndIgnoreMaxRestarts",
         "onJobFailureReasons": [POD_FAILURE_REASON],
         "onJobFailureMessagePatterns": [f"has condition {DISRUPTION} matching FailJob rule at index 1$"]},
    ]
    return {"rules": pod_rules}, rules


def _container(role, container: str, env: dict[str, str]) -> dict[str, Any]:
    res = role.resource
    requests: dict[str, str] = {"cpu": str(res.cpu), "memory": f"{res.memMB}Mi"}
    if res.gpu:
        requests["nvidia.com/gpu"] = str(res.gpu)
    return {
        "name": container,
        "image": role.image,
        "command": [role.entrypoint, *role.args],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "ports": [{"name": port_name, "containerPort": port} for port_name, port in role.port_map.items()],
        "resources": {"requests": requests, "limits": dict(requests)},
    }


def torchrun_container(role, *, name: str, rjob: str, container: str) -> dict[str, Any]:
    """The container of `role` in the pods of replicated Job `rjob` of JobSet `name`. TorchX's macros:
    ${app_id} = the JobSet name, ${rank0_env} = RANK0_ENV (set to pod 0's DNS name in every pod),
    ${replica_id} = $(JOB_COMPLETION_INDEX) (the kubelet expands it). Pure: the role is not changed."""
    from torchx.specs import macros

    values = macros.Values(img_root="", app_id=name, replica_id="$(JOB_COMPLETION_INDEX)", rank0_env=RANK0_ENV)
    role = values.apply(copy.deepcopy(role))
    env = {**role.env, RANK0_ENV: rank0_host(name, rjob)}
    args = list(role.args)
    if args and "--rdzv_backend c10d " in args[-1]:
        # Every pod reads the same host name; torch decides who hosts the c10d store by resolving
        # it, which fails while pod 0's DNS record is not yet published. Pod 0 says so instead.
        # ($$: the kubelet turns it into the `$` of bash's arithmetic.)
        args[-1] = args[-1].replace("--rdzv_backend c10d ", "--rdzv_backend c10d --rdzv_conf "
                                    "is_host=$$((JOB_COMPLETION_INDEX==0)) ", 1)
    role.args = args
    return _container(role, container, env)


def from_role(role, *, name: str, namespace: str, nodes: int, container: str, permanent_exit: int,
              max_restarts: int, ttl_seconds: int, labels: dict[str, str] | None = None,
              template_labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
              pod_annotations: dict[str, str] | None = None, suspend: bool = False) -> dict[str, Any]:
    """The JobSet that runs `role` on `nodes` pods. `labels` go on the JobSet, `template_labels`
    (default: `labels`) on its Jobs and pods. Pure: the role is not changed."""
    rjob = role.name
    pod_failure, rules = failure_policies(container, permanent_exit)
    inner = template_labels if template_labels is not None else (labels or {})
    pod = {
        "metadata": {"labels": dict(inner), **({"annotations": dict(pod_annotations)} if pod_annotations else {})},
        "spec": {"restartPolicy": "Never",
                 "containers": [torchrun_container(role, name=name, rjob=rjob, container=container)]},
    }
    job = {
        "metadata": {"labels": dict(inner)},
        "spec": {"parallelism": nodes, "completions": nodes, "completionMode": "Indexed", "backoffLimit": 0,
                 "podFailurePolicy": pod_failure, "template": pod},
    }
    spec: dict[str, Any] = {
        "network": {"enableDNSHostnames": True, "publishNotReadyAddresses": True, "subdomain": name},
        "replicatedJobs": [{"name": rjob, "replicas": 1, "template": job}],
        "successPolicy": {"operator": "All", "targetReplicatedJobs": [rjob]},
        "failurePolicy": {"maxRestarts": max_restarts, "restartStrategy": "BlockingRecreate", "rules": rules},
        "ttlSecondsAfterFinished": ttl_seconds,
    }
    if suspend:
        spec = {"suspend": True, **spec}
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels or {})}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": API, "kind": KIND, "metadata": meta, "spec": spec}


def pod_templates(jobset: dict[str, Any]) -> list[dict[str, Any]]:
    """Each replicated Job's pod template as a standalone Pod (for the Kubernetes schema)."""
    return [{"apiVersion": "v1", "kind": "Pod", "metadata": r["template"]["spec"]["template"]["metadata"],
             "spec": r["template"]["spec"]["template"]["spec"]} for r in jobset["spec"]["replicatedJobs"]]


def job_templates(jobset: dict[str, Any]) -> list[dict[str, Any]]:
    """Each replicated Job as the batch/v1 Job the JobSet controller creates from it (its first)."""
    name = jobset["metadata"]["name"]
    return [{"apiVersion": "batch/v1", "kind": "Job",
             "metadata": {"name": f"{name}-{r['name']}-0", "namespace": jobset["metadata"].get("namespace"),
                          **r["template"].get("metadata", {})},
             "spec": r["template"]["spec"]} for r in jobset["spec"]["replicatedJobs"]]


class JobSetBackend(Backend):
    name = "jobset"
    resource = RESOURCE
    kueue = True
    index_keys = ("batch.kubernetes.io/job-completion-index",)
    child_label = NAME_LABEL
    help = "a JobSet, admitted by Kueue with --queue (the default)"

    def longest_pod_name(self, run: str, nodes: int) -> str:
        return longest_pod_name(run, ROLE, nodes)

    def shown(self, pod_name: str) -> str:
        return pod_name[:-len(POD_NAME_SUFFIX)] + "-xxxxx"

    def check_train(self, cfg, lo: int, hi: int) -> None:
        if lo != hi:
            raise UsageError(
                f"--nodes {cfg.nodes} is elastic, and a {self.kind} runs a fixed gang: all {hi} pods start together "
                f"and a failed pod restarts the whole gang from the newest checkpoint. Use --nodes {hi} "
                f"(or --nodes {lo}), or --scheduler volcano for torchrun's elastic membership")
        if not cfg.run[0].isalpha():
            raise UsageError(f"run id {cfg.run!r} must start with a letter: JobSet derives DNS-1035 names from it")

    def render_train(self, req: TrainRequest) -> dict[str, Any]:
        """The AppDef's role as a JobSet of one Indexed Job, a pod per node; under Kueue with a queue."""
        cfg = req.cfg
        js = from_role(req.role, name=cfg.run, namespace=cfg.cluster.namespace, nodes=req.nodes, container=CONTAINER,
                       permanent_exit=EXIT_PERMANENT, max_restarts=req.retries,
                       ttl_seconds=cfg.cluster.ttl_seconds_after_finished, labels=req.labels,
                       template_labels=req.template_labels, annotations=req.annotations,
                       pod_annotations=req.pod_annotations, suspend=req.suspend)
        for pod in pod_templates(js):
            req.patch_pod(pod["spec"])
        return stamp(js)

    def pod_templates(self, obj: dict) -> list[dict[str, Any]]:
        return pod_templates(obj)

    def state(self, js: dict) -> ObjectState:
        """Finished, suspended (Kueue), or how many of its Jobs are ready; with the gang restarts it has
        made (a Spot reclaim is one that maxRestarts does not count)."""
        spec, status = js.get("spec") or {}, js.get("status") or {}
        name = meta(js).get("name", "?")
        restarts, counted = int(status.get("restarts") or 0), int(status.get("restartsCountTowardsMax") or 0)
        limit = (spec.get("failurePolicy") or {}).get("maxRestarts", 0)
        again = f"; restarts: {restarts} ({counted} of at most {limit} counted)" if restarts else ""
        for kind in ("Failed", "Completed"):
            cond = condition(js, kind)
            if cond:
                detail = cond.get("message") or cond.get("reason") or ""
                return ObjectState("JobSet", name, "Succeeded" if kind == "Completed" else "Failed", detail + again)
        if meta(js).get("deletionTimestamp"):
            return ObjectState("JobSet", name, "Terminating", "deletion in progress")
        if spec.get("suspend"):
            return ObjectState("JobSet", name, "Suspended", waiting(js) + again)
        total = sum(int(r.get("replicas") or 1) for r in spec.get("replicatedJobs") or [])
        jobs = status.get("replicatedJobsStatus") or []
        ready = sum(int(r.get("ready") or 0) + int(r.get("succeeded") or 0) for r in jobs)
        active = sum(int(r.get("active") or 0) for r in jobs)
        state = "Running" if total and ready >= total else "Pending"
        detail = f"{ready} of {total} job(s) ready" + (f", {active} active" if active and ready < total else "")
        return ObjectState("JobSet", name, state, detail + again)


BACKEND = JobSetBackend()
