"""Render a training run: the TorchX dist.ddp AppDef, run by the cluster as a JobSet (laclip's
renderer, jobs/jobset.py; admitted by Kueue) or a Volcano Job (TorchX's own Kubernetes
scheduler), with the same GKE patches. Pure functions of TrainConfig; no torch, nothing contacted.

The AppDef is the one definition of the job: TorchX owns the torchrun command line (c10d
rendezvous on the first node, elastic `--nnodes MIN:MAX` under Volcano). We add what TorchX cannot
express: torchrun `--max-restarts` under laclip.train.launch (which ends the run on a permanent
error instead of letting torchrun retry it), the GPU pool's nodeSelector and tolerations, Workload
Identity, non-root security contexts, /dev/shm and /tmp, the laclip labels, the run id as the
object name, and failure policies that end the job on EXIT_PERMANENT instead of restarting it.

Why JobSet by default: on GKE, multi-node GPU training is a JobSet admitted by Kueue (xpk and
Kubeflow Trainer v2 build on it); Kueue cannot admit a Volcano Job, so only the JobSet goes
through the quota, flex-start provisioning and topology-aware placement that a team's GPUs sit
behind. Volcano stays for clusters that run it, and for elastic node counts.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from laclip import layout
from laclip.errors import UsageError
from laclip.train.config import TrainConfig
from laclip_jobs import jobset
from laclip_jobs.common import (EXIT_PERMANENT, FLEX_START_QUEUE, MAX_RUN_ANNOTATION, TOPOLOGY_ANNOTATIONS,
                                apply_gke_pod_spec, as_json, base_env, check_name, image_for, kubelet_literal,
                                labels, object_labels, resources, stamp)

COMPONENT = "train"
VOLCANO_API = "batch.volcano.sh/v1alpha1"
ENTRY_MODULE = "laclip.train.main"
LAUNCHER = "python -m laclip.train.launch"  # runs torchrun (laclip.train.launch)
DEFAULT_VOLCANO_QUEUE = "default"
# TorchX's ddp names its role after the entry module (laclip.train.main): the replicated Job of the
# JobSet, and the Volcano tasks <role>-<node>; part of every pod name.
ROLE = "main"
# TorchX renders one Volcano task per node (~4 KB each); past this the Job nears etcd's 1.5 MiB object limit.
MAX_NODES = 256
# A JobSet holds one pod template whatever the size; this bounds a typo, not the object.
MAX_JOBSET_NODES = 15_000
NAME_LIMIT = 63  # a pod's hostname is a DNS label


def _mem_mb(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]i?)?", quantity)
    if not m:
        raise ValueError(f"memory {quantity!r} is not a Kubernetes quantity such as 64Gi")
    return int(float(m.group(1)) * units.get(m.group(2) or "", 1) // 2**20)


def _cpu(quantity: str) -> int:
    return max(1, int(float(quantity[:-1]) / 1000) if quantity.endswith("m") else int(float(quantity)))


# torchrun's agent shares one TCPStore across restarts by default, and the restarted workers
# can read their peers' addresses from the attempt before (pytorch/pytorch#135712): gloo and
# NCCL then connect to dead ports and every restart fails. A store per round avoids that.
ELASTIC_ENV = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


def env_for(cfg: TrainConfig, root: str) -> dict[str, str]:
    env = {e["name"]: e["value"] for e in base_env(root, cfg.run)}
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "4")
    return {**env, **ELASTIC_ENV}


def eval_template(cfg: TrainConfig, root: str) -> dict | None:
    """The eval Job the run asks for on each checkpoint (laclip.train.eval_hook), rendered now for
    its first checkpoint: the eval pods go where the training pods go, in the eval image."""
    if not cfg.eval_datasets:
        return None
    from laclip.config import ClusterOptions
    from laclip.eval.config import EvalConfig
    from laclip_jobs.eval import render as render_eval

    c = cfg.cluster
    cluster = ClusterOptions(namespace=c.namespace, service_account=c.service_account, accelerator=c.accelerator,
                             spot=c.spot, queue=c.queue, priority_class=c.priority_class)
    checkpoint = f"{root.rstrip('/')}/{layout.checkpoint(cfg.run, 0)}"
    try:
        [job] = render_eval(EvalConfig(checkpoint=checkpoint, datasets=cfg.eval_datasets, cluster=cluster))
    except ValueError as exc:  # pydantic: a bad dataset list
        raise UsageError(f"--eval-datasets: {' '.join(str(exc).split())}") from None
    return job


def app_def(cfg: TrainConfig, *, local: bool = False, image: str | None = None):
    """The TorchX AppDef. `local`: one node on this machine, plain logs (laclip_cli.local.run_role)."""
    from torchx.components.dist import ddp

    check_name(cfg.run, "run id")
    root = cfg.root
    if not root:
        raise UsageError("the training job needs the store root (submit sets it)")
    lo, hi = cfg.nnodes()
    if not local and cfg.scheduler == "volcano" and hi > MAX_NODES:
        raise UsageError(f"--nodes {cfg.nodes}: at most {MAX_NODES} nodes (one Volcano task each; a larger Job "
                         "exceeds the API server's object size limit)")
    if not local and hi > MAX_JOBSET_NODES:
        raise UsageError(f"--nodes {cfg.nodes}: at most {MAX_JOBSET_NODES} nodes")
    nproc = cfg.nproc()
    if local:
        j, gpus, env = f"1x{nproc}", 0, {"LACLIP_ROOT": root, "LACLIP_RUN": cfg.run, "PYTHONUNBUFFERED": "1",
                                     **ELASTIC_ENV}
    else:
        j, gpus, env = (f"{lo}:{hi}x{nproc}" if lo != hi else f"{hi}x{nproc}"), cfg.cluster.gpus, env_for(cfg, root)
    # Each pass that reads `$` turns `$$` into `$`: TorchX's ${macro} substitution, then on a
    # cluster the kubelet's $(VAR) expansion (env_for has done that one for the environment).
    # Doubling per pass lets a `$` in user text (a root, a rewrites id) reach laclip.train.main as
    # typed; the shell sees it single-quoted.
    env = {k: kubelet_literal(v) for k, v in env.items()}
    config_arg = kubelet_literal(cfg.model_copy(update={"root": root, "eval_job": cfg.eval_job if local else
                                                        eval_template(cfg, root)}).to_arg())
    if not local:
        config_arg = kubelet_literal(config_arg)
    app = ddp("--config", config_arg, m=ENTRY_MODULE, image=image or image_for(COMPONENT, cfg.cluster),
              name=cfg.run, cpu=_cpu(cfg.cluster.cpu), gpu=gpus, memMB=_mem_mb(cfg.cluster.memory), j=j,
              env=env, max_retries=0 if local else cfg.max_restarts, rdzv_port=cfg.rdzv_port)
    # torchrun restarts the worker group in place (elastic); TorchX's ddp has no flag for it. The
    # launcher runs torchrun and ends the run at once on a permanent error. Locally, no --tee: the
    # output goes straight to the terminal and no log folder is left behind.
    role = app.roles[0]
    if role.name != ROLE:
        raise UsageError(f"unexpected role name from TorchX's ddp component: {role.name!r}")
    shell = role.args[-1]
    if not shell.startswith("torchrun "):
        raise UsageError(f"unexpected command from TorchX's ddp component: {shell[:80]!r}")
    if local:
        shell = shell.replace(" --tee 3 ", " ", 1)
    role.args[-1] = shell.replace("torchrun ", f"{LAUNCHER} --max-restarts {cfg.max_restarts} ", 1)
    return app


def _replace(obj: Any, old: str, new: str) -> Any:
    if isinstance(obj, str):
        return obj.replace(old, new)
    if isinstance(obj, list):
        return [_replace(v, old, new) for v in obj]
    if isinstance(obj, dict):
        return {k: _replace(v, old, new) for k, v in obj.items()}
    return obj


def longest_pod_name(cfg: TrainConfig, run: str | None = None) -> str:
    """The longest pod name the scheduler derives from the run id for cfg's node count."""
    run, nodes = cfg.run if run is None else run, cfg.nnodes()[1]
    if cfg.scheduler == "jobset":
        return jobset.longest_pod_name(run, ROLE, nodes)
    return f"{run}-{ROLE}-{nodes - 1}-0"  # Volcano's <job>-<task>-<index>; TorchX's task is <role>-<node>


def run_id_limit(cfg: TrainConfig) -> int:
    """How long a run id may be for cfg's scheduler and node count (the CLI's automatic ids fit it)."""
    return NAME_LIMIT - len(longest_pod_name(cfg, ""))


def check_run_id(cfg: TrainConfig) -> str:
    check_name(cfg.run, "run id")
    longest = longest_pod_name(cfg)
    if len(longest) > NAME_LIMIT:
        shown = longest[:-len(jobset.POD_NAME_SUFFIX)] + "-xxxxx" if cfg.scheduler == "jobset" else longest
        raise UsageError(
            f"run id {cfg.run!r} is {len(cfg.run)} characters long: with --scheduler {cfg.scheduler} and "
            f"{cfg.nnodes()[1]} node(s) its longest pod name ({shown}) would be {len(longest)} characters, over "
            f"Kubernetes' limit of {NAME_LIMIT}; use a --run of at most {run_id_limit(cfg)} characters (or leave "
            "--run out for one that fits)")
    if cfg.scheduler == "jobset" and not cfg.run[0].isalpha():
        raise UsageError(f"run id {cfg.run!r} must start with a letter: JobSet derives DNS-1035 names from it")
    return cfg.run


def render(cfg: TrainConfig) -> list[dict[str, Any]]:
    """The training run as cfg.scheduler runs it: a JobSet, or a Volcano Job."""
    return render_jobset(cfg) if cfg.scheduler == "jobset" else render_volcano(cfg)


def _patch_pod_spec(spec: dict[str, Any], cfg: TrainConfig) -> None:
    """The GKE patches of a training pod, whichever scheduler rendered it."""
    if not spec.get("nodeSelector"):
        spec.pop("nodeSelector", None)
    # TorchX mounts an unbounded memory /dev/shm; ours has the size limit of ClusterOptions.shm
    spec["volumes"] = [v for v in spec.get("volumes", []) if v.get("name") != "dshm"]
    for container in spec["containers"]:
        container["resources"] = resources(cfg.cluster)
    apply_gke_pod_spec(spec, cfg.cluster, flex_start=cfg.flex_start)


def render_jobset(cfg: TrainConfig) -> list[dict[str, Any]]:
    """The AppDef's role as a JobSet of one Indexed Job, a pod per node; under Kueue with a queue."""
    cluster = cfg.cluster
    lo, hi = cfg.nnodes()
    if lo != hi:
        raise UsageError(
            f"--nodes {cfg.nodes} is elastic, and a JobSet runs a fixed gang: all {hi} pods start together "
            f"and a failed pod restarts the whole gang from the newest checkpoint. Use --nodes {hi} "
            f"(or --nodes {lo}), or --scheduler volcano for torchrun's elastic membership")
    check_run_id(cfg)
    queue = cluster.queue or (FLEX_START_QUEUE if cfg.flex_start else None)
    own = labels(COMPONENT, cfg.run, cfg.dataset)
    top = object_labels(COMPONENT, cfg.run, cfg.dataset, cluster.model_copy(update={"queue": queue}))
    annotations = {MAX_RUN_ANNOTATION: str(cfg.flex_start_max_run_s)} \
        if cfg.flex_start and cfg.flex_start_max_run_s else None
    pod_annotations = {TOPOLOGY_ANNOTATIONS[cfg.topology]: cfg.topology_level} if cfg.topology else None
    [role] = app_def(cfg).roles
    js = jobset.from_role(role, name=cfg.run, namespace=check_name(cluster.namespace, "namespace"), nodes=hi,
                          container=COMPONENT, permanent_exit=EXIT_PERMANENT, max_restarts=cfg.job_retries(),
                          ttl_seconds=cluster.ttl_seconds_after_finished, labels=top, template_labels=own,
                          annotations=annotations, pod_annotations=pod_annotations, suspend=bool(queue))
    for pod in jobset.pod_templates(js):
        _patch_pod_spec(pod["spec"], cfg)
    return [stamp(js)]


def render_volcano(cfg: TrainConfig) -> list[dict[str, Any]]:
    """The Volcano Job, as TorchX renders it, patched for GKE."""
    from torchx.schedulers.kubernetes_scheduler import create_scheduler

    cluster = cfg.cluster
    check_run_id(cfg)
    app = app_def(cfg)
    opts = {"namespace": check_name(cluster.namespace, "namespace"),
            "queue": check_name(cluster.queue or DEFAULT_VOLCANO_QUEUE, "Volcano queue name"),
            "service_account": cluster.service_account}
    if cluster.priority_class:
        opts["priority_class"] = cluster.priority_class
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchX warns that Volcano retries are imperfect; we restart in torchrun
        info = create_scheduler("laclip").submit_dryrun(app, opts)
    job = as_json(copy.deepcopy(info.request.resource))  # V1Pod models -> dicts
    # TorchX names the job <app>-<random>; use the run id so kubectl and laclip agree
    job = _replace(job, job["metadata"]["name"], cfg.run)
    own = labels(COMPONENT, cfg.run, cfg.dataset)
    job = {"apiVersion": job["apiVersion"], "kind": job["kind"],
           "metadata": {"name": cfg.run, "namespace": cluster.namespace, "labels": dict(own)},
           "spec": job["spec"]}
    job["spec"]["ttlSecondsAfterFinished"] = cluster.ttl_seconds_after_finished
    retries = cfg.job_retries()  # TorchX sets max_restarts; on Spot preemptions need more (TrainConfig)
    job["spec"]["maxRetry"] = retries
    for task in job["spec"]["tasks"]:
        task["maxRetry"] = retries
        # Volcano takes the first task policy that matches a pod's end: the permanent exit code
        # must come before TorchX's "PodFailed -> RestartJob", or a typo would restart the Job.
        task["policies"] = [{"exitCode": EXIT_PERMANENT, "action": "TerminateJob"}] + task.get("policies", [])
        template = task["template"]
        template["metadata"].setdefault("labels", {}).update(own)
        _patch_pod_spec(template["spec"], cfg)
    return [stamp(job)]


def pod_templates(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod templates of a rendered JobSet or Volcano Job, each as a standalone Pod (what tests
    validate against the Kubernetes schema)."""
    if job["kind"] == jobset.KIND:
        return jobset.pod_templates(job)
    return [{"apiVersion": "v1", "kind": "Pod", "metadata": t["template"]["metadata"], "spec": t["template"]["spec"]}
            for t in job["spec"]["tasks"]]
