"""Where rewrites live and what they look like. Read this if you consume them (the trainer does).

Layout under the store root::

    rewrites/<dataset>/<rewrite-id>/config.json        the run record (settings, meta pairs, hashes)
    rewrites/<dataset>/<rewrite-id>/NNNNN.parquet      one per input shard datasets/<dataset>/NNNNN.*
    rewrites/<dataset>/<rewrite-id>/NNNNN.stats.json   counts, fallbacks by reason, speed, engine

A shard is done when its parquet exists (written create-only, atomically). Parquet columns,
one row per usable successful input sample (bad rows are skipped and counted in the stats,
laclip.data.shards), in the input parquet's order, every key exactly once:

    key                 string  the img2dataset key (joins with datasets/<dataset>/NNNNN.tar)
    caption             string  the original caption, unchanged
    <source>            string  one per source, in config order (default chatgpt, bard, coco,
                                human): the rewrite, or the original caption when the output was
                                rejected; never null
    <source>_rejected   string  null when the rewrite was kept, else the reason (filters.REASONS)

The source columns are listed in the run record (`sources`) and in the parquet's key-value
metadata (`laclip.sources`, JSON); `source_columns(table)` reads them. The `eda` engine fills
the same columns (one seeded augmentation per source), so a trainer treats both alike. An
imported set (laclip.rewrite_import: the paper's released rewrites) has the same columns plus
`release_line` (int64, the release row the rewrites came from; null where the caption is not in
the release, whose `<source>_rejected` then reads `not_in_release`).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from laclip import claim, layout
from laclip.data.shards import arrow_owned
from laclip.errors import DataError
from laclip.rewrite.config import REJECT_SUFFIX
from laclip.storage.base import Store

META_SOURCES = b"laclip.sources"
META_STATS = b"laclip.stats"


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


def read_shard(store: Store, dataset: str, rewrite_id: str, shard_id: str,
               columns: list[str] | None = None) -> pa.Table:
    path = layout.rewrite_shard(dataset, rewrite_id, shard_id)
    data = store.read_bytes(path)
    try:
        return pq.read_table(pa.BufferReader(arrow_owned(data)), columns=columns)  # not BytesIO: see arrow_owned
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{store.url_of(path)} is not a readable rewrite parquet: {exc}") from None


def read_schema(store: Store, dataset: str, rewrite_id: str, shard_id: str) -> pa.Schema:
    with store.open_read(layout.rewrite_shard(dataset, rewrite_id, shard_id)) as f:
        return pq.read_schema(f)


def read_originals(store: Store, dataset: str, rewrite_id: str, shard_id: str) -> list[tuple[str, str]]:
    """(key, original caption) of every row: what the shard's rewrites were made from."""
    table = read_shard(store, dataset, rewrite_id, shard_id, columns=["key", "caption"])
    return list(zip(table.column("key").to_pylist(), table.column("caption").to_pylist()))


def source_columns(table: pa.Table) -> list[str]:
    meta = table.schema.metadata or {}
    if META_SOURCES in meta:
        return json.loads(meta[META_SOURCES])
    return [c for c in table.column_names if c not in ("key", "caption") and not c.endswith(REJECT_SUFFIX)]


@dataclass
class ShardRewrites:
    """One shard's rewrites as a trainer uses them: key -> (original caption, kept rewrites), and key ->
    the source of each kept rewrite (`origins`, for a draw weighted by source)."""

    sources: list[str]
    rows: dict[str, tuple[str, list[str]]]
    origins: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def get(self, key: str) -> tuple[str, list[str]] | None:
        return self.rows.get(key)


def _text(field: pa.Field) -> bool:
    return pa.types.is_string(field.type) or pa.types.is_large_string(field.type)


def read_rewrites(store: Store, dataset: str, rewrite_id: str, shard_id: str) -> ShardRewrites:
    """The shard's rewrites: per key the original caption and the rewrites that were kept (a
    rejected one holds the caption itself, and drawing it would weigh the original up). NotFound
    when the shard has none; DataError for a parquet that is not laid out as documented above."""
    where = store.url_of(layout.rewrite_shard(dataset, rewrite_id, shard_id))
    table = read_shard(store, dataset, rewrite_id, shard_id)
    schema = table.schema
    sources = source_columns(table)
    for name in ("key", "caption", *sources):
        if name not in schema.names or not _text(schema.field(name)):
            raise DataError(f"{where} has no text column {name!r} (columns: {', '.join(schema.names)})")
    keys, captions = table.column("key").to_pylist(), table.column("caption").to_pylist()
    texts = [table.column(s).to_pylist() for s in sources]
    none = [None] * len(keys)
    rejected = [table.column(s + REJECT_SUFFIX).to_pylist() if s + REJECT_SUFFIX in schema.names else none
                for s in sources]
    rows, origins = {}, {}
    for i, key in enumerate(keys):
        if key is None or captions[i] is None:
            continue  # no sample can match it
        kept = [(t[i], s) for t, r, s in zip(texts, rejected, sources) if t[i] and r[i] is None]
        rows[key] = (captions[i], [t for t, _ in kept])
        origins[key] = tuple(s for _, s in kept)
    return ShardRewrites(sources, rows, origins)


def read_record(store: Store, dataset: str, rewrite_id: str) -> dict:
    """The run record (config.json) of a rewrite set that has finished shards ({} for a set written
    by other tools without one); DataError naming the sets there are when it has no shard."""
    folder = layout.rewrite_folder(dataset, rewrite_id)
    if not layout.rewritten_shards(store, dataset, rewrite_id):
        found = layout.rewrite_ids(store, dataset)
        what = "have no finished shard yet in" if rewrite_id in found else "do not exist:"
        raise DataError(f"rewrites {rewrite_id!r} of dataset {dataset!r} {what} {store.url_of(folder)}/ "
                        f"(rewrite sets of {dataset}: {', '.join(found) or 'none'})")
    record = claim.read_record(store, layout.rewrite_record(dataset, rewrite_id),
                               "delete it, or make the rewrite set again under another id")
    return record if record is not None else {}


def stats_of(table_or_schema) -> dict:
    schema = getattr(table_or_schema, "schema", table_or_schema)
    return json.loads((schema.metadata or {}).get(META_STATS, b"{}"))


# -- is a shard done, and from what ----------------------------------------------------------
def shard_done(listing: set[str], dataset: str, rewrite_id: str, shard_id: str) -> bool:
    """Done: its parquet and its .stats.json are published (`listing`: the set folder's paths)."""
    return {layout.rewrite_shard(dataset, rewrite_id, shard_id), layout.rewrite_stats(dataset, rewrite_id, shard_id)} \
        <= listing


def recorded_stats(store: Store, dataset: str, rewrite_id: str, shard_id: str, restore: bool = True) -> dict:
    """The stats of a published shard. A pod killed between the parquet and its .stats.json, or a
    damaged .stats.json, leaves them in the parquet's own copy: read from there (and, with `restore`,
    written back create-only: what a pod finishing the shard does)."""
    path = layout.rewrite_stats(dataset, rewrite_id, shard_id)
    try:
        found = claim.read_record(store, path)
    except DataError:
        found = None
    if found is not None:
        return found
    stats = stats_of(read_schema(store, dataset, rewrite_id, shard_id))
    if restore:
        claim.write_once(store, path, claim.dump(stats))
    return stats


def check_made_from(store: Store, dataset: str, rewrite_id: str, shard, rows: list[tuple[str, str]], stats: dict,
                    redo: str) -> None:
    """A finished shard is reused only when it was made from the (key, caption) rows the dataset shard
    holds now: the recorded input digest, or the same rows in another order (img2dataset writes a
    shard in download order, so a download of the same URL list again reorders it). Else a DataError
    that says what changed and `redo`."""
    from laclip.identity import rows_digest

    recorded = stats.get("input_digest")
    if recorded == rows_digest(rows):
        return
    made_from = read_originals(store, dataset, rewrite_id, shard.id)
    changed, added, removed = claim.row_changes(made_from, rows)
    if recorded and not (changed or added or removed) and len(made_from) == len(rows):
        return  # the same rows, in another order: the same input
    what = (f"{changed} of {len(rows)} captions differ, {added} keys added, {removed} removed"
            if recorded else "its rewrites record no input digest")
    raise DataError(
        f"shard {store.url_of(shard.parquet)} changed since rewrite {rewrite_id!r} was made from it ({what}; a "
        f"re-download from a changed URL list gives the same keys to other images): its rewrites would describe "
        f"other images. {redo}, or delete {store.url_of(layout.rewrite_folder(dataset, rewrite_id))}/ to redo this one"
    )


def shard_claims(store: Store, dataset: str, rewrite_id: str, shards: list, redo: str,
                 restore: bool = True) -> list:
    """The shards of `shards` still to do. A shard with a published parquet is done once it is checked
    to be made from the captions there now (check_made_from raises otherwise); with `restore`, its
    missing .stats.json is written back (a pod's job), else (a reader such as `--local`'s planner) a
    shard without one counts as pending, so that the pod which restores it runs."""
    from laclip.data.shards import read_captions

    listing = set(store.list(layout.rewrite_folder(dataset, rewrite_id) + "/"))
    todo = []
    for shard in shards:
        if layout.rewrite_shard(dataset, rewrite_id, shard.id) not in listing:
            todo.append(shard)
            continue
        stats = recorded_stats(store, dataset, rewrite_id, shard.id, restore=restore)
        check_made_from(store, dataset, rewrite_id, shard, read_captions(store, shard), stats, redo)
        if not restore and not shard_done(listing, dataset, rewrite_id, shard.id):
            todo.append(shard)
    return todo


def summarize(store: Store, dataset: str, rewrite_id: str) -> dict:
    """Totals over the finished shards of a run, from their stats files (else the parquet's copy)."""
    from collections import Counter

    done = layout.rewritten_shards(store, dataset, rewrite_id)
    total = {"shards": len(done), "captions": 0, "prompts": 0, "kept": 0, "fallbacks": Counter(), "engine": {},
             "skipped_rows": Counter()}
    for sid in done:
        stats = recorded_stats(store, dataset, rewrite_id, sid, restore=False)
        total["captions"] += stats.get("captions", 0)
        total["prompts"] += stats.get("prompts", 0)
        for per_source in stats.get("sources", {}).values():
            total["kept"] += per_source.get("rewritten", 0)
            total["fallbacks"].update(per_source.get("fallbacks", {}))
        total["engine"] = stats.get("engine") or total["engine"]
        total["skipped_rows"].update(stats.get("skipped_rows") or {})
    total["fallbacks"] = dict(total["fallbacks"].most_common())
    total["skipped_rows"] = dict(total["skipped_rows"].most_common())
    return total
