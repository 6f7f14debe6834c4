"""`laclip submit train`: the TorchX dist.ddp AppDef, rendered for GKE as a JobSet (Kueue's unit of
admission: --queue, --flex-start, --topology) or as TorchX's Volcano Job (--scheduler volcano);
--dry-run prints it, --local runs the AppDef's own torchrun command here whatever the scheduler."""

from __future__ import annotations

import os
import secrets
from typing import Callable, Optional

from laclip.errors import EXIT_PERMANENT, LaclipError, UsageError
from laclip.rewrite.draw import parse_text_probs
from laclip.train.config import TrainConfig
from laclip_cli.console import out
from laclip_cli.stage import Context, Flag, Option, Stage, cluster_flags


def _names(text: str) -> list[str]:
    return [d.strip() for d in text.split(",") if d.strip()]


QUEUE_HELP = ("Kueue LocalQueue of the JobSet (it waits there, suspended, for admission); with --scheduler volcano "
              "the Volcano queue [default: none; laclip-flex with --flex-start; Volcano: default]")
FLAGS = [
    Flag("dataset", ("--dataset",)),
    Flag("rewrites", ("--rewrites",)),
    Flag("preset", ("--preset",)),
    Flag("model", ("--model",)),
    Flag("augment", ("--augment",)),
    Flag("text_probs", ("--text-probs",), parse=parse_text_probs, kind=str),
    Flag("loss", ("--loss",)),
    Flag("texts_per_image", ("--texts-per-image",)),
    Flag("batch_size", ("--batch-size",)),
    Flag("accum_freq", ("--accum-freq",)),
    Flag("steps", ("--steps",)),
    Flag("epochs", ("--epochs",), "training epochs  [default: the preset's]"),
    Flag("lr", ("--lr",), "peak learning rate  [default: the preset's]"),
    Flag("wd", ("--wd",), "weight decay  [default: the preset's]"),
    Flag("warmup_steps", ("--warmup-steps",), "warm-up steps  [default: the preset's warm-up epochs]"),
    Flag("precision", ("--precision",)),
    Flag("grad_checkpointing", ("--grad-checkpointing",), "recompute activations in backward (less memory)"),
    Flag("compile", ("--compile",), "torch.compile the model (slower first steps while it compiles)"),
    Flag("local_loss", ("--local-loss",), "open_clip's local loss (needs --gather-with-grad)"),
    Flag("gather_with_grad", ("--gather-with-grad",), "gather features with their gradients"),
    Flag("workers", ("--workers",)),
    Flag("checkpoint_every", ("--checkpoint-every",)),
    Flag("keep_last", ("--keep-last",)),
    Flag("log_every", ("--log-every",), "steps between metric lines  [default: 20]"),
    Flag("resume", ("--resume",)),
    Flag("seed", ("--seed",), "seeds data order, initialisation and crops  [default: 0]"),
    Flag("run", ("--run",)),
    Flag("nodes", ("--nodes",), "nodes: N, or MIN:MAX (elastic, --scheduler volcano only)  [default: 1]"),
    Flag("scheduler", ("--scheduler",)),
    Flag("flex_start", ("--flex-start",)),
    Flag("topology", ("--topology",)),
    Flag("topology_level", ("--topology-level",)),
    Flag("cluster.gpus", ("--gpus-per-node",), "GPUs (= processes) per node [default: the preset's; demo 0]"),
    *cluster_flags("accelerator", "spot", "queue", "priority_class", "namespace", "service_account", "image", "cpu",
                   "memory", queue=QUEUE_HELP, cpu="CPU request per node [default: the preset's]",
                   memory="memory per node, e.g. 600Gi [default: the preset's]"),
    Flag("max_restarts", ("--max-restarts",)),
    Flag("max_job_retries", ("--max-job-retries",)),
    Flag("eval_datasets", ("--eval-datasets",), parse=_names, kind=str),
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
    cfg = load_config(stage.config, merge(defaults, values), sets=sets, flags=stage.flag_names())
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


def render(cfg: TrainConfig) -> list[dict]:
    from laclip_jobs.train import render as render_job

    return render_job(cfg)


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
    ns = cfg.cluster.namespace
    kind = "jobsets.jobset.x-k8s.io" if cfg.scheduler == "jobset" else "jobs.batch.volcano.sh"
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
                       "Kueue or a Volcano Job.",
    config=TrainConfig, flags=FLAGS, options=OPTIONS, build=build, check=check, render=render,
    run_local=run_local, estimate=estimate, submitted=submitted,
)
