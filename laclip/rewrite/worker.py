"""The rewrite stage's work in one pod: the shards of one completion index (laclip.rewrite.main).

Index N ($JOB_COMPLETION_INDEX) takes shards N*K .. N*K+K-1 of the dataset's sorted shard list
(K = shards_per_pod). Per shard: read the captions from its parquet (not the tar), build one
prompt per (caption, source), generate, filter, and publish the output parquet create-only
(layout and schema: laclip.rewrite.output). A dataset parquet that cannot be read, or whose key or
caption column is not text, stops the index (DataError, exit 3); bad rows (null or empty keys, null
captions, a key repeated) are skipped and counted in the shard's stats (`skipped_rows`): the rule is
laclip.data.shards's. A shard whose output exists is skipped only when
it was made from the captions the shard holds now (the recorded input digest): a shard that
changed since (a re-download from a changed URL list gives the same keys to other images) is a
permanent error, since its rewrites would describe other images. A crash at any point leaves
nothing visible, and the next attempt redoes the shard.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import time
from operator import itemgetter

from laclip import __version__, claim, layout
from laclip.data.registry import resolve_shards
from laclip.data.shards import Shard, read_rows
from laclip.errors import DataError
from laclip.identity import rows_digest
from laclip.logs import event
from laclip.rewrite import output as out
from laclip.rewrite.config import REJECT_SUFFIX, RewriteConfig
from laclip.rewrite.filters import REASONS, RewriteFilter, reason_of
from laclip.rewrite.prompts import INSTRUCTION, PromptBuilder, clean_caption, load_meta_pairs
from laclip.storage import open_store
from laclip.storage.base import Store

logger = logging.getLogger("laclip.rewrite")


def log(name: str, **fields) -> None:
    event(logger, name, **fields)


def ensure_run_record(store: Store, cfg: RewriteConfig, rewrite_id: str, pairs: dict) -> None:
    """config.json of the output folder: written once; a later run must bring the same settings."""
    record = {
        "rewrite_id": rewrite_id, "dataset": cfg.dataset, "sources": cfg.sources,
        "fingerprint": cfg.output_fingerprint(), "fingerprint_hash": cfg.fingerprint_hash(),
        "instruction": INSTRUCTION, "meta_pairs": pairs,
        "config": json.loads(cfg.worker_json()), "laclip_version": __version__,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "columns": ["key", "caption", *cfg.sources, *(s + REJECT_SUFFIX for s in cfg.sources)],
    }
    folder = store.url_of(layout.rewrite_folder(cfg.dataset, rewrite_id))
    fresh = (f"choose another --rewrite-id, or delete {folder}/ to make it again" if cfg.rewrite_id else
             f"give this run its own --rewrite-id, or delete {folder}/ to make it again")
    claim.claim(store, layout.rewrite_record(cfg.dataset, rewrite_id), record, key="fingerprint",
                what="a run with different settings", fresh=f"its outputs would mix with these; {fresh}")


class ShardRewriter:
    """Everything one pod needs to rewrite shards: config, engine, prompt builder."""

    def __init__(self, cfg: RewriteConfig, store: Store, engine, rewrite_id: str):
        self.cfg, self.store, self.engine, self.rewrite_id = cfg, store, engine, rewrite_id
        self.pairs = load_meta_pairs(cfg.sources, cfg.meta_pairs)
        self.builder = PromptBuilder(self.pairs, cfg.dataset, cfg.seed)
        self.batch = cfg.batch_size or engine.default_batch
        self.engine_info = engine.info()
        self.prompt_set_hash = cfg.output_fingerprint()["prompt_set_hash"]
        self.filter = RewriteFilter(cfg.faithfulness)

    def rewrite(self, shard: Shard) -> dict | None:
        """Rewrite one shard; None when another attempt already published it."""
        from laclip.rewrite.engines.base import Request

        cfg, t0 = self.cfg, time.perf_counter()
        parsed = read_rows(self.store, shard)  # a bad file stops here (DataError); bad rows are skipped
        rows = parsed.rows
        keys = [k for k, _ in rows]
        if parsed.skipped:
            log("rows-skipped", shard=shard.id, **dict(parsed.skipped))
        digest = rows_digest(rows)
        t_read = time.perf_counter()

        n, sources = len(rows), cfg.sources
        originals = [c for _, c in rows]
        cleaned = [clean_caption(c, cfg.max_caption_words, cfg.max_caption_chars) for c in originals]
        rewrites = [list(originals) for _ in sources]  # start from the fallback
        rejected: list[list[str | None]] = [[None] * n for _ in sources]
        live = [i for i in range(n) if cleaned[i]]
        if len(live) < n:
            for i in set(range(n)) - set(live):
                for col in rejected:
                    col[i] = "empty_input"
        # (prefix id, source, row, request): sorting puts identical prefixes side by side (prefix caching).
        todo = []
        for j, s in enumerate(sources):
            build = self.builder.for_shard(shard.id, s)
            built = [build(keys[i], cleaned[i]) for i in live]
            todo += [(b[1], j, i, Request(b[0], cleaned[i], b[2])) for b, i in zip(built, live)]
        todo.sort(key=itemgetter(0))
        t_prompt = time.perf_counter()

        engine_s = filter_s = 0.0
        prepared = [self.filter.prepare(c) for c in cleaned]  # once per caption, for all its sources
        for b in range(0, len(todo), self.batch):
            chunk = todo[b:b + self.batch]
            e0 = time.perf_counter()
            outs = self.engine([t[3] for t in chunk])
            e1 = time.perf_counter()
            for (_, j, i, _r), text in zip(chunk, outs):
                verdict = self.filter(text, prepared[i])
                if verdict.reason is None:
                    rewrites[j][i] = verdict.text
                else:
                    rejected[j][i] = verdict.column
            engine_s += e1 - e0
            filter_s += time.perf_counter() - e1

        used = self.engine.take_counts() if hasattr(self.engine, "take_counts") else None
        per_source = {}
        for j, s in enumerate(sources):
            reasons = {r: 0 for r in REASONS}
            for r in rejected[j]:
                if r is not None:
                    reasons[reason_of(r)] += 1
            per_source[s] = {"rewritten": n - sum(reasons.values()),
                             "fallbacks": {r: c for r, c in reasons.items() if c}}
        t_write = time.perf_counter()
        stats = {
            "dataset": cfg.dataset, "shard": shard.id, "rewrite_id": self.rewrite_id, "captions": n,
            "prompts": len(todo), "sources": per_source, "skipped_rows": dict(parsed.skipped),
            "fallbacks_total": sum(sum(v["fallbacks"].values()) for v in per_source.values()),
            "engine": self.engine_info, **({"operations_used": used} if used is not None else {}),
            "model": cfg.model, "sampling": cfg.sampling.model_dump(),
            "prompt_set_hash": self.prompt_set_hash, "input_digest": digest,
            "laclip_version": __version__, "host": socket.gethostname(),
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        secs = {"read": t_read - t0, "prompts": t_prompt - t_read, "engine": engine_s, "filter": filter_s}
        secs["total"] = sum(secs.values())
        stats["seconds"] = {k: round(v, 4) for k, v in secs.items()}
        stats["captions_per_s"] = round(n / secs["total"], 1) if secs["total"] else None
        data = out.table_bytes(out.build_table(keys, originals, sources, rewrites, rejected, stats))
        if not claim.write_once(self.store, layout.rewrite_shard(cfg.dataset, self.rewrite_id, shard.id), data):
            log("shard-raced", shard=shard.id, note="another attempt published it first")
            return None
        # The copy in the parquet metadata has no write time; the .stats.json adds it.
        secs["write"] = time.perf_counter() - t_write
        secs["total"] += secs["write"]
        cpu = secs["total"] - engine_s
        stats["seconds"] = {k: round(v, 4) for k, v in secs.items()}
        stats["captions_per_s"] = round(n / secs["total"], 1)
        stats["pipeline_captions_per_s"] = round(n / cpu, 1) if cpu > 0 else None
        claim.write_once(self.store, layout.rewrite_stats(cfg.dataset, self.rewrite_id, shard.id), claim.dump(stats))
        return stats


REDO = "Rewrite it afresh under a new id (--rewrite-id NEW)"


def run_index(cfg: RewriteConfig, store: Store, index: int, engine=None) -> list[dict]:
    """Rewrite the shards of one completion index; returns the stats of the shards written."""
    cfg.check()
    rewrite_id = cfg.resolved_rewrite_id()
    shards = resolve_shards(store, cfg.dataset)
    if cfg.num_shards is not None and cfg.num_shards != len(shards):
        # The Job's completions were counted from the submit-time listing; slicing a different
        # listing would skip shards (or rewrite some twice) while every index still succeeds.
        raise DataError(
            f"dataset {cfg.dataset!r} has {len(shards)} shards now but {cfg.num_shards} when this rewrite was "
            "submitted: resubmit it (finished shards are kept and skipped)"
        )
    k = cfg.shards_per_pod
    mine = shards[index * k:(index + 1) * k]
    if not mine:
        log("no-shards", index=index, shards=len(shards), shards_per_pod=k)
        return []
    if cfg.engine == "eda":  # on every run, finished shards or not: what this rewrite set lacks
        from laclip.rewrite.wordnet import OPERATIONS

        missing = [op for op in OPERATIONS if op not in cfg.eda_operations()]
        if missing:
            logger.warning("eda: rewrite %s runs without %s (no WordNet where it was made)", rewrite_id,
                           ", ".join(missing))
    pairs = load_meta_pairs(cfg.sources, cfg.meta_pairs)
    ensure_run_record(store, cfg, rewrite_id, pairs)
    todo = out.shard_claims(store, cfg.dataset, rewrite_id, mine, REDO)
    for shard in mine:
        if shard not in todo:
            log("shard-skipped", shard=shard.id, reason="output exists, made from these captions")
    if not todo:
        return []
    own_engine = engine is None
    if own_engine:
        from laclip.rewrite.engines import make_engine

        engine = make_engine(cfg)
    rewriter = ShardRewriter(cfg, store, engine, rewrite_id)
    results = []
    try:
        for shard in todo:
            log("shard-start", shard=shard.id, rewrite_id=rewrite_id, engine=cfg.engine)
            stats = rewriter.rewrite(shard)
            if stats:
                log("shard-done", shard=shard.id, captions=stats["captions"], fallbacks=stats["fallbacks_total"],
                    captions_per_s=stats["captions_per_s"])
                results.append(stats)
    finally:
        if own_engine:
            engine.close()
    return results


def run(cfg: RewriteConfig) -> list[dict]:
    """The pod's work: the shards of this pod's completion index."""
    return run_index(cfg, open_store(cfg.root), claim.completion_index(required=True))
