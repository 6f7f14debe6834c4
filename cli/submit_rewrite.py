"""`laclip submit rewrite`: rewrite a dataset's captions as an Indexed Job, print it, or run it here."""

from __future__ import annotations

import sys
from typing import Callable, List, Optional

import typer

from laclip.errors import LaclipError, UsageError
from laclip_cli.console import err, out, require_bucket, show_estimate
from laclip_cli.state import state
from laclip_cli.submit import app

DEFAULT_SOURCES = "chatgpt,bard,coco,human"
DEFAULT_MODEL_DIR = "models/llama-7b"  # under a gs:// root; upload the weights there once


def run_local(cfg, store, progress: Callable[[int, int], None] | None = None, workers: int | None = None) -> str:
    """Rewrite cfg.dataset with local processes (the one-command pipeline calls this); returns the
    rewrite id. `progress(done, total)` is called as indexes finish."""
    from laclip.rewrite.local import run_local as _run

    return _run(cfg, store, workers=workers, progress=progress)


def build_config(**kw):
    """A checked RewriteConfig from flag values, with pydantic's complaints turned into UsageError."""
    from pydantic import ValidationError

    from laclip.config import ClusterOptions, flag_error
    from laclip.rewrite.config import RewriteConfig

    cluster_keys = set(ClusterOptions.model_fields)
    cluster = {k: v for k, v in kw.items() if k in cluster_keys and v is not None}
    rest = {k: v for k, v in kw.items() if k not in cluster_keys and v is not None}
    try:
        cfg = RewriteConfig(cluster=ClusterOptions(**cluster), **rest)
    except ValidationError as exc:
        if exc.errors()[0]["loc"] == ("engine",):
            raise UsageError(f"unknown engine {kw.get('engine')!r}: choose vllm, hf, eda, openai or null") from None
        raise UsageError(flag_error(exc)) from None
    return cfg.check()


def parse_meta_pairs(values: list[str]) -> dict:
    from laclip.rewrite.prompts import read_meta_pairs_file

    found = {}
    for v in values:
        name, eq, path = v.partition("=")
        if not eq or not name or not path:
            raise UsageError(f"--meta-pairs {v!r}: expected SOURCE=PATH")
        found[name.strip()] = read_meta_pairs_file(path.strip())
    return found


def parse_engine_options(values: list[str]) -> dict:
    found: dict = {}
    for v in values:
        key, eq, raw = v.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"--engine-option {v!r}: expected KEY=VALUE")
        value: object = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            for kind in (int, float):
                try:
                    value = kind(raw)
                    break
                except ValueError:
                    pass
        found[key.strip()] = value
    return found


def shard_count(store_root: str, dataset: str, given: int | None, dry_run: bool) -> int:
    """Shards to cover: --num-shards, else the listing (a local folder, or any root when not a dry run),
    else the preset's nominal count."""
    from laclip.data.registry import PRESETS, check_name

    check_name(dataset)
    if given:
        return given
    if not dry_run or not store_root.startswith("gs://"):
        from laclip.data.registry import resolve_shards

        try:
            return len(resolve_shards(state.store(), dataset))
        except LaclipError:
            if not dry_run or dataset not in PRESETS:
                raise
    if dataset in PRESETS:
        return PRESETS[dataset].shards
    raise UsageError(f"dataset {dataset!r} is not a preset: pass --num-shards N for a dry run")


@app.command("rewrite")
def rewrite(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset under datasets/ (cc12m, laion400m, demo...)."),
    sources: str = typer.Option(DEFAULT_SOURCES, help="Meta-pair sources, comma-separated: one rewrite column each."),
    engine: Optional[str] = typer.Option(
        None, help="vllm | hf | eda | openai | null  [default: vllm; eda with --local]"),
    model: Optional[str] = typer.Option(None, help="Checkpoint: gs://BUCKET/PATH (mounted with gcsfuse), a folder, "
                                                    "or a model id  [default for vllm: ROOT/models/llama-7b]"),
    meta_pairs: List[str] = typer.Option([], "--meta-pairs", help="SOURCE=PATH: your own pairs file (repeatable)."),
    rewrite_id: Optional[str] = typer.Option(None, help="Output folder name [default: derived from the settings, "
                                                         "so the same run resumes]."),
    shards_per_pod: int = typer.Option(1, min=1, help="Shards each index (pod) rewrites."),
    gpus_per_pod: int = typer.Option(1, min=0, max=16, help="GPUs per pod (vLLM tensor parallel size)."),
    accelerator: str = typer.Option("nvidia-tesla-a100", help="nvidia-tesla-a100 | nvidia-a100-80gb"),
    spot: bool = typer.Option(False, "--spot", help="Run on Spot VMs (preemptions are not counted as failures)."),
    queue: Optional[str] = typer.Option(None, help="Kueue LocalQueue: the Job waits there for quota."),
    parallelism: Optional[int] = typer.Option(None, min=1, help="Pods at once [default: min(64, indexes)]."),
    namespace: Optional[str] = typer.Option(None, help="Kubernetes namespace [default: laclip]."),
    service_account: Optional[str] = typer.Option(None, help="Workload Identity KSA [default: laclip-runner]."),
    image: Optional[str] = typer.Option(None, help="Container image [default: the rewrite image]."),
    priority_class: Optional[str] = typer.Option(None, help="PriorityClass of the pods."),
    cpu: Optional[str] = typer.Option(None, help="CPU request per pod [default: 8]."),
    memory: Optional[str] = typer.Option(None, help="Memory per pod [default: 64Gi]."),
    endpoint: Optional[str] = typer.Option(None, help="openai engine: base URL, e.g. http://vllm:8000/v1"),
    engine_option: List[str] = typer.Option([], "--engine-option", help="KEY=VALUE passed to the engine, e.g. "
                                            "gpu_memory_utilization=0.85 (vllm), retries=0 (openai). Repeatable."),
    batch_size: Optional[int] = typer.Option(None, min=1, help="Prompts per engine call [default: per engine]."),
    seed: int = typer.Option(0, help="Seeds the example draw and the sampling."),
    temperature: float = typer.Option(0.9, min=0.0), top_p: float = typer.Option(0.95, min=0.0, max=1.0),
    max_new_tokens: int = typer.Option(77, min=1),
    num_shards: Optional[int] = typer.Option(None, min=1, help="Shards to cover (dry runs of unlisted datasets)."),
    max_failed_indexes: Optional[int] = typer.Option(None, min=0, help="[default: 1% of indexes, at least 1]"),
    backoff_limit_per_index: int = typer.Option(3, min=0, help="Retries of one index before it counts as failed."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the Job as YAML; contact nothing."),
    local: bool = typer.Option(False, "--local", help="Run every index here as a local process."),
    workers: Optional[int] = typer.Option(None, min=1, help="--local: processes at once [default: cores]."),
) -> None:
    """Rewrite every caption of a dataset with an LLM (one column per meta-pair source)."""
    from laclip.storage import resolve_root

    if dry_run and local:
        raise UsageError("--dry-run and --local exclude each other")
    if workers is not None and not local:
        raise UsageError("--workers sets the processes of a --local run; on the cluster, --parallelism sets the pods")
    root = resolve_root(state.root)
    engine = engine or ("eda" if local else "vllm")
    if endpoint and engine != "openai":
        raise UsageError(f"--endpoint is for --engine openai; the {engine} engine would ignore it")
    if engine == "vllm" and not model and not local:
        model = f"{root.rstrip('/')}/{DEFAULT_MODEL_DIR}" if root.startswith("gs://") else f"gs://YOUR_BUCKET/{DEFAULT_MODEL_DIR}"
    source_list = [s.strip() for s in sources.split(",") if s.strip()]
    cfg = build_config(
        dataset=dataset, sources=source_list, engine=engine, model=model, meta_pairs=parse_meta_pairs(meta_pairs),
        rewrite_id=rewrite_id, shards_per_pod=shards_per_pod, tensor_parallel=max(1, gpus_per_pod),
        batch_size=batch_size, seed=seed, endpoint=endpoint, parallelism=parallelism,
        engine_options=parse_engine_options(engine_option),
        sampling={"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens},
        max_failed_indexes=max_failed_indexes, backoff_limit_per_index=backoff_limit_per_index,
        namespace=namespace, service_account=service_account, image=image, accelerator=accelerator,
        gpus=gpus_per_pod, spot=spot, queue=queue, priority_class=priority_class, cpu=cpu, memory=memory,
    )
    if local:
        return _local(cfg, workers)

    from laclip_jobs.common import new_run_id, dump_yaml
    from laclip_jobs.rewrite import render_rewrite_job

    require_bucket(root, dry_run)
    n = shard_count(root, dataset, num_shards, dry_run)
    run = new_run_id("rewrite", dataset)
    objects = render_rewrite_job(cfg, run=run, root=root, num_shards=n)
    est = _estimate(cfg, objects[0]) if cfg.engine in ("vllm", "hf") else None
    show_estimate(est, dry_run)
    if dry_run:
        sys.stdout.write(dump_yaml(objects))
        return
    _create(objects[0])
    ns = objects[0]["metadata"]["namespace"]
    out.print(f"created Job {run} in namespace {ns}: {objects[0]['spec']['completions']} indexes, "
              f"rewrite id {cfg.resolved_rewrite_id()}")
    out.print(f"watch: kubectl get jobs,pods -n {ns} -l laclip.dev/run={run}")
    out.print(f"output: {objects[0]['metadata']['annotations']['laclip.dev/output']}")


def _estimate(cfg, job: dict):
    """The `laclip plan` estimate for this Job (None when no figure applies)."""
    from laclip.plan import try_estimate

    spec = job["spec"]
    gpus = max(1, cfg.cluster.gpus) * min(spec["parallelism"], spec["completions"])
    return try_estimate("rewrite", cfg.dataset, gpus, sources=len(cfg.sources))


def _create(job: dict) -> None:
    from kubernetes import client

    from laclip_cli.kube import connect
    from laclip_jobs.common import check_images_configured

    check_images_configured([job])
    api = connect()
    try:
        client.BatchV1Api(api).create_namespaced_job(job["metadata"]["namespace"], job)
    except client.ApiException as exc:
        raise LaclipError(f"the API server refused Job {job['metadata']['name']}: {exc.status} {exc.reason}: "
                          f"{(exc.body or '')[:300]}") from None
    except Exception as exc:  # urllib3 connection errors and the like
        raise LaclipError(f"cannot reach the Kubernetes API server: {exc}") from None


def _show_examples(store, cfg, rid: str, n: int = 3) -> None:
    """A few rewritten captions, so the user sees what the run produced."""
    from rich.markup import escape

    from laclip.rewrite import output as rout

    done = rout.list_done(store, cfg.dataset, rid)
    if not done:
        return
    rows = rout.read_shard(store, cfg.dataset, rid, done[0]).slice(0, 50).to_pylist()
    s = cfg.sources[0]
    picked = [r for r in rows if r.get(f"{s}_rejected") is None][:n]
    for r in picked:
        out.print(f"  {escape(r['caption'][:80])}  ->  {escape(f'[{s}]')} {escape(r[s][:100])}", soft_wrap=True)


def _local(cfg, workers: int | None) -> None:
    import time

    from rich.progress import Progress

    from laclip.rewrite import output as rout
    from laclip.rewrite.local import prepare

    store = state.store()
    _, n = prepare(cfg, store)
    start = time.perf_counter()
    with Progress(transient=True, console=err) as progress:
        task = progress.add_task(f"rewriting {cfg.dataset} with {cfg.engine}", total=n)
        rid = run_local(cfg, store, workers=workers,
                        progress=lambda done, total: progress.update(task, completed=done, total=total))
    folder = rout.rewrite_folder(cfg.dataset, rid)
    total = rout.summarize(store, cfg.dataset, rid)
    if total["engine"].get("wordnet") is False:
        err.print("warning: eda found no WordNet corpus here (nltk.download('wordnet') where a network is "
                  "available): it used random swap and deletion only", soft_wrap=True)
    slots = total["captions"] * len(cfg.sources)
    kept = sum(total["fallbacks"].values())
    reasons = ", ".join(f"{r} {c:,}" for r, c in total["fallbacks"].items())
    out.print(f"rewrite {rid}: {total['shards']} shards, {total['captions']:,} captions x {len(cfg.sources)} sources, "
              f"{kept:,} of {slots:,} kept the original ({100 * kept / max(1, slots):.1f}%"
              f"{': ' + reasons if reasons else ''}), {time.perf_counter() - start:.1f}s", soft_wrap=True)
    _show_examples(store, cfg, rid)
    out.print(f"output: {store.url_of(folder)}/")
    out.print(f"train on it: laclip submit train --dataset {cfg.dataset} --rewrites {rid} --local", soft_wrap=True)
