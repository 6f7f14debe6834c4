"""`laclip submit train`: a TorchX dist.ddp AppDef, rendered as a Volcano Job for GKE
(--dry-run prints it), run here through TorchX's local_cwd scheduler (--local), or created."""

from __future__ import annotations

import os
import sys
import threading
from typing import Optional

import typer

from laclip.errors import LaclipError, UsageError
from laclip_cli.console import err, out, require_bucket, show_estimate
from laclip_cli.state import state
from laclip_cli.submit import app


def build_config(dataset: str, preset_name: Optional[str], run: Optional[str], **values):
    """TrainConfig from a preset (default: the dataset's, else cc12m's recipe) and explicit flags."""
    from laclip.config import ClusterOptions
    from laclip.data.registry import check_name
    from laclip.train.config import PRESETS, preset
    from laclip_jobs.common import new_run_id

    check_name(dataset)
    name = preset_name or (dataset if dataset in PRESETS else "cc12m")
    explicit = {k: values.pop(k) for k in list(values) if k in ClusterOptions.model_fields}
    cluster = ClusterOptions(**{k: v for k, v in explicit.items() if v is not None})  # unset: the preset's
    tag = "laclip" if values.get("augment", "laclip") != "none" and values.get("rewrites") else "clip"
    run = run or new_run_id(f"train-{tag}", dataset)
    values["dataset"] = dataset
    return preset(name, run=run, cluster=cluster, **values)


def run_local(cfg, root: Optional[str] = None, nproc: Optional[int] = None, log_dir: Optional[str] = None,
              echo: bool = True) -> str:
    """Run the job's AppDef with TorchX's local_cwd scheduler; returns the run's checkpoint folder
    (a store URL). Raises LaclipError when training fails."""
    from torchx.runner import get_runner
    from torchx.specs import AppState

    from laclip.storage import open_store, resolve_root
    from laclip.train.checkpoint import run_folder
    from laclip_jobs.train import app_def

    root = resolve_root(root or cfg.root)
    store = open_store(root)
    if nproc:
        cfg = cfg.model_copy(update={"procs_per_node": nproc})
    app = app_def(cfg, root, local=True, image=os.getcwd())
    # torchrun lives beside this Python, which may not be on PATH (a venv used without activating it)
    app.roles[0].env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    with get_runner() as runner:
        opts = {"log_dir": log_dir} if log_dir else {}
        handle = runner.run(app, scheduler="local_cwd", cfg=opts)
        pump = None
        if echo:
            out.print(f"[bold]local run[/] {cfg.run}: {handle}")
            pump = threading.Thread(target=_echo_logs, args=(runner, handle, app.roles[0].name), daemon=True)
            pump.start()
        status = runner.wait(handle, wait_interval=1)
        if pump is not None:
            pump.join(timeout=5)
    if status is None or status.state != AppState.SUCCEEDED:
        raise LaclipError(f"training run {cfg.run} failed locally ({status.state if status else 'unknown'}); "
                          "its output is above")
    return store.url_of(run_folder(cfg.run))


def _echo_logs(runner, handle, role: str) -> None:
    """TorchX's local scheduler writes the replicas' output to files; show it as it grows."""
    try:
        for line in runner.log_lines(handle, role, k=0, should_tail=True):
            out.print(line.rstrip("\n"), markup=False, highlight=False, soft_wrap=True)
    except Exception as exc:  # logs are a convenience: never fail the run over them
        err.print(f"[yellow]log streaming stopped:[/] {exc}")


def _create(objects: list[dict], namespace: str, context: Optional[str]) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from laclip_cli.kube import ClusterError, connect
    from laclip_jobs.common import check_images_configured

    check_images_configured(objects)
    api = client.CustomObjectsApi(connect(context))
    for obj in objects:
        group, version = obj["apiVersion"].split("/")
        try:
            api.create_namespaced_custom_object(group, version, namespace, "jobs", obj)
        except ApiException as exc:
            name = obj["metadata"]["name"]
            if exc.status == 404:
                raise ClusterError(f"cannot create Volcano Job {name}: the batch.volcano.sh CRD or namespace "
                                   f"{namespace!r} is missing; install Volcano and apply manifests/") from None
            if exc.status == 409:
                raise ClusterError(f"Volcano Job {name} already exists in {namespace!r}: pick another --run") from None
            raise ClusterError(f"creating Volcano Job {name}: the API server answered "
                               f"{exc.status} {exc.reason}") from None
        out.print(f"created volcano job [bold]{obj['metadata']['name']}[/] in namespace {namespace}")


@app.command("train")
def train(
    dataset: str = typer.Option("demo", "--dataset", help="Dataset under datasets/ (cc3m, cc12m, laion400m, demo...)."),
    rewrites: Optional[str] = typer.Option(None, "--rewrites",
                                           help="Rewrite id under rewrites/<dataset>/ (none: plain CLIP)."),
    preset_name: Optional[str] = typer.Option(
        None, "--preset", help="Recipe: cc3m, cc12m, redcaps, laion400m, demo [default: the dataset's]."),
    model: Optional[str] = typer.Option(None, "--model", help="open_clip model name, e.g. ViT-B-16 or laclip-tiny."),
    augment: Optional[str] = typer.Option(
        None, "--augment", help="laclip: draw each text from original+rewrites; none: CLIP."),
    loss: Optional[str] = typer.Option(None, "--loss", help="clip or multitext."),
    texts_per_image: Optional[int] = typer.Option(None, "--texts-per-image",
                                                  help="Texts per image with --loss multitext."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Per-process batch size."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Total steps (default: from the preset's epochs)."),
    epochs: Optional[float] = typer.Option(None, "--epochs"),
    lr: Optional[float] = typer.Option(None, "--lr"),
    wd: Optional[float] = typer.Option(None, "--wd"),
    warmup_steps: Optional[int] = typer.Option(None, "--warmup-steps"),
    precision: Optional[str] = typer.Option(None, "--precision", help="auto, amp_bf16, amp, fp32."),
    grad_checkpointing: Optional[bool] = typer.Option(None, "--grad-checkpointing/--no-grad-checkpointing"),
    local_loss: Optional[bool] = typer.Option(None, "--local-loss/--no-local-loss"),
    gather_with_grad: Optional[bool] = typer.Option(None, "--gather-with-grad/--no-gather-with-grad"),
    workers: Optional[int] = typer.Option(None, "--workers", help="Data loader workers per process."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="Steps between checkpoints."),
    keep_last: Optional[int] = typer.Option(None, "--keep-last", help="Checkpoints kept."),
    resume: Optional[str] = typer.Option(
        None, "--resume", help="latest, none, or a checkpoint path in the store (none and a path apply only "
        "while the run has no checkpoint of its own; restarts continue from its newest)."),
    seed: Optional[int] = typer.Option(None, "--seed"),
    run: Optional[str] = typer.Option(None, "--run", help="Run id [default: train-<tag>-<dataset>-<time>-<rand>]."),
    nodes: str = typer.Option("1", "--nodes", help="Nodes: N or MIN:MAX (elastic)."),
    gpus_per_node: Optional[int] = typer.Option(None, "--gpus-per-node",
                                                help="GPUs (= processes) per node [default 1; demo 0]."),
    accelerator: Optional[str] = typer.Option(None, "--accelerator", help="nvidia-tesla-a100 or nvidia-a100-80gb."),
    spot: Optional[bool] = typer.Option(None, "--spot/--no-spot", help="Run on Spot VMs."),
    queue: Optional[str] = typer.Option(None, "--queue", help="Volcano queue [default: default]."),
    priority_class: Optional[str] = typer.Option(None, "--priority-class"),
    namespace: Optional[str] = typer.Option(None, "--namespace"),
    service_account: Optional[str] = typer.Option(
        None, "--service-account", help="Kubernetes SA bound to a GCP SA (Workload Identity)."),
    image: Optional[str] = typer.Option(None, "--image"),
    cpu: Optional[str] = typer.Option(None, "--cpu", help="CPU request per node."),
    memory: Optional[str] = typer.Option(None, "--memory", help="Memory per node, e.g. 600Gi."),
    max_restarts: Optional[int] = typer.Option(None, "--max-restarts", help="torchrun restarts of the worker group."),
    max_job_retries: Optional[int] = typer.Option(
        None, "--max-job-retries", help="Volcano restarts of the whole Job after a pod fails or is evicted, each "
        "from the newest checkpoint [default: --max-restarts; 20 with --spot]."),
    eval_datasets: Optional[str] = typer.Option(
        None, "--eval-datasets", help="Comma-separated eval datasets: an eval Job on each checkpoint "
        "(needs manifests/components/train-submits-eval)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the Volcano Job as YAML; contact nothing."),
    local: bool = typer.Option(False, "--local", help="Run here with TorchX's local scheduler (torchrun)."),
    nproc: Optional[int] = typer.Option(None, "--nproc", help="Processes with --local [default: 1]."),
    context: Optional[str] = typer.Option(None, "--context", help="kubeconfig context."),
) -> None:
    """Train CLIP / LaCLIP: elastic DDP (torchrun via TorchX) on GKE A100 node pools."""
    from laclip.storage import resolve_root

    if dry_run and local:
        raise UsageError("--dry-run and --local exclude each other")
    if nproc is not None and not local:
        raise UsageError("--nproc sets the processes of a --local run; on the cluster, --gpus-per-node sets them")
    from pydantic import ValidationError

    from laclip.config import explain

    try:
        cfg = build_config(dataset, preset_name, run, rewrites=rewrites, model=model, augment=augment, loss=loss,
                           texts_per_image=texts_per_image, batch_size=batch_size, steps=steps, epochs=epochs,
                           lr=lr, wd=wd, warmup_steps=warmup_steps, precision=precision,
                           grad_checkpointing=grad_checkpointing, local_loss=local_loss,
                           gather_with_grad=gather_with_grad, workers=workers, checkpoint_every=checkpoint_every,
                           keep_last=keep_last, resume=resume, seed=seed, nodes=nodes, max_restarts=max_restarts,
                           max_job_retries=max_job_retries,
                           gpus=gpus_per_node, accelerator=accelerator, spot=spot, queue=queue,
                           priority_class=priority_class, namespace=namespace, service_account=service_account,
                           image=image, cpu=cpu, memory=memory,
                           eval_datasets=[d.strip() for d in eval_datasets.split(",") if d.strip()]
                           if eval_datasets else None)
    except ValidationError as exc:
        raise UsageError(explain(exc)) from None
    from laclip.train.model_names import check_model_name

    check_model_name(cfg.model)
    root = resolve_root(state.root)
    if cfg.eval_datasets:
        _check_eval_request(cfg, root)
    if local:
        folder = run_local(cfg, root, nproc or 1)
        out.print(f"[green]done[/]: checkpoints in {folder}/")
        return
    from laclip_jobs.common import dump_yaml
    from laclip_jobs.train import render

    require_bucket(root, dry_run)  # pods would train on nothing and keep checkpoints on their own disks
    objects = render(cfg, root)
    est = _estimate(cfg)
    show_estimate(est, dry_run)
    if dry_run:
        sys.stdout.write(dump_yaml(objects))
        return
    _create(objects, cfg.cluster.namespace, context)


def _estimate(cfg):
    """The `laclip plan` figure for this run at its largest size (None on CPU or off-preset)."""
    from laclip.plan import try_estimate

    if cfg.cluster.gpus < 1:
        return None
    gpus = cfg.nnodes()[1] * cfg.nproc()
    if cfg.steps:  # a fixed step budget: the samples it will see, once
        return try_estimate("train", cfg.dataset, gpus, model=cfg.model, epochs=1,
                            samples=cfg.steps * cfg.batch_size * gpus)
    return try_estimate("train", cfg.dataset, gpus, model=cfg.model, epochs=cfg.epochs)


def _check_eval_request(cfg, root: str) -> None:
    """Render the eval Job the run will ask for, so a bad --eval-datasets fails now, not at step N."""
    from laclip.eval.config import EvalConfig
    from laclip_jobs.eval import render_eval_job

    try:
        render_eval_job(EvalConfig.for_checkpoint(f"{root.rstrip('/')}/checkpoints/{cfg.run}/step_1",
                                                  datasets=cfg.eval_datasets))
    except (ValueError, LaclipError) as exc:
        raise UsageError(f"--eval-datasets: {exc}".replace("\n", " ")) from None
