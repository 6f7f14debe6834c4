"""Render a training run: the TorchX dist.ddp AppDef, run by the cluster as the object of the backend
`--scheduler` names (laclip_jobs.backends.TRAIN: a JobSet admitted by Kueue by default), with the
same GKE patches whichever it is. Pure functions of TrainConfig; no torch, nothing contacted.

The AppDef is the one definition of the job: TorchX owns the torchrun command line (c10d
rendezvous on the first node, elastic `--nnodes MIN:MAX` under Volcano). We add what TorchX cannot
express: torchrun `--max-restarts` under laclip.train.launch (which ends the run on a permanent
error instead of letting torchrun retry it), the GPU pool's nodeSelector and tolerations, Workload
Identity, non-root security contexts, /dev/shm and /tmp, the laclip labels, the run id as the
object name, and failure policies that end the job on EXIT_PERMANENT instead of restarting it.

Why JobSet by default: on GKE, multi-node GPU training is a JobSet admitted by Kueue (xpk and
Kubeflow Trainer v2 build on it); Kueue cannot admit a Volcano Job, so only what Kueue admits goes
through the quota, flex-start provisioning and topology-aware placement that a team's GPUs sit
behind. Volcano stays for clusters that run it, and for elastic node counts.
"""

from __future__ import annotations

import re
from typing import Any

from laclip import layout
from laclip.errors import UsageError
from laclip.train.config import TrainConfig
from laclip_jobs import backends
from laclip_jobs.backends.base import ROLE, TrainRequest
from laclip_jobs.common import (FLEX_START_QUEUE, MAX_RUN_ANNOTATION, TOPOLOGY_ANNOTATIONS, apply_gke_pod_spec,
                                base_env, check_name, image_for, kubelet_literal, labels, object_labels, resources)

COMPONENT = "train"
ENTRY_MODULE = "laclip.train.main"
LAUNCHER = "python -m laclip.train.launch"  # runs torchrun (laclip.train.launch)
# One pod template per backend object whatever the size; this bounds a typo, not the object.
MAX_NODES = 15_000
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
    if not local:
        backends.scheduler(cfg.scheduler).check_train(cfg, lo, hi)
        if hi > MAX_NODES:
            raise UsageError(f"--nodes {cfg.nodes}: at most {MAX_NODES} nodes")
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


def longest_pod_name(cfg: TrainConfig, run: str | None = None) -> str:
    """The longest pod name the scheduler derives from the run id for cfg's node count."""
    return backends.scheduler(cfg.scheduler).longest_pod_name(cfg.run if run is None else run, cfg.nnodes()[1])


def run_id_limit(cfg: TrainConfig) -> int:
    """How long a run id may be for cfg's scheduler and node count (the CLI's automatic ids fit it)."""
    return NAME_LIMIT - len(longest_pod_name(cfg, ""))


def check_run_id(cfg: TrainConfig) -> str:
    check_name(cfg.run, "run id")
    longest = longest_pod_name(cfg)
    if len(longest) > NAME_LIMIT:
        raise UsageError(
            f"run id {cfg.run!r} is {len(cfg.run)} characters long: with --scheduler {cfg.scheduler} and "
            f"{cfg.nnodes()[1]} node(s) its longest pod name ({backends.scheduler(cfg.scheduler).shown(longest)}) "
            f"would be {len(longest)} characters, over Kubernetes' limit of {NAME_LIMIT}; use a --run of at most "
            f"{run_id_limit(cfg)} characters (or leave --run out for one that fits)")
    return cfg.run


def _patch_pod_spec(spec: dict[str, Any], cfg: TrainConfig) -> None:
    """The GKE patches of a training pod, whichever backend rendered it."""
    if not spec.get("nodeSelector"):
        spec.pop("nodeSelector", None)
    # TorchX mounts an unbounded memory /dev/shm; ours has the size limit of ClusterOptions.shm
    spec["volumes"] = [v for v in spec.get("volumes", []) if v.get("name") != "dshm"]
    for container in spec["containers"]:
        container["resources"] = resources(cfg.cluster)
    apply_gke_pod_spec(spec, cfg.cluster, flex_start=cfg.flex_start)


def render(cfg: TrainConfig) -> list[dict[str, Any]]:
    """The training run as the backend of cfg.scheduler runs it."""
    backend = backends.scheduler(cfg.scheduler)
    cluster = cfg.cluster
    check_name(cluster.namespace, "namespace")
    if (cfg.flex_start or cfg.topology) and not backend.kueue:
        kueued = " or ".join(b.name for b in backends.TRAIN.values() if b.kueue)
        raise UsageError(f"{'--flex-start' if cfg.flex_start else '--topology'} needs --scheduler {kueued}: it works "
                         f"through Kueue, which cannot admit a {backend.resource.name}")
    app = app_def(cfg)  # checks the node count against the backend
    check_run_id(cfg)
    lo, hi = cfg.nnodes()
    queue = (cluster.queue or (FLEX_START_QUEUE if cfg.flex_start else None)) if backend.kueue else None
    req = TrainRequest(
        cfg=cfg, app=app, nodes=hi, template_labels=labels(COMPONENT, cfg.run, cfg.dataset),
        labels=object_labels(COMPONENT, cfg.run, cfg.dataset, cluster.model_copy(update={"queue": queue})),
        annotations={MAX_RUN_ANNOTATION: str(cfg.flex_start_max_run_s)}
        if cfg.flex_start and cfg.flex_start_max_run_s else None,
        pod_annotations={TOPOLOGY_ANNOTATIONS[cfg.topology]: cfg.topology_level} if cfg.topology else None,
        suspend=bool(queue), retries=cfg.job_retries(), patch_pod=lambda spec: _patch_pod_spec(spec, cfg))
    return [backend.render_train(req)]


def pod_templates(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod templates of a rendered training object, each as a standalone Pod (what tests
    validate against the Kubernetes schema)."""
    return backends.for_object(obj).pod_templates(obj)
