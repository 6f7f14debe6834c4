"""Where rewrites live and what they look like. Read this if you consume them (the trainer does).

Layout under the store root::

    rewrites/<dataset>/<rewrite-id>/config.json        the run record (settings, meta pairs, hashes)
    rewrites/<dataset>/<rewrite-id>/NNNNN.parquet      one per input shard datasets/<dataset>/NNNNN.*
    rewrites/<dataset>/<rewrite-id>/NNNNN.stats.json   counts, fallbacks by reason, speed, engine

A shard is done when its parquet exists (written create-only, atomically). Parquet columns,
one row per successful input sample, in the input parquet's order, every key exactly once:

    key                 string  the img2dataset key (joins with datasets/<dataset>/NNNNN.tar)
    caption             string  the original caption, unchanged
    <source>            string  one per source, in config order (default chatgpt, bard, coco,
                                human): the rewrite, or the original caption when the output was
                                rejected; never null
    <source>_rejected   string  null when the rewrite was kept, else the reason (filters.REASONS)

The source columns are listed in the run record (`sources`) and in the parquet's key-value
metadata (`laclip.sources`, JSON); `source_columns(table)` reads them. The `eda` engine fills
the same columns (one seeded augmentation per source), so a trainer treats both alike.
"""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq

from laclip.data.shards import arrow_owned
from laclip.rewrite.config import REJECT_SUFFIX
from laclip.storage.base import Store, join

REWRITES_PREFIX = "rewrites"
RUN_RECORD = "config.json"
META_SOURCES = b"laclip.sources"
META_STATS = b"laclip.stats"


def rewrite_folder(dataset: str, rewrite_id: str) -> str:
    return join(REWRITES_PREFIX, dataset, rewrite_id)


def shard_output(dataset: str, rewrite_id: str, shard_id: str) -> str:
    return join(rewrite_folder(dataset, rewrite_id), f"{shard_id}.parquet")


def shard_stats(dataset: str, rewrite_id: str, shard_id: str) -> str:
    return join(rewrite_folder(dataset, rewrite_id), f"{shard_id}.stats.json")


def build_table(keys: list[str], captions: list[str], sources: list[str], rewrites: list[list[str]],
                rejected: list[list[str | None]], stats: dict) -> pa.Table:
    cols = {"key": pa.array(keys, pa.string()), "caption": pa.array(captions, pa.string())}
    for s, col in zip(sources, rewrites):
        cols[s] = pa.array(col, pa.string())
    for s, col in zip(sources, rejected):
        cols[s + REJECT_SUFFIX] = pa.array(col, pa.string())
    table = pa.table(cols)
    meta = {META_SOURCES: json.dumps(sources).encode(), META_STATS: json.dumps(stats).encode()}
    return table.replace_schema_metadata(meta)


def table_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def read_shard(store: Store, dataset: str, rewrite_id: str, shard_id: str) -> pa.Table:
    data = store.read_bytes(shard_output(dataset, rewrite_id, shard_id))
    return pq.read_table(pa.BufferReader(arrow_owned(data)))  # not BytesIO: see arrow_owned


def source_columns(table: pa.Table) -> list[str]:
    meta = table.schema.metadata or {}
    if META_SOURCES in meta:
        return json.loads(meta[META_SOURCES])
    return [c for c in table.column_names if c not in ("key", "caption") and not c.endswith(REJECT_SUFFIX)]


def stats_of(table_or_schema) -> dict:
    schema = getattr(table_or_schema, "schema", table_or_schema)
    return json.loads((schema.metadata or {}).get(META_STATS, b"{}"))


def list_done(store: Store, dataset: str, rewrite_id: str) -> list[str]:
    """Shard ids whose rewrite parquet exists."""
    folder = rewrite_folder(dataset, rewrite_id) + "/"
    return [p[len(folder):-len(".parquet")] for p in store.list(folder) if p.endswith(".parquet")]


def summarize(store: Store, dataset: str, rewrite_id: str) -> dict:
    """Totals over the finished shards of a run, from their stats files (else the parquet's copy)."""
    from collections import Counter

    from laclip.errors import LaclipError

    done = list_done(store, dataset, rewrite_id)
    total = {"shards": len(done), "captions": 0, "prompts": 0, "fallbacks": Counter(), "engine": {}}
    for sid in done:
        try:
            stats = json.loads(store.read_text(shard_stats(dataset, rewrite_id, sid)))
        except (LaclipError, ValueError):  # a pod killed between parquet and stats: the parquet has them too
            with store.open_read(shard_output(dataset, rewrite_id, sid)) as f:
                stats = stats_of(pq.read_schema(f))
        total["captions"] += stats.get("captions", 0)
        total["prompts"] += stats.get("prompts", 0)
        for per_source in stats.get("sources", {}).values():
            total["fallbacks"].update(per_source.get("fallbacks", {}))
        total["engine"] = stats.get("engine") or total["engine"]
    total["fallbacks"] = dict(total["fallbacks"].most_common())
    return total
