"""`laclip submit train`: the TorchX dist.ddp AppDef, rendered for GKE by the backend --scheduler names
(laclip_jobs.backends; by default a JobSet, Kueue's unit of admission for --queue, --flex-start,
--topology); --dry-run prints it, --local runs the AppDef's own torchrun command here whatever the
scheduler."""

from __future__ import annotations

import os
import secrets
from typing import Callable, Optional

from laclip.errors import EXIT_PERMANENT, LaclipError, UsageError
from laclip.rewrite.draw import parse_text_probs
from laclip.train.config import TrainConfig
from laclip_cli.console import out
from laclip_cli.stage import Context, Flag, Option, Stage, cluster_flags, comma_list, fields, lazy
from laclip_jobs import backends


QUEUE_HELP = ("Kueue LocalQueue of the run (it waits there, suspended, for admission); with "
              "--scheduler volcano the Volcano queue [default: none; laclip-flex with --flex-start; Volcano: default]")
SCHEDULER_HELP = "how the cluster runs it: " + "; ".join(f"{name}: {b.help}" for name, b in backends.TRAIN.items())
FLAGS = [
    *fields("dataset", "rewrites", "preset", "model", "augment"),
    Flag("text_probs", ("--text-probs",), parse=parse_text_probs, kind=str),
    *fields("loss", "texts_per_image", "batch_size", "accum_freq",
            "steps", "epochs", "lr", "wd", "warmup_steps", "precision", "grad_checkpointing", "compile", "local_loss",
            "gather_with_grad", "workers", "checkpoint_every", "keep_last", "log_every", "resume", "seed", "run",
            "nodes", "scheduler", "flex_start", "topology", "topology_level", scheduler=SCHEDULER_HELP),
    Flag("cluster.gpus", ("--gpus-per-node",), "GPUs (= processes) per node [default: the preset's; demo 0]"),
    *cluster_flags("accelerator", "spot", "queue", "priority_class", "namespace", "service_account", "image", "cpu",
                   "memory", queue=QUEUE_HELP, cpu="CPU request per node [default: the preset's]",
                   memory="memory per node, e.g. 600Gi [default: the preset's]"),
    *fields("max_restarts", "max_job_retries"),
    Flag("eval_datasets", ("--eval-datasets",), parse=comma_list, kind=str),
]
OPTIONS = [Option("nproc", ("--nproc",), Optional[int], None, "Processes with --local [default: 1].")]


def build(stage: Stage, values: dict, sets: list[str], ctx: Context) -> TrainConfig:
    from laclip.config import load_config, merge
    from laclip_jobs.common import check_name, new_run_id

    nproc = ctx.options.get("nproc")
    if nproc is not None and not ctx.local:
        raise UsageError("--nproc sets the processes of a --local run; on the cluster, --gpus-per-node sets them")
    if nproc is not None and not 1 <= nproc <= 64:
        raise UsageError(f"invalid --nproc {nproc}: between 1 and 64 processes")
    # A fresh owner token per submission: its own restarts may take the run's lease, nothing else may.
    defaults = {"preset": "auto", "root": ctx.root, "run": "-", "owner": secrets.token_hex(8)}
    cfg = load_config(stage.config, merge(defaults, values), sets=sets, origin=ctx.origin)
    backends.scheduler(cfg.scheduler)  # a typo'd --scheduler is refused by --local and --dry-run too
    if cfg.run == "-":  # as long as the scheduler's pod names allow for this many nodes
        from laclip_jobs.train import run_id_limit

        tag = "laclip" if cfg.augment != "none" and cfg.rewrites else "clip"
        cfg = cfg.model_copy(update={"run": new_run_id(f"train-{tag}", cfg.dataset, limit=min(55, run_id_limit(cfg)))})
    check_name(cfg.run, "run id")
    from laclip.train.model_names import check_model_name

    check_model_name(cfg.model)  # a typo'd --model is refused by --dry-run too
    if nproc or (ctx.local and cfg.procs_per_node is None):  # --local: one process unless --nproc says more,
        cfg = cfg.model_copy(update={"procs_per_node": nproc or 1})  # not one per GPU of the preset's pod
    return cfg


def check(cfg: TrainConfig, ctx: Context) -> None:
    """What the pods would find only after starting: a typo'd --rewrites, a missing dataset."""
    from laclip.train.inputs import check_inputs

    check_inputs(cfg)


def estimate(cfg: TrainConfig):
    """The `laclip plan` figure for this run at its largest size (None on CPU or off-preset)."""
    from laclip.plan import try_estimate

    if cfg.cluster.gpus < 1:
        return None
    gpus = cfg.nnodes()[1] * cfg.nproc()
    if cfg.steps:  # a fixed step budget: the samples it will see, once
        return try_estimate("train", cfg.dataset, gpus, model=cfg.model, epochs=1,
                            samples=cfg.steps * cfg.step_samples(gpus))
    return try_estimate("train", cfg.dataset, gpus, model=cfg.model, epochs=cfg.epochs)


def submitted(cfg: TrainConfig, objects: list[dict], outcomes: list, ctx: Context) -> None:
    from laclip_jobs.backends import for_object

    ns = cfg.cluster.namespace
    kind = for_object(objects[0]).resource.kubectl
    out.print(f"watch: laclip status {cfg.run}  (kubectl get {kind},pods -n {ns} "
              f"-l laclip.dev/run={cfg.run})", markup=False, soft_wrap=True)


def train_here(cfg: TrainConfig, echo: Callable[[str], None] | None = None) -> str:
    """Train cfg here through the AppDef's own torchrun command (in a process group this process
    owns); the run's checkpoint folder (a store URL). Raises LaclipError when training fails."""
    from laclip import layout
    from laclip.storage import open_store
    from laclip.train.inputs import check_inputs
    from laclip_cli.local import run_role
    from laclip_jobs.train import app_def

    check_inputs(cfg)  # permanent problems end here, before torchrun starts
    rc = run_role(app_def(cfg, local=True, image=os.getcwd()), echo=echo)
    if rc:
        kind = UsageError if rc == EXIT_PERMANENT else LaclipError
        raise kind(f"training run {cfg.run} failed (exit {rc}); its output is above")
    return open_store(cfg.root).url_of(layout.run_folder(cfg.run))


def run_local(cfg: TrainConfig, ctx: Context) -> None:
    out.print(f"local run {cfg.run}: {cfg.procs_per_node or 1} process(es), store {cfg.root}", markup=False,
              soft_wrap=True)
    folder = train_here(cfg)
    out.print(f"done: checkpoints in {folder}/", markup=False, soft_wrap=True)


STAGE = Stage(
    name="train", help="Train CLIP / LaCLIP: DDP (torchrun via TorchX) on GKE GPU node pools, as a JobSet under "
                       "Kueue or another --scheduler backend.",
    config=TrainConfig, flags=FLAGS, options=OPTIONS, build=build, check=check, render=lazy("laclip_jobs.train:render"),
    run_local=run_local, estimate=estimate, submitted=submitted,
)
