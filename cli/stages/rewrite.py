"""`laclip submit rewrite`: rewrite a dataset's captions as an Indexed Job, print it, or run it here."""

from __future__ import annotations

import os
import time
from typing import Callable, Optional

from laclip.errors import LaclipError, UsageError
from laclip.rewrite.config import RewriteConfig
from laclip.rewrite.engines import spec
from laclip_cli.console import err, out, styled
from laclip_cli.stage import Context, Flag, Option, Stage, cluster_flags, comma_list, fields, lazy

DEFAULT_MODEL = "llama-7b"  # gs://ROOT/models/llama-7b: upload the weights there once


def _meta_pairs(values: list[str]) -> dict:
    from laclip.rewrite.prompts import read_meta_pairs_file

    found = {}
    for v in values:
        name, eq, path = v.partition("=")
        if not eq or not name.strip() or not path.strip():
            raise UsageError(f"--meta-pairs {v!r}: expected SOURCE=PATH")
        found[name.strip()] = read_meta_pairs_file(path.strip())
    return found


def _engine_options(values: list[str]) -> dict:
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


FLAGS = [
    Flag("dataset", ("--dataset", "-d")),
    Flag("sources", ("--sources",), parse=comma_list, kind=str),
    *fields("engine", "model", "back_model"),
    Flag("meta_pairs", ("--meta-pairs",), "SOURCE=PATH: your own pairs file (repeatable).", _meta_pairs, list[str]),
    *fields("rewrite_id", "shards_per_pod"),
    Flag("cluster.gpus", ("--gpus-per-pod",), "GPUs per pod (vLLM tensor parallel size)  [default: 1]"),
    *fields("parallelism"),
    *cluster_flags("accelerator", "spot", "queue", "namespace", "service_account", "image", "priority_class", "cpu",
                   "memory"),
    *fields("endpoint"),
    Flag("engine_options", ("--engine-option",), "KEY=VALUE passed to the engine, e.g. gpu_memory_utilization=0.85 "
         "(vllm), retries=0 (openai). Repeatable.", _engine_options, list[str]),
    *fields("batch_size", "seed", "sampling.temperature", "sampling.top_p", "sampling.max_new_tokens", "faithfulness",
            "num_shards", "max_failed_indexes", "backoff_limit_per_index", "run"),
]
OPTIONS = [Option("workers", ("--workers",), Optional[int], None, "--local: processes at once [default: cores].")]


def build(stage: Stage, values: dict, sets: list[str], ctx: Context) -> RewriteConfig:
    from laclip import layout
    from laclip.config import load_config, merge
    from laclip_jobs.common import new_run_id

    if ctx.options.get("workers") is not None and not ctx.local:
        raise UsageError("--workers sets the processes of a --local run; on the cluster, --parallelism sets the pods")
    from laclip.data.registry import check_name
    from laclip_cli.console import require_bucket

    defaults = {"engine": "eda" if ctx.local else "vllm", "root": ctx.root}
    cfg = load_config(stage.config, merge(defaults, values), sets=sets, origin=ctx.origin)
    check_name(cfg.dataset)
    if not ctx.local and not ctx.dry_run:
        require_bucket(cfg.root, False)  # before the listing: pods cannot read a local folder
    update: dict = {}
    engine = spec(cfg.engine)
    if engine.default_model and not cfg.model and not ctx.local:
        # gs://your-bucket: a placeholder for --dry-run of a local root, and a valid bucket name
        bucket = cfg.root.rstrip("/") if cfg.root.startswith("gs://") else "gs://your-bucket"
        update["model"] = f"{bucket}/{layout.model_folder(DEFAULT_MODEL)}"
    update["run"] = cfg.run or new_run_id("rewrite", cfg.dataset)
    if not ctx.local:
        cfg = cfg.for_cluster()  # so that what this prints is what the pods run
        update["num_shards"] = cfg.num_shards or _shard_count(cfg, ctx)
    cfg = cfg.model_copy(update=update).check()
    if ctx.local or (ctx.dry_run and (cfg.model or "").startswith("gs://")):
        return cfg  # --local reads the model in run_here; a --dry-run lists no bucket
    return _read_model(cfg)


def _read_model(cfg: RewriteConfig) -> RewriteConfig:
    """The model's content in the rewrite id, where it can be read (RewriteConfig.for_this_model)."""
    cfg, note = cfg.for_this_model()
    if note:
        err.print(styled(("note:", "yellow"), " ", note), soft_wrap=True)
    return cfg


def _shard_count(cfg: RewriteConfig, ctx: Context) -> int:
    """The listing (a local folder, or any root when not a dry run), else the preset's count."""
    from laclip.data.registry import PRESETS, resolve_shards
    from laclip.storage import open_store

    if not ctx.dry_run or not cfg.root.startswith("gs://"):
        try:
            return len(resolve_shards(open_store(cfg.root), cfg.dataset))
        except LaclipError:
            if not ctx.dry_run or cfg.dataset not in PRESETS:
                raise
    if cfg.dataset in PRESETS:
        return PRESETS[cfg.dataset].shards
    raise UsageError(f"dataset {cfg.dataset!r} is not a preset: pass --num-shards N for a dry run")


def estimate(cfg: RewriteConfig):
    from laclip.plan import try_estimate
    from laclip_jobs.rewrite import DEFAULT_PARALLELISM, completions

    if not spec(cfg.engine).gpu:
        return None
    n = completions(cfg.num_shards, cfg.shards_per_pod)
    gpus = max(1, cfg.cluster.gpus) * min(cfg.parallelism or DEFAULT_PARALLELISM, n)
    return try_estimate("rewrite", cfg.dataset, gpus, sources=len(cfg.sources))


def submitted(cfg: RewriteConfig, objects: list[dict], outcomes: list, ctx: Context) -> None:
    job = objects[0]
    ns = job["metadata"]["namespace"]
    out.print(f"{job['spec']['completions']} indexes, rewrite id {cfg.resolved_rewrite_id()}", markup=False)
    out.print(f"watch: kubectl get jobs,pods -n {ns} -l laclip.dev/run={cfg.run}  (or `laclip status {cfg.run}`)",
              markup=False, soft_wrap=True)
    out.print(f"output: {job['metadata']['annotations']['laclip.dev/output']}", markup=False, soft_wrap=True)


def for_here(cfg: RewriteConfig) -> RewriteConfig:
    """A checked config as it runs on this machine: the eda operations it can run (with the warning), the
    model folders checked and their content read, the rewrite id fixed. Applying it twice changes nothing."""
    cfg, warning = cfg.for_this_machine()
    if warning:
        err.print(styled(("warning:", "yellow"), " ", warning), soft_wrap=True)
    if spec(cfg.engine).model_dirs:
        from laclip.rewrite.engines.base import check_model_dir

        for folder in filter(None, (cfg.model, cfg.back_model)):
            check_model_dir(folder, cfg.engine)
    cfg = _read_model(cfg)
    return cfg.model_copy(update={"rewrite_id": cfg.resolved_rewrite_id()})


def run_here(cfg: RewriteConfig, *, workers: int | None = None,
             progress: Callable[[int, int], None] | None = None) -> str:
    """Rewrite cfg.dataset with local worker processes, as the Job's pods would; the rewrite id.
    `cfg` is checked (build(), or the caller's own RewriteConfig.check()). An index whose shards are all
    done starts no process; a finished shard made from other captions stops here (laclip.rewrite.output)."""
    from laclip.claim import index_count, pending_indexes
    from laclip.data.registry import resolve_shards
    from laclip.rewrite import output as rout
    from laclip.rewrite.worker import REDO
    from laclip.storage import open_store
    from laclip_cli.local import run_indexed

    store = open_store(cfg.root)
    cfg = for_here(cfg)
    shards = resolve_shards(store, cfg.dataset)
    cfg = cfg.model_copy(update={"num_shards": len(shards)})
    todo = rout.shard_claims(store, cfg.dataset, cfg.rewrite_id, shards, REDO, restore=False)
    pending = pending_indexes(shards, lambda s: s not in todo, cfg.shards_per_pod)
    n = index_count(len(shards), cfg.shards_per_pod)
    if progress:
        progress(n - len(pending), n)
    workers = max(1, min(workers or os.cpu_count() or 1, len(pending) or 1))
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    run_indexed("laclip.rewrite.main", cfg.worker_json(), pending, workers=workers, retries=1,
                progress=(lambda d, t: progress(n - len(pending) + d, n)) if progress else None,
                env={"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", threads), "TOKENIZERS_PARALLELISM": "false"},
                what=f"rewrite {cfg.rewrite_id}")
    return cfg.rewrite_id


def run_local(cfg: RewriteConfig, ctx: Context) -> None:
    from rich.markup import escape
    from rich.progress import Progress

    from laclip import layout
    from laclip.rewrite import output as rout
    from laclip.storage import open_store

    start = time.perf_counter()
    with Progress(transient=True, console=err) as bar:
        task = bar.add_task(f"rewriting {escape(cfg.dataset)} with {cfg.engine}", total=None)
        rid = run_here(cfg, workers=ctx.options.get("workers"),
                       progress=lambda done, total: bar.update(task, completed=done, total=total))
    store = open_store(cfg.root)
    total = rout.summarize(store, cfg.dataset, rid)
    if total["engine"].get("wordnet") is False:
        err.print("warning: eda found no WordNet corpus here (nltk.download('wordnet') where a network is "
                  "available): it used random swap and deletion only", soft_wrap=True)
    slots = total["captions"] * len(cfg.sources)
    kept = sum(total["fallbacks"].values())
    reasons = ", ".join(f"{r} {c:,}" for r, c in total["fallbacks"].items())
    out.print(f"rewrite {rid}: {total['shards']} shards, {total['captions']:,} captions x {len(cfg.sources)} sources, "
              f"{kept:,} of {slots:,} kept the original ({100 * kept / max(1, slots):.1f}%"
              f"{': ' + reasons if reasons else ''}), {time.perf_counter() - start:.1f}s", soft_wrap=True, markup=False)
    if total["skipped_rows"]:
        why = ", ".join(f"{r.replace('_', ' ')} {n:,}" for r, n in total["skipped_rows"].items())
        err.print(f"note: {sum(total['skipped_rows'].values()):,} dataset rows skipped ({why}): "
                  "see laclip/data/shards.py for the rule", soft_wrap=True)
    _show_examples(store, cfg, rid)
    out.print(f"output: {store.url_of(layout.rewrite_folder(cfg.dataset, rid))}/", markup=False, soft_wrap=True)
    out.print(f"train on it: laclip submit train --dataset {cfg.dataset} --rewrites {rid} --local",
              soft_wrap=True, markup=False)


def _show_examples(store, cfg: RewriteConfig, rid: str, n: int = 3) -> None:
    """A few rewritten captions, so the user sees what the run produced."""
    from laclip import layout
    from laclip.rewrite import output as rout

    done = layout.rewritten_shards(store, cfg.dataset, rid)
    if not done:
        return
    rows = rout.read_shard(store, cfg.dataset, rid, done[0]).slice(0, 50).to_pylist()
    s = cfg.sources[0]
    for r in [r for r in rows if r.get(f"{s}_rejected") is None][:n]:
        out.print(f"  {r['caption'][:80]}  ->  [{s}] {r[s][:100]}", soft_wrap=True, markup=False)


STAGE = Stage(
    name="rewrite", help="Rewrite every caption of a dataset with an LLM (one column per meta-pair source).",
    config=RewriteConfig, flags=FLAGS, options=OPTIONS, build=build,
    render=lazy("laclip_jobs.rewrite:render"), run_local=run_local,
    estimate=estimate, submitted=submitted,
)
