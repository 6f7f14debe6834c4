"""The Kubeflow Trainer v2 backend (trainer.kubeflow.org/v1alpha1 TrainJob): `--scheduler trainjob`.

Trainer builds a JobSet from a runtime and the TrainJob; Kueue admits the TrainJob as one workload
(Kueue 0.11+). The TrainJob carries what varies per run: the image and the very torchrun command
the JobSet backend runs (TorchX's AppDef, rendezvous at pod 0's DNS name, which is the host Trainer
itself names in PET_MASTER_ADDR), the environment, nodes x processes, the resources per node, and
through `runtimePatches` (v2.3's successor of podTemplateOverrides) the GKE patches a runtime patch
may carry: nodeSelector, tolerations, service account, pod and container security contexts,
/dev/shm and /tmp, and the laclip labels on the JobSet, its Jobs and pods.

What a TrainJob cannot patch lives in the runtime it names: ClusterTrainingRuntime `laclip-torch`, or
`laclip-torch-spot` on Spot VMs (`runtime()`; shipped as manifests/components/trainer, a test keeps
the two equal), not Trainer's own `torch-distributed`, whose Job retries a pod up to 6 times (a
permanent error too) and whose JobSet fails on any pod failure (a Spot reclaim ends the run). Ours
have the JobSet backend's failure policies: EXIT_PERMANENT fails the JobSet at once, a disruption
restarts the gang without counting, anything else restarts it up to maxRestarts times (the JobSet
backend's default: 3, or 20 on Spot); and the pods keep Workload Identity's token.
"""

from __future__ import annotations

from typing import Any

from laclip.config import ClusterOptions
from laclip.errors import EXIT_PERMANENT, UsageError
from laclip.kube import Resource, stamp
from laclip.train.config import SPOT_JOB_RETRIES
from laclip_jobs.backends import jobset
from laclip_jobs.backends.base import Backend, ObjectState, TrainRequest, condition, meta, waiting

RESOURCE = Resource("trainer.kubeflow.org/v1alpha1", "TrainJob", "trainjobs", singular="trainjob", optional=True,
                    install="install Kubeflow Trainer v2.3 or later (kubectl apply --server-side -k \"https://"
                            "github.com/kubeflow/trainer.git/manifests/overlays/manager?ref=v2.3.0\") and "
                            "apply manifests/components/trainer (its ClusterTrainingRuntime laclip-torch)")
RUNTIME = "laclip-torch"
RUNTIMES = {RUNTIME: 3, f"{RUNTIME}-spot": SPOT_JOB_RETRIES}  # name -> gang restarts (failurePolicy.maxRestarts)
NODE = "node"  # Trainer's name for the trainer's replicated Job and container
ANCESTOR_LABEL = "trainer.kubeflow.org/trainjob-ancestor-step"
MANAGER = "laclip.dev/submit"  # who owns our runtime patch (a domain-prefixed path, as Trainer asks)
RUNTIME_TTL = ClusterOptions.model_fields["ttl_seconds_after_finished"].default
RUNTIME_POD = {"restartPolicy": "Never", "automountServiceAccountToken": True}  # not patchable per TrainJob
PATCHABLE_POD = ("nodeSelector", "tolerations", "serviceAccountName", "securityContext", "volumes")


def runtime_for(cfg) -> str:
    return f"{RUNTIME}-spot" if cfg.cluster.spot else RUNTIME


def runtime(name: str = RUNTIME) -> dict[str, Any]:
    """ClusterTrainingRuntime `name` (of RUNTIMES): the JobSet a laclip TrainJob runs in."""
    pod_failure, rules = jobset.failure_policies(NODE, EXIT_PERMANENT)
    job = {"completionMode": "Indexed", "backoffLimit": 0, "podFailurePolicy": pod_failure,
           "template": {"spec": {**RUNTIME_POD, "containers": [{"name": NODE}]}}}
    return {
        "apiVersion": RESOURCE.api_version, "kind": "ClusterTrainingRuntime",
        "metadata": {"name": name, "labels": {"trainer.kubeflow.org/framework": "torch"}},
        "spec": {"mlPolicy": {"numNodes": 1, "torch": {}}, "template": {"spec": {
            "network": {"enableDNSHostnames": True, "publishNotReadyAddresses": True},
            "replicatedJobs": [{"name": NODE, "template": {"metadata": {"labels": {ANCESTOR_LABEL: "trainer"}},
                                                           "spec": job}}],
            "successPolicy": {"operator": "All", "targetReplicatedJobs": [NODE]},
            "failurePolicy": {"maxRestarts": RUNTIMES[name], "restartStrategy": "BlockingRecreate",
                              "rules": rules},
            "ttlSecondsAfterFinished": RUNTIME_TTL}}},
    }


class TrainJobBackend(Backend):
    name = "trainjob"
    resource = RESOURCE
    kueue = True
    index_keys = ("batch.kubernetes.io/job-completion-index",)
    help = f"a Kubeflow Trainer v2 TrainJob on ClusterTrainingRuntime {RUNTIME} (manifests/components/trainer)"

    def longest_pod_name(self, run: str, nodes: int) -> str:
        return jobset.longest_pod_name(run, NODE, nodes)

    def shown(self, pod_name: str) -> str:
        return jobset.BACKEND.shown(pod_name)

    def check_train(self, cfg, lo: int, hi: int) -> None:
        jobset.JobSetBackend.check_train(self, cfg, lo, hi)  # a fixed gang (of a JobSet); an RFC 1035 name
        name = runtime_for(cfg)
        fixed = {"--priority-class": (cfg.cluster.priority_class, None),
                 "--max-job-retries": (cfg.max_job_retries, RUNTIMES[name]),
                 "cluster.ttl_seconds_after_finished": (cfg.cluster.ttl_seconds_after_finished, RUNTIME_TTL)}
        for flag, (value, runtime_value) in fixed.items():
            if value is not None and value != runtime_value:
                raise UsageError(f"{flag} {value}: a TrainJob takes this from its runtime (ClusterTrainingRuntime "
                                 f"{name}), which Trainer's runtime patches cannot change; edit "
                                 "manifests/components/trainer, or use --scheduler jobset")

    def render_train(self, req: TrainRequest) -> dict[str, Any]:
        cfg, cluster = req.cfg, req.cfg.cluster
        container = jobset.torchrun_container(req.role, name=cfg.run, rjob=NODE, container=NODE)
        pod: dict[str, Any] = {"containers": [{"name": NODE}]}
        req.patch_pod(pod)  # the GKE patches, as every backend's pods get them; then split by who may set them
        [patched] = pod.pop("containers")
        resources = patched.pop("resources")
        fixed = {k: pod.pop(k) for k in list(pod) if k in RUNTIME_POD}
        if fixed != {k: v for k, v in RUNTIME_POD.items() if k in fixed} or set(pod) - set(PATCHABLE_POD):
            raise UsageError(f"a TrainJob cannot patch its pods' {', '.join(sorted(set(pod) - set(PATCHABLE_POD)))} "
                             f"(runtime {RUNTIME} sets them); use --scheduler jobset")
        pod_meta = {"labels": dict(req.template_labels),
                    **({"annotations": dict(req.pod_annotations)} if req.pod_annotations else {})}
        patch = {"metadata": {"labels": dict(req.template_labels)}, "spec": {"replicatedJobs": [{
            "name": NODE, "template": {"metadata": {"labels": dict(req.template_labels)}, "spec": {"template": {
                "metadata": pod_meta, "spec": {**pod, "containers": [patched]}}}}}]}}
        spec: dict[str, Any] = {
            "runtimeRef": {"apiGroup": RESOURCE.group, "kind": "ClusterTrainingRuntime", "name": runtime_for(cfg)},
            "trainer": {"image": container["image"], "command": container["command"], "env": container["env"],
                        "numNodes": req.nodes, "numProcPerNode": cfg.nproc(), "resourcesPerNode": resources},
            "runtimePatches": [{"manager": MANAGER, "trainingRuntimeSpec": {"template": patch}}],
        }
        if req.suspend:
            spec = {"suspend": True, **spec}
        metadata: dict[str, Any] = {"name": cfg.run, "namespace": cluster.namespace, "labels": dict(req.labels)}
        if req.annotations:
            metadata["annotations"] = dict(req.annotations)
        return stamp({"apiVersion": RESOURCE.api_version, "kind": RESOURCE.kind, "metadata": metadata, "spec": spec})

    def state(self, tj: dict) -> ObjectState:
        """Finished, suspended (Kueue), or how many of its Jobs are ready; with Trainer's progress
        estimate when the runtime reports one (trainerStatus)."""
        spec, status = tj.get("spec") or {}, tj.get("status") or {}
        name = meta(tj).get("name", "?")
        for kind in ("Failed", "Complete"):
            cond = condition(tj, kind)
            if cond:
                return ObjectState("TrainJob", name, "Succeeded" if kind == "Complete" else "Failed",
                                   cond.get("message") or cond.get("reason") or "")
        if meta(tj).get("deletionTimestamp"):
            return ObjectState("TrainJob", name, "Terminating", "deletion in progress")
        if spec.get("suspend"):
            return ObjectState("TrainJob", name, "Suspended", waiting(tj))
        jobs = status.get("jobsStatus") or []
        total = max(1, len(jobs))
        ready = sum(int(j.get("ready") or 0) + int(j.get("succeeded") or 0) for j in jobs)
        detail = f"{ready} of {total} job(s) ready"
        trainer = status.get("trainerStatus") or {}
        if trainer.get("progressPercentage") is not None:
            detail += f"; {trainer['progressPercentage']}% done"
        return ObjectState("TrainJob", name, "Running" if jobs and ready >= total else "Pending", detail)


BACKEND = TrainJobBackend()
