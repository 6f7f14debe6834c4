"""`laclip submit eval --checkpoint ...`: print the Job (--dry-run), run it here (--local), or create it.

`run_local(cfg)` is also what the one-command pipeline calls: it runs the pod's entrypoint
(`python -m laclip.eval.worker`) once per dataset index, as the Indexed Job would, and returns
the result records written for the checkpoint.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Optional

import typer

from laclip.errors import LaclipError, UsageError
from laclip_cli.console import err, out, require_bucket, show_estimate
from laclip_cli.state import state


def run_local(cfg, *, in_process: bool = False, quiet: bool = False) -> list[dict]:
    """Evaluate cfg here; returns the result records of cfg's checkpoint (new and earlier ones).

    Default: one `python -m laclip.eval.worker` process per dataset, with the pod's
    environment (LACLIP_ROOT, JOB_COMPLETION_INDEX). `in_process=True` skips the interpreter
    start-up (about 3 s each) for callers that already imported torch.
    """
    if in_process:
        from laclip.eval.worker import run_eval

        run_eval(cfg)
    else:
        payload = cfg.model_dump_json(exclude={"cluster"})
        for index in range(len(cfg.datasets)):
            env = {**os.environ, "LACLIP_ROOT": cfg.root, "LACLIP_RUN": cfg.run,
                   "JOB_COMPLETION_INDEX": str(index)}
            proc = subprocess.run([sys.executable, "-m", "laclip.eval.worker", "--config", payload], env=env,
                                  stdout=subprocess.DEVNULL if quiet else None,
                                  stderr=subprocess.PIPE if quiet else None, text=True)
            if proc.returncode:
                detail = (proc.stderr or "").strip().splitlines()[-1:] if quiet else []
                raise LaclipError(f"eval of {cfg.datasets[index]!r} failed (exit {proc.returncode})"
                                  + (f": {detail[0]}" if detail else ""))
    return _records(cfg)


def build_config(checkpoint: str, **options):
    from pydantic import ValidationError

    from laclip.config import ClusterOptions, flag_error
    from laclip.eval.config import EvalConfig

    cluster_keys = set(ClusterOptions.model_fields)
    cluster = {k: v for k, v in options.items() if k in cluster_keys and v is not None}
    rest = {k: v for k, v in options.items() if k not in cluster_keys and v is not None}
    fewshot = {"episodes": rest.pop("episodes")} if "episodes" in rest else {}
    try:
        return EvalConfig.for_checkpoint(checkpoint, root=state.root, cluster=ClusterOptions(**cluster),
                                         fewshot=fewshot, **rest)
    except ValidationError as exc:  # pydantic: an unknown task name, an empty dataset list...
        raise UsageError(flag_error(exc)) from None
    except ValueError as exc:  # pydantic: an unknown task name, a negative batch size...
        raise UsageError(str(exc).replace("\n", " ")) from None


def eval_command(
    checkpoint: str = typer.Option(..., "--checkpoint", "-c",
                                   help="gs://BUCKET/.../checkpoints/RUN/step_N[.pt], a local path, or RUN/step_N."),
    model: Optional[str] = typer.Option(None, help="open_clip model name (default: the checkpoint's config.model)."),
    datasets: str = typer.Option("demo-eval", help="Comma-separated names under datasets/ or folder URLs."),
    tasks: str = typer.Option("zeroshot,fewshot,linear_probe,retrieval", help="Comma-separated tasks."),
    templates: str = typer.Option("auto", help="auto | clip80 | dataset | path of a template file ({c} = class)."),
    classnames: str = typer.Option("auto", help="auto | imagenet1k | path of a class-name file."),
    episodes: Optional[int] = typer.Option(None, min=1, help="Few-shot episodes (default: 600)."),
    batch_size: Optional[int] = typer.Option(None, min=1, help="Images per batch (default: 256)."),
    workers: Optional[int] = typer.Option(None, min=0, help="Data-loader processes (default: 4)."),
    precision: Optional[str] = typer.Option(None, help="fp32 | amp (default: fp32)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the Job as YAML and contact nothing."),
    local: bool = typer.Option(False, "--local", help="Run the pods' entrypoint here, one process per dataset."),
    wait: bool = typer.Option(False, "--wait", help="Wait for the Job to finish, then print the results."),
    timeout: int = typer.Option(6 * 3600, help="Seconds --wait waits before giving up."),
    namespace: Optional[str] = typer.Option(None, help="Kubernetes namespace (default: laclip)."),
    image: Optional[str] = typer.Option(None, help="Container image (default: the eval image)."),
    gpus: Optional[int] = typer.Option(None, min=0, max=1, help="GPUs per pod: 1, or 0 for CPU nodes."),
    accelerator: Optional[str] = typer.Option(None, help="nvidia-tesla-a100 | nvidia-a100-80gb."),
    spot: Optional[bool] = typer.Option(None, "--spot/--no-spot", help="Run on Spot VMs."),
    queue: Optional[str] = typer.Option(None, help="Kueue LocalQueue (the Job starts suspended)."),
    priority_class: Optional[str] = typer.Option(None, help="PriorityClass of the pods."),
    service_account: Optional[str] = typer.Option(None, help="Kubernetes ServiceAccount (Workload Identity)."),
) -> None:
    """Evaluate a checkpoint: zero-shot, few-shot kNN, linear probe, retrieval."""
    from laclip_jobs.common import dump_yaml
    from laclip_jobs.eval import render_eval_job

    if dry_run and local:
        raise UsageError("--dry-run and --local exclude each other")
    cfg = build_config(
        checkpoint, model=model, datasets=datasets, tasks=tasks, templates=templates, classnames=classnames,
        episodes=episodes, batch_size=batch_size, workers=workers, precision=precision, namespace=namespace,
        image=image, gpus=gpus, accelerator=accelerator, spot=spot, queue=queue, priority_class=priority_class,
        service_account=service_account,
    )
    objects = render_eval_job(cfg)  # also checks names and labels before anything runs
    if not local:
        for path in dict.fromkeys((cfg.checkpoint_root, cfg.root)):
            require_bucket(path, dry_run, "a gs:// checkpoint and --root gs://BUCKET/PREFIX")
    est = None if local else _estimate(cfg)
    show_estimate(est, dry_run)
    if dry_run:
        sys.stdout.write(dump_yaml(objects))
        return
    if local:
        from laclip.eval.datasets import open_eval_dataset
        from laclip.storage import open_store

        store = open_store(cfg.root)
        for ref in cfg.datasets:  # a clear error now rather than from a child process
            open_eval_dataset(store, ref)
        start = time.perf_counter()
        records = run_local(cfg)
        _print_records(cfg, records)
        out.print(f"{len(records)} results under {cfg.root.rstrip('/')}/{cfg.out_dir}/ "
                  f"in {time.perf_counter() - start:.1f}s")
        return
    from laclip_jobs.eval import create_job

    name, outcome = create_job(objects[0])
    ns = cfg.cluster.namespace
    if outcome == "created":
        out.print(f"created Job {ns}/{name}; follow it with "
                  f"`kubectl get pods -n {ns} -l laclip.dev/run={cfg.run}` or `laclip status {cfg.run}`")
    else:
        why = "same request" if outcome == "same" else "this account may not read it to compare"
        out.print(f"Job {ns}/{name} already exists ({why}): not created again; `laclip status {cfg.run}` follows it",
                  soft_wrap=True)
    if wait:
        _wait(name, cfg.cluster.namespace, timeout)
        _print_records(cfg, _records(cfg))


def _records(cfg) -> list[dict]:
    from laclip.eval.results import load_rows
    from laclip.storage import open_store

    names = {d.rstrip("/").rsplit("/", 1)[-1] for d in cfg.datasets}
    return [r.record for r in load_rows(open_store(cfg.root), cfg.run)
            if r.checkpoint == cfg.checkpoint_name and r.dataset in names]


def _wait(name: str, namespace: str, timeout: int, poll: float = 15.0, api_client=None) -> None:
    """Poll the Job until it completes (return) or fails (raise)."""
    from kubernetes import client

    from laclip_jobs.eval import connect

    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    api = client.BatchV1Api(api_client or connect())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:  # the Job itself, not jobs/status: the laclip-user Role grants `get` on jobs only
            job = api.read_namespaced_job(name, namespace)
        except ApiException as exc:
            if exc.status in (403, 404):
                raise LaclipError(f"cannot read Job {namespace}/{name}: {exc.status} {exc.reason}; "
                                  "apply manifests/ (Role laclip-user) or check the namespace") from None
            err.print(f"Job {name}: the API server answered {exc.status} {exc.reason}; asking again")
            job = None
        except HTTPError as exc:  # a network blip while waiting hours is not a failed eval
            err.print(f"Job {name}: cannot reach the API server ({type(exc).__name__}); asking again")
            job = None
        if job is None:
            time.sleep(poll)
            continue
        for cond in (job.status.conditions or []):
            if cond.status == "True" and cond.type == "Complete":
                out.print(f"Job {name} complete")
                return
            if cond.status == "True" and cond.type == "Failed":
                raise LaclipError(f"Job {namespace}/{name} failed: {cond.reason}: {cond.message or ''}; "
                                  f"see `laclip logs` or `kubectl logs -n {namespace} job/{name}`")
        err.print(f"Job {name}: {job.status.active or 0} active, {job.status.succeeded or 0} succeeded, "
                  f"{job.status.failed or 0} failed")
        time.sleep(poll)
    raise LaclipError(f"Job {namespace}/{name} did not finish within {timeout}s (it keeps running)")


def _print_records(cfg, records: list[dict]) -> None:
    from laclip.eval.results import HEADLINE

    for rec in records:
        metrics = rec["metrics"]
        headline = HEADLINE.get(rec["task"], "acc1")
        value = metrics.get(headline)
        shown = "n/a" if value is None else f"{100 * value:.2f}"
        ci = metrics.get("acc1_ci95")
        out.print(f"{rec['dataset']:>16} {rec['task']:<24} {headline} {shown}" + (f" ±{100 * ci:.2f}" if ci else ""))
    if not records:
        out.print("no results yet")


def _register() -> None:
    from laclip_cli.submit import app

    app.command("eval")(eval_command)


_register()


def _estimate(cfg):
    """The `laclip plan eval` figure, which models the ImageNet-1k suite (train split embedded
    for the linear probe): printed when the Job evaluates ImageNet-1k on a GPU, else None."""
    from laclip.eval.datasets import IMAGENET_NAMES
    from laclip.plan import EVAL_IMAGES, try_estimate

    names = {d.rstrip("/").rsplit("/", 1)[-1].lower() for d in cfg.datasets}
    if cfg.cluster.gpus < 1 or not names & set(IMAGENET_NAMES):
        return None
    # one pod per dataset: the ImageNet pod carries the work on its own GPU(s)
    return try_estimate("eval", "imagenet1k", cfg.cluster.gpus, model=cfg.model, samples=EVAL_IMAGES)
