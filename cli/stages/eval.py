"""`laclip submit eval --checkpoint ...`: print the Job (--dry-run), run it here (--local), or create it."""

from __future__ import annotations

import time

from laclip.errors import LaclipError, UsageError
from laclip.eval.config import EvalConfig
from laclip_cli.console import err, out
from laclip_cli.stage import Context, Flag, Option, Stage, cluster_flags, comma_list, fields, lazy


FLAGS = [
    Flag("checkpoint", ("--checkpoint", "-c")),
    *fields("run", "model"),
    Flag("datasets", ("--datasets",), parse=comma_list, kind=str),
    Flag("tasks", ("--tasks",), parse=comma_list, kind=str),
    *fields("templates", "classnames"),
    Flag("fewshot.episodes", ("--episodes",), "few-shot episodes  [default: 600]"),
    *fields("batch_size", "workers", "precision", "seed", "parallelism",
            seed="seeds the few-shot episodes and the probe's split  [default: 0]"),
    *cluster_flags("namespace", "image", "gpus", "accelerator", "spot", "queue", "priority_class",
                   "service_account", gpus="GPUs per pod: 1, or 0 for CPU nodes  [default: 1]"),
]
OPTIONS = [
    Option("wait", ("--wait",), bool, False, "Wait for the Job to finish, then print the results."),
    Option("timeout", ("--timeout",), int, 6 * 3600, "Seconds --wait waits before giving up."),
]


def build(stage: Stage, values: dict, sets: list[str], ctx: Context) -> EvalConfig:
    from laclip.config import load_config
    from laclip_cli.state import state

    if "checkpoint" not in values and not any(s.startswith("checkpoint=") for s in sets):
        raise UsageError("--checkpoint is required: gs://BUCKET/.../checkpoints/RUN/step_N, a path, or RUN/step_N")
    if ctx.options.get("wait") and (ctx.local or ctx.dry_run):
        raise UsageError("--wait waits for a cluster Job: it does nothing with --local or --dry-run")
    # an explicit --root / $LACLIP_ROOT is the data root; else the checkpoint's own store is
    cfg = load_config(stage.config, {"root": state.root, **values}, sets=sets, flags=stage.flag_names())
    if cfg.cluster.gpus > 1:
        raise UsageError(f"invalid --gpus {cfg.cluster.gpus}: an eval pod uses one GPU (or 0 for CPU nodes)")
    return cfg


def estimate(cfg: EvalConfig):
    """The `laclip plan eval` figure for this Job, on a GPU: the images of every dataset a suite file
    counts (one pod per dataset, `parallelism` at once), else the ImageNet-1k model when the Job
    evaluates ImageNet-1k; None otherwise."""
    from laclip.eval.datasets import IMAGENET_NAMES
    from laclip.eval.suites import find
    from laclip.plan import EVAL_IMAGES, try_estimate

    if cfg.cluster.gpus < 1:
        return None
    names = [d.rstrip("/").rsplit("/", 1)[-1] for d in cfg.datasets]
    if any(find(n) for n in names):
        at_once = min(len(names), cfg.parallelism or len(names)) * cfg.cluster.gpus
        label = cfg.suites[0] if len(cfg.suites) == 1 and len(cfg.suites[0]) <= 40 else "datasets"
        return try_estimate("eval", label, at_once, model=cfg.model,
                            datasets=[(d, cfg.tasks_for(d)) for d in cfg.datasets])
    if not {n.lower() for n in names} & set(IMAGENET_NAMES):
        return None
    # one pod per dataset: the ImageNet pod carries the work on its own GPU(s)
    return try_estimate("eval", "imagenet1k", cfg.cluster.gpus, model=cfg.model, samples=EVAL_IMAGES)


def results(cfg: EvalConfig) -> list[dict]:
    """The result records of exactly this request (these settings), those that exist."""
    from laclip.eval.worker import plan, read_results
    from laclip.storage import open_store

    store = open_store(cfg.root)
    return read_results(store, plan(cfg, store))


def run_here(cfg: EvalConfig, *, quiet: bool = False) -> list[dict]:
    """Evaluate cfg with the pods' entrypoint, one process per dataset as the Indexed Job would;
    the result records of this request."""
    from laclip.eval.worker import plan
    from laclip.storage import open_store
    from laclip_cli.local import run_indexed

    plan(cfg, open_store(cfg.root))  # every input checked here, before a process starts
    run_indexed("laclip.eval.main", cfg.model_dump_json(exclude={"cluster"}), list(range(len(cfg.datasets))),
                echo=not quiet, what=f"eval of {cfg.checkpoint}")
    return results(cfg)


def run_local(cfg: EvalConfig, ctx: Context) -> None:
    start = time.perf_counter()
    records = run_here(cfg)
    print_records(records)
    out.print(f"{len(records)} results under {cfg.root.rstrip('/')}/{cfg.out_dir}/ in "
              f"{time.perf_counter() - start:.1f}s", markup=False, soft_wrap=True)


def submitted(cfg: EvalConfig, objects: list[dict], outcomes: list, ctx: Context) -> None:
    name, ns = objects[0]["metadata"]["name"], cfg.cluster.namespace
    out.print(f"follow it: laclip status {cfg.run}  (kubectl get pods -n {ns} -l laclip.dev/run={cfg.run})",
              markup=False, soft_wrap=True)
    if ctx.options.get("wait"):
        wait(name, ns, ctx.options["timeout"], context=ctx.kube_context)
        print_records(results(cfg))


def wait(name: str, namespace: str, timeout: int, poll: float = 15.0, api_client=None,
         context: str | None = None) -> None:
    """Poll the Job until it completes (return) or fails (raise)."""
    from laclip.cluster import Cluster, ClusterError, Forbidden, connect
    from laclip.errors import NotFound
    from laclip.kube import BATCH_JOB

    cluster = Cluster(api_client or connect(context), namespace)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:  # the Job itself, not jobs/status: the laclip-user Role grants `get` on jobs only
            job = cluster.get(BATCH_JOB, name)
        except (NotFound, Forbidden) as exc:
            code = "404" if isinstance(exc, NotFound) else "403"
            raise LaclipError(f"cannot read Job {namespace}/{name}: {code} ({exc}); apply manifests/ (Role "
                              "laclip-user) or check the namespace") from None
        except ClusterError as exc:  # an API or network blip while waiting hours is not a failed eval
            err.print(f"Job {name}: {exc}; asking again", markup=False)
            time.sleep(poll)
            continue
        status = job.get("status") or {}
        for cond in status.get("conditions") or []:
            if cond.get("status") == "True" and cond.get("type") == "Complete":
                out.print(f"Job {name} complete", markup=False)
                return
            if cond.get("status") == "True" and cond.get("type") == "Failed":
                raise LaclipError(f"Job {namespace}/{name} failed: {cond.get('reason')}: {cond.get('message') or ''}; "
                                  f"see `laclip logs` or `kubectl logs -n {namespace} job/{name}`")
        err.print(f"Job {name}: {status.get('active') or 0} active, {status.get('succeeded') or 0} succeeded, "
                  f"{status.get('failed') or 0} failed", markup=False)
        time.sleep(poll)
    raise LaclipError(f"Job {namespace}/{name} did not finish within {timeout}s (it keeps running)")


def print_records(records: list[dict]) -> None:
    from laclip.eval.results import HEADLINE

    for rec in records:
        metrics = rec["metrics"]
        headline = HEADLINE.get(rec["task"], "acc1")
        value = metrics.get(headline)
        shown = "n/a" if value is None else f"{100 * value:.2f}"
        ci = metrics.get("acc1_ci95")
        out.print(f"{rec['dataset']:>16} {rec['task']:<24} {headline} {shown}" + (f" ±{100 * ci:.2f}" if ci else ""),
                  markup=False)
    if not records:
        out.print("no results yet")


STAGE = Stage(
    name="eval", help="Evaluate a checkpoint: zero-shot, few-shot kNN, linear probe, retrieval.",
    config=EvalConfig, flags=FLAGS, options=OPTIONS, build=build,
    render=lazy("laclip_jobs.eval:render"), run_local=run_local,
    estimate=estimate, submitted=submitted, bucket_paths=lambda cfg: [cfg.checkpoint_root, cfg.root],
)
