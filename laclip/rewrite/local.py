"""Run a rewrite here: every completion index as its own worker process, as the Job's pods would.

Same entrypoint, same config, same output layout as on the cluster; at most `workers`
processes at once (default: one per core). A failed index is retried like the Job's
backoffLimitPerIndex would, except for permanent errors (exit code 3).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from laclip.data.registry import resolve_shards
from laclip.errors import LaclipError, UsageError
from laclip.rewrite.config import RewriteConfig
from laclip.storage.base import Store

EXIT_PERMANENT = 3


def prepare(cfg: RewriteConfig, store: Store) -> tuple[RewriteConfig, int]:
    """Checked config with its rewrite id and shard count fixed, and the number of indexes."""
    cfg.check()
    if cfg.engine == "hf":
        from laclip.rewrite.engines.base import check_model_dir

        check_model_dir(cfg.model, cfg.engine)
    shards = resolve_shards(store, cfg.dataset)
    cfg = cfg.model_copy(update={"num_shards": len(shards), "rewrite_id": cfg.resolved_rewrite_id()})
    return cfg, -(-len(shards) // cfg.shards_per_pod)


def run_local(cfg: RewriteConfig, store: Store, *, workers: int | None = None, retries: int = 1,
              progress: Callable[[int, int], None] | None = None) -> str:
    """Rewrite the whole dataset with local worker processes; returns the rewrite id.

    `progress(done, total)` is called as indexes finish (total = number of indexes). Raises LaclipError
    naming the failed indexes (with the end of their logs) if any is left failed."""
    cfg, n = prepare(cfg, store)
    workers = max(1, min(workers or os.cpu_count() or 1, n))
    with tempfile.TemporaryDirectory(prefix="laclip-rewrite-") as tmp:
        config_file = Path(tmp) / "config.json"
        config_file.write_text(cfg.worker_json(), encoding="utf-8")
        cmd = [sys.executable, "-m", "laclip.rewrite.worker", "--config", f"@{config_file}", "--root", store.url]
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        from laclip.rewrite import output as rout

        # Done: parquet and stats. For a shard missing its stats, the index runs again and restores them.
        listed = set(store.list(rout.rewrite_folder(cfg.dataset, cfg.rewrite_id) + "/"))
        done = {sid for sid in rout.list_done(store, cfg.dataset, cfg.rewrite_id)
                if rout.shard_stats(cfg.dataset, cfg.rewrite_id, sid) in listed}
        shard_ids = [s.id for s in resolve_shards(store, cfg.dataset)]
        pending = []  # (index, attempt); indexes whose shards are all done start no process
        finished = 0
        for i in range(n):
            if set(shard_ids[i * cfg.shards_per_pod:(i + 1) * cfg.shards_per_pod]) <= done:
                finished += 1
            else:
                pending.append((i, 0))
        if progress:
            progress(finished, n)
        running: dict[int, tuple[subprocess.Popen, int, Path]] = {}
        failed: dict[int, tuple[int, str]] = {}
        while pending or running:
            while pending and len(running) < workers:
                i, attempt = pending.pop(0)
                log = Path(tmp) / f"{i}.{attempt}.log"
                with open(log, "wb") as f:
                    proc = subprocess.Popen(cmd, env={**env, "JOB_COMPLETION_INDEX": str(i)},
                                            stdout=f, stderr=subprocess.STDOUT)
                running[i] = (proc, attempt, log)
            time.sleep(0.05)
            for i, (proc, attempt, log) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                del running[i]
                if rc != 0 and rc != EXIT_PERMANENT and attempt < retries:
                    pending.append((i, attempt + 1))
                    continue
                if rc != 0:
                    failed[i] = (rc, log.read_text(errors="replace").strip()[-600:])
                finished += 1
                if progress:
                    progress(finished, n)
        if failed:
            detail = "\n".join(f"index {i} (exit {rc}): {tail}" for i, (rc, tail) in sorted(failed.items())[:3])
            err = UsageError if all(rc == EXIT_PERMANENT for rc, _ in failed.values()) else LaclipError
            raise err(f"rewrite {cfg.rewrite_id}: {len(failed)} of {n} indexes failed; re-run to retry them "
                      f"(finished shards are kept)\n{detail}")
    return cfg.rewrite_id
