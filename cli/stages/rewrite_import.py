"""`laclip rewrites import`: join released rewrites onto a dataset's shards, here (the default) or as
a Job (--cluster, for files and store in a bucket); --dry-run prints the Job."""

from __future__ import annotations

import os
import time

from laclip.errors import UsageError
from laclip.rewrite_import.config import ImportConfig, source_name
from laclip_cli.console import err, out
from laclip_cli.stage import Context, Flag, Stage, cluster_flags, fields, lazy


def _sources(values: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for v in values:
        name, eq, path = v.partition("=")
        if not eq:  # `--source cc12m_chatgpt.txt`: the name from the file's
            name, path = source_name(v), v
        name, path = name.strip(), path.strip()
        if not name or not path:
            raise UsageError(f"--source {v!r}: expected NAME=FILE (or a file named <dataset>_<name>.txt)")
        if name in found:
            raise UsageError(f"--source {name!r} is given twice")
        found[name] = path
    return found


FLAGS = [
    Flag("dataset", ("--dataset", "-d")),
    *fields("original"),
    Flag("sources", ("--source",), "NAME=FILE: a rewrite file, one line per row of --original (repeatable; "
         "FILE alone takes NAME from <dataset>_<name>.txt).", _sources, list[str]),
    *fields("rewrite_id", "original_format", "choose", "filter", "work_dir", "run"),
    *cluster_flags("namespace", "service_account", "image", "queue", "priority_class", "cpu", "memory", "spot"),
]


def _absolute(url: str) -> str:
    return url if "://" in url else os.path.abspath(os.path.expanduser(url))


def build(stage: Stage, values: dict, sets: list[str], ctx: Context) -> ImportConfig:
    from laclip.config import load_config, merge
    from laclip_jobs.common import new_run_id

    cfg = load_config(stage.config, merge({"root": ctx.root}, values), sets=sets, flags=stage.flag_names())
    update = {"original": _absolute(cfg.original), "sources": {k: _absolute(v) for k, v in cfg.sources.items()},
              "run": cfg.run or new_run_id("import", cfg.dataset)}
    cfg = cfg.model_copy(update=update).check()
    return cfg.model_copy(update={"rewrite_id": cfg.resolved_rewrite_id()})


def check(cfg: ImportConfig, ctx: Context) -> None:
    from laclip.data.registry import resolve_shards
    from laclip.rewrite_import.release import version
    from laclip.storage import open_store

    resolve_shards(open_store(cfg.root), cfg.dataset)
    for role, url in (("--original", cfg.original), *((f"--source {n}", u) for n, u in cfg.sources.items())):
        if version(url) is None:
            raise UsageError(f"{role} {url} does not exist")


def run_local(cfg: ImportConfig, ctx: Context) -> None:
    """In this process (one process is all the import is; the pod runs the same run_import)."""
    from rich.progress import Progress

    from laclip.rewrite_import.importer import run_import
    from laclip.storage import open_store

    check(cfg, ctx)
    start = time.perf_counter()
    names = {"shards": "reading the shards' captions", "release": "streaming the release",
             "write": "writing the rewrite set"}
    with Progress(transient=True, console=err) as bar:
        tasks: dict = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(names.get(phase, phase), total=total or None)
            bar.update(tasks[phase], completed=done, total=total or None)

        totals = run_import(cfg, progress=progress)
    print_totals(open_store(cfg.root), cfg, totals, time.perf_counter() - start)


def print_totals(store, cfg: ImportConfig, totals: dict, seconds: float) -> None:
    from laclip import layout

    n = max(1, totals["captions"])
    out.print(f"import {cfg.rewrite_id}: {totals['shards']} shards, {totals['captions']:,} captions: "
              f"{totals['matched']:,} matched ({100 * totals['matched'] / n:.1f}%), {totals['missing']:,} missing "
              f"from the release (they keep their caption), {totals['ambiguous']:,} of the matched ambiguous "
              f"(their caption has release rows with different rewrites), {seconds:.1f}s",
              soft_wrap=True, markup=False)
    if "release_rows" in totals:
        out.print(f"release: {totals['release_rows']:,} rows, {totals['candidate_rows']:,} with a caption of the "
                  f"dataset, {totals['release_rows_used']:,} used, {totals['release_duplicate_rows']:,} in captions "
                  "that repeat", soft_wrap=True, markup=False)
    _per_shard(store, cfg)
    if totals.get("collisions"):
        err.print(f"note: {totals['collisions']} hash collisions (kept their caption)", markup=False)
    sources = list(cfg.sources)
    out.print(f"per shard: {store.url_of(layout.rewrite_folder(cfg.dataset, cfg.rewrite_id))}/NNNNN.stats.json "
              f"(matched, missing, ambiguous); sources: {', '.join(sources)}", soft_wrap=True, markup=False)
    out.print(f"train on it: laclip submit train --dataset {cfg.dataset} --rewrites {cfg.rewrite_id}",
              soft_wrap=True, markup=False)


def _per_shard(store, cfg: ImportConfig, limit: int = 12) -> None:
    """matched / missing / ambiguous of each shard: every one for a few shards, else the most missing."""
    import json

    from laclip import layout

    shards = layout.rewritten_shards(store, cfg.dataset, cfg.rewrite_id)
    if len(shards) > 200:  # reading thousands of stats files from a bucket is slow: they are there to read
        return
    rows = []
    for sid in shards:
        st = json.loads(store.read_text(layout.rewrite_stats(cfg.dataset, cfg.rewrite_id, sid)))
        rows.append((st["missing"] / max(1, st["captions"]), sid, st))
    shown = sorted(rows, key=lambda r: (-r[0], r[1]))[:limit] if len(rows) > limit else rows
    if len(rows) > limit:
        out.print(f"the {limit} shards with the most missing captions:", markup=False)
    for _, sid, st in shown:
        out.print(f"  shard {sid}: {st['captions']:,} captions, {st['matched']:,} matched, {st['missing']:,} "
                  f"missing, {st['ambiguous']:,} ambiguous", markup=False)


def submitted(cfg: ImportConfig, objects: list[dict], outcomes: list, ctx: Context) -> None:
    job = objects[0]
    ns = job["metadata"]["namespace"]
    out.print(f"rewrite id {cfg.rewrite_id}; watch: kubectl get jobs,pods -n {ns} -l laclip.dev/run={cfg.run}  "
              f"(or `laclip status {cfg.run}`)", markup=False, soft_wrap=True)
    out.print(f"output: {job['metadata']['annotations']['laclip.dev/output']}", markup=False, soft_wrap=True)


STAGE = Stage(
    name="import", help="Import released rewrites (the LaCLIP paper's files, or any line-aligned ones) onto a "
                        "dataset: joined by caption, written as a rewrite set. Runs here unless --cluster.",
    config=ImportConfig, flags=FLAGS, build=build,
    render=lazy("laclip_jobs.rewrite_import:render"), run_local=run_local, check=check,
    submitted=submitted, local_default=True, component="rewrite-import", submit=False,
    bucket_paths=lambda cfg: [cfg.root, cfg.original, *cfg.sources.values()],
)
