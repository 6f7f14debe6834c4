"""A TorchX AppDef role as a JobSet (jobset.x-k8s.io/v1alpha2): the smallest pure mapping, data
in, data out. TorchX has no JobSet scheduler; this is what one would render for a `dist.ddp` role.

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

API = "jobset.x-k8s.io/v1alpha2"
KIND = "JobSet"
# What the torchrun command reads for the rendezvous host (TorchX's ${rank0_env} macro).
RANK0_ENV = "LACLIP_RDZV_HOST"
# The Job controller names pods <job>-<index>-<5 random characters>; JobSet's webhook checks
# that the longest such name is a DNS-1035 label (at most 63 characters, a letter first).
POD_NAME_SUFFIX = "-abcde"
POD_FAILURE_REASON = "PodFailurePolicy"  # the reason of a Job failed by its podFailurePolicy
DISRUPTION = "DisruptionTarget"  # the pod condition of an eviction, preemption or node shutdown


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


def from_role(role, *, name: str, namespace: str, nodes: int, container: str, permanent_exit: int,
              max_restarts: int, ttl_seconds: int, labels: dict[str, str] | None = None,
              template_labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
              pod_annotations: dict[str, str] | None = None, suspend: bool = False) -> dict[str, Any]:
    """The JobSet that runs `role` on `nodes` pods. `labels` go on the JobSet, `template_labels`
    (default: `labels`) on its Jobs and pods. Pure: the role is not changed."""
    from torchx.specs import macros

    rjob = role.name
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
    pod_failure, rules = failure_policies(container, permanent_exit)
    inner = template_labels if template_labels is not None else (labels or {})
    pod = {
        "metadata": {"labels": dict(inner), **({"annotations": dict(pod_annotations)} if pod_annotations else {})},
        "spec": {"restartPolicy": "Never", "containers": [_container(role, container, env)]},
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
