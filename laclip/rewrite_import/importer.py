"""Import a release of rewrites onto a dataset's shards (laclip.rewrite_import.main runs this).

Four passes, each bounded in memory:

1. shards: every shard's captions (its parquet), normalised and hashed: 16 bytes per sample kept;
2. release: the original and the rewrite files streamed once, line-aligned, in chunks; rows whose
   caption hash is a dataset caption's are candidates: their hashes stay in memory, their texts go
   to a local spill file (Arrow IPC); every file's sha256 is taken on the way;
3. choice: every sample's release row (laclip.rewrite_import.join.assign);
4. write: the spill read once in line order, the chosen rows routed to a few group files (whole
   shards each), then per shard one parquet in the rewrite stage's layout (laclip.rewrite.output:
   key, the shard's own caption, one column per source, `<source>_rejected`, plus `release_line`)
   and its `.stats.json`, create-only.

A shard whose output exists is kept when it was made from the captions the shard holds now, else
the import stops (as the rewrite stage does). The run record (config.json) names every input file
with its sha256; importing other files under the same rewrite id is refused.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from collections import Counter
from typing import Callable

import numpy as np
import pyarrow as pa

from laclip import __version__, claim, layout
from laclip.data.registry import resolve_shards
from laclip.data.shards import Shard, read_captions
from laclip.errors import DataError
from laclip.identity import rows_digest
from laclip.logs import event
from laclip.rewrite import output as out
from laclip.rewrite.config import REJECT_SUFFIX
from laclip.rewrite_import.config import NOT_RELEASED, PROVENANCE_COLUMN, ImportConfig
from laclip.rewrite_import.join import assign, combine, member, normalize, text_hash
from laclip.rewrite_import.release import Release, strip_newlines, version
from laclip.storage import open_store
from laclip.storage.base import Store

logger = logging.getLogger("laclip.rewrite_import")
GROUP_BYTES = 64 << 20  # text (uncompressed) per group file: what pass 4 holds at once, twice (sorted copy)
COUNTS = ("captions", "matched", "missing", "ambiguous", "collisions")
Progress = Callable[[str, int, int], None]


def _log(name: str, **fields) -> None:
    event(logger, name, **fields)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def run_import(cfg: ImportConfig, store: Store | None = None, progress: Progress | None = None) -> dict:
    """Import cfg's files as rewrite set cfg.resolved_rewrite_id(); returns the totals."""
    cfg = cfg.check()
    store = store or open_store(cfg.root)
    rid = cfg.resolved_rewrite_id()
    shards = resolve_shards(store, cfg.dataset)
    progress = progress or (lambda phase, done, total: None)
    reused = _reusable(store, cfg, rid, shards)
    if reused is not None:
        _log("import-reused", rewrite_id=rid, shards=len(shards))
        return reused
    t0 = time.perf_counter()
    work = tempfile.mkdtemp(prefix="laclip-import-", dir=cfg.work_dir)
    try:
        samples = _read_shards(store, cfg, rid, shards, progress)
        t1 = time.perf_counter()
        cands, release = _read_release(cfg, samples, work, progress)
        _ensure_record(store, cfg, rid, release)
        t2 = time.perf_counter()
        plan = assign(samples["hash"], cands["hash"], cands["rewrites"], cfg.choose)
        t3 = time.perf_counter()
        totals = _write(store, cfg, rid, shards, samples, plan, cands, work, progress)
        t4 = time.perf_counter()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    used = plan.choice[plan.choice >= 0]
    totals.update(rewrite_id=rid, release_rows=release["original"]["rows"], candidate_rows=int(len(cands["hash"])),
                  release_rows_used=int(len(np.unique(used))), release_duplicate_rows=cands["duplicate_rows"],
                  reused=False, seconds={"shards": round(t1 - t0, 2), "release": round(t2 - t1, 2),
                                         "choice": round(t3 - t2, 2), "write": round(t4 - t3, 2)})
    store.write_text(layout.rewrite_summary(cfg.dataset, rid), json.dumps(totals, indent=2) + "\n")
    _log("import-done", **{k: totals[k] for k in (*COUNTS, "shards", "release_rows")})
    return totals


# -- pass 1: the shards ------------------------------------------------------------------------
def _read_shards(store: Store, cfg: ImportConfig, rid: str, shards: list[Shard], progress: Progress) -> dict:
    hashes, shard_of, row_of, digests = [], [], [], []
    done = set(layout.rewritten_shards(store, cfg.dataset, rid))
    for i, shard in enumerate(shards):
        rows = read_captions(store, shard)
        digests.append(rows_digest(rows))
        if shard.id in done:
            stats = out.recorded_stats(store, cfg.dataset, rid, shard.id)
            out.check_made_from(store, cfg.dataset, rid, shard, rows, stats, REDO)
        hashes.append(text_hash(normalize([c for _, c in rows])))
        shard_of.append(np.full(len(rows), i, np.int32))
        row_of.append(np.arange(len(rows), dtype=np.int32))
        progress("shards", i + 1, len(shards))
    return {"hash": np.concatenate(hashes) if hashes else np.zeros(0, np.uint64),
            "shard": np.concatenate(shard_of) if shard_of else np.zeros(0, np.int32),
            "row": np.concatenate(row_of) if row_of else np.zeros(0, np.int32),
            "digest": digests, "done": done}


REDO = "Import afresh under a new id (--rewrite-id NEW)"


# -- pass 2: the release -----------------------------------------------------------------------
def _read_release(cfg: ImportConfig, samples: dict, work: str, progress: Progress) -> tuple[dict, dict]:
    wanted = np.unique(samples["hash"])
    names = list(cfg.sources)
    schema = pa.schema([("line", pa.int64()), ("caption", pa.string()), *((n, pa.string()) for n in names)])
    spill_path = os.path.join(work, "candidates.arrow")
    c_hash, c_rw, all_hash = [], [], []
    spilled = 0  # uncompressed bytes of the candidate rows
    release = Release(cfg)
    try:
        with pa.OSFile(spill_path, "wb") as sink, \
                pa.ipc.new_file(sink, schema, options=pa.ipc.IpcWriteOptions(compression="lz4")) as spill:
            for chunk in release.chunks(cfg.chunk_rows):
                captions = pa.array(chunk.captions, pa.string())
                h = text_hash(normalize(captions))
                all_hash.append(h)
                mask = member(wanted, h)
                if mask.any():
                    idx = pa.array(np.flatnonzero(mask))
                    texts = {n: strip_newlines(chunk.rewrites[n]).take(idx) for n in names}
                    c_hash.append(h[mask])
                    c_rw.append(combine([text_hash(texts[n]) for n in names]))
                    lines = pa.array(np.flatnonzero(mask) + chunk.start, pa.int64())
                    batch = pa.record_batch([lines, captions.take(idx), *texts.values()], schema=schema)
                    spilled += batch.nbytes
                    spill.write_batch(batch)
                progress("release", chunk.start + len(chunk.captions), 0)
        records = release.records()
    finally:
        release.close()
    every = np.concatenate(all_hash) if all_hash else np.zeros(0, np.uint64)
    if len(every) == 0:
        raise DataError(f"{cfg.original} holds no caption rows" + (
            " (CSV rows count when their first field ends in .png/.jpg/.jpeg: --set csv_rows=all counts every row)"
            if cfg.tabular and cfg.csv_rows == "images" else ""))
    _, counts = np.unique(every, return_counts=True)
    cands = {"hash": np.concatenate(c_hash) if c_hash else np.zeros(0, np.uint64),
             "rewrites": np.concatenate(c_rw) if c_rw else np.zeros(0, np.uint64),
             "spill": spill_path, "spilled_bytes": spilled, "duplicate_rows": int(counts[counts > 1].sum())}
    return cands, records


def _ensure_record(store: Store, cfg: ImportConfig, rid: str, inputs: dict) -> None:
    """config.json, written once: a later import under this id must read the same files."""
    path = layout.rewrite_record(cfg.dataset, rid)
    sources = list(cfg.sources)
    record = {
        "rewrite_id": rid, "dataset": cfg.dataset, "kind": "import", "sources": sources,
        "fingerprint": cfg.output_fingerprint(), "inputs": inputs,
        "normalization": "Unicode NFC, trimmed, every run of white space one space",
        "choose": cfg.choose, "filter": cfg.filter, "config": json.loads(cfg.worker_json()),
        "columns": ["key", "caption", *sources, *(s + REJECT_SUFFIX for s in sources), PROVENANCE_COLUMN],
        "laclip_version": __version__, "created_at": _now(),
    }
    folder = store.url_of(layout.rewrite_folder(cfg.dataset, rid))
    fresh = (f"choose another --rewrite-id, or delete {folder}/ to import again" if cfg.rewrite_id else
             f"the derived id names the files by their paths, and they changed since: give this import its own "
             f"--rewrite-id, or delete {folder}/ to import again")
    claim.claim(store, path, record, key=_identity, what="an import of other files or settings",
          fresh=f"its shards would mix with these; {fresh}")
    return


def _identity(record: dict) -> dict:
    """What decides an import: its settings and the content of every file read."""
    inputs = record.get("inputs") or {}
    files = {"original": inputs.get("original", {}), **inputs.get("sources", {})}
    return {"settings": record.get("fingerprint"), "files": {k: v.get("sha256") for k, v in files.items()}}


def _reusable(store: Store, cfg: ImportConfig, rid: str, shards: list[Shard]) -> dict | None:
    """The totals of a finished import of the same files (their versions unchanged), else None."""
    record = claim.read_record(store, layout.rewrite_record(cfg.dataset, rid))
    if record is None:
        return None
    inputs = record.get("inputs", {})
    files = {cfg.original: inputs.get("original", {}), **{cfg.sources[n]: inputs.get("sources", {}).get(n, {})
                                                          for n in cfg.sources}}
    if record.get("fingerprint") != cfg.output_fingerprint() or any(
            not v.get("version") or version(url) != v.get("version") for url, v in files.items()):
        return None
    if out.shard_claims(store, cfg.dataset, rid, shards, REDO, restore=False):
        return None
    totals = import_totals(store, cfg.dataset, rid)
    try:
        before = claim.read_record(store, layout.rewrite_summary(cfg.dataset, rid)) or {}
    except DataError:
        before = {}
    totals.update({k: v for k, v in before.items() if k.startswith(("release_", "candidate_"))})
    totals.update(rewrite_id=rid, reused=True)
    return totals


def import_totals(store: Store, dataset: str, rid: str) -> dict:
    """Matched, missing, ambiguous... summed over the shards' stats files."""
    totals: Counter = Counter()
    shards = layout.rewritten_shards(store, dataset, rid)
    for sid in shards:
        stats = out.recorded_stats(store, dataset, rid, sid, restore=False)
        totals.update({k: int(stats.get(k, 0)) for k in COUNTS})
    return {"shards": len(shards), **{k: totals[k] for k in COUNTS}}


# -- pass 4: the outputs -----------------------------------------------------------------------
def _write(store, cfg, rid, shards, samples, plan, cands, work, progress) -> dict:
    names = list(cfg.sources)
    chosen = np.flatnonzero(plan.choice >= 0)
    by_line = chosen[np.argsort(plan.choice[chosen], kind="stable")]  # samples in the order of their rows
    # contiguous shard groups of bounded spilled text (the spill's size per candidate row as the measure)
    per_row = cands["spilled_bytes"] / max(1, len(cands["hash"]))
    matched_per_shard = np.bincount(samples["shard"][chosen], minlength=len(shards))
    group_of = np.zeros(len(shards), np.int64)
    acc, g = 0.0, 0
    for i, m in enumerate(matched_per_shard):
        if acc and acc + m * per_row > GROUP_BYTES:
            g, acc = g + 1, 0.0
        group_of[i], acc = g, acc + m * per_row
    groups = int(group_of.max()) + 1 if len(shards) else 0
    schema = pa.schema([("shard", pa.int32()), ("row", pa.int32()), ("line", pa.int64()), ("caption", pa.string()),
                        *((n, pa.string()) for n in names)])
    writers = [pa.ipc.new_stream(os.path.join(work, f"group-{k}.arrow"), schema,
                                 options=pa.ipc.IpcWriteOptions(compression="lz4")) for k in range(groups)]
    try:
        reader = pa.ipc.open_file(pa.OSFile(cands["spill"], "rb"))  # not mapped: read batches leave memory
        base, pos = 0, 0
        for b in range(reader.num_record_batches):
            batch = reader.get_batch(b)
            end = int(np.searchsorted(plan.choice[by_line], base + batch.num_rows, side="left"))
            mine = by_line[pos:end]
            if len(mine):
                local = batch.take(pa.array(plan.choice[mine] - base))
                grp = group_of[samples["shard"][mine]]
                cols = [pa.array(samples["shard"][mine]), pa.array(samples["row"][mine]), *local.columns]
                part = pa.record_batch(cols, schema=schema)
                for k in np.unique(grp):
                    writers[k].write_batch(part.filter(pa.array(grp == k)))
            base, pos = base + batch.num_rows, end
    finally:
        for w in writers:
            w.close()
    shard_start = np.r_[0, np.cumsum(np.bincount(samples["shard"], minlength=len(shards)))]
    totals: Counter = Counter()
    written = 0
    for k in range(groups):
        table = pa.ipc.open_stream(os.path.join(work, f"group-{k}.arrow")).read_all()
        order = np.lexsort((table.column("row").to_numpy(), table.column("shard").to_numpy()))
        table = table.take(pa.array(order))
        shard_col = table.column("shard").to_numpy()
        for i in np.flatnonzero(group_of == k):
            lo, hi = np.searchsorted(shard_col, i, "left"), np.searchsorted(shard_col, i, "right")
            span = slice(shard_start[i], shard_start[i + 1])
            if shards[i].id not in samples["done"]:
                stats = _write_shard(store, cfg, rid, shards[i], table.slice(lo, hi - lo), plan.ambiguous[span],
                                     samples["digest"][i])
            else:
                stats = out.recorded_stats(store, cfg.dataset, rid, shards[i].id)
            totals.update({c: int(stats.get(c, 0)) for c in COUNTS})
            written += 1
            progress("write", written, len(shards))
    return {"shards": len(shards), **{c: totals[c] for c in COUNTS}}


def _write_shard(store: Store, cfg: ImportConfig, rid: str, shard: Shard, matched: pa.Table, ambiguous: np.ndarray,
                 digest: str) -> dict:
    import pyarrow.compute as pc

    t0 = time.perf_counter()
    rows = read_captions(store, shard)
    n, names = len(rows), list(cfg.sources)
    captions = pa.array([c for _, c in rows], pa.string())
    at = matched.column("row").to_numpy()
    if len(at):  # the normalised texts of both sides, compared: a hash collision keeps the caption
        same = pc.equal(normalize(captions.take(pa.array(at))), normalize(matched.column("caption")))
        same = same.fill_null(False).to_numpy(zero_copy_only=False)
    else:
        same = np.zeros(0, bool)
    good = at[same]
    hit = np.zeros(n, bool)
    hit[good] = True
    lines = np.zeros(n, np.int64)
    lines[good] = matched.column("line").to_numpy()[same]
    check = None
    if cfg.filter == "laclip":
        from laclip.rewrite.filters import check as filter_check
        from laclip.rewrite.filters import normal
        from laclip.rewrite.prompts import clean_caption

        def check(text: str, caption: str):
            clean = clean_caption(caption, 64, 400)
            return filter_check(text, clean, normal(clean))
    cols: dict[str, pa.Array] = {"key": pa.array([k for k, _ in rows], pa.string()), "caption": captions}
    reasons_of: dict[str, pa.Array] = {}
    per_source = {}
    good_captions = captions.take(pa.array(good)).to_pylist() if check is not None else None
    for name in names:
        texts = pc.utf8_trim_whitespace(matched.column(name).filter(pa.array(same)).combine_chunks().fill_null(""))
        reason = np.full(n, NOT_RELEASED, object)
        if check is not None:
            checked = [check(t, c) if t else ("", "empty") for t, c in zip(texts.to_pylist(), good_captions)]
            texts = pa.array([t for t, _ in checked], pa.string())
            reason[good] = [r for _, r in checked]
        else:
            reason[good] = np.where(pc.equal(pc.binary_length(texts), 0).to_numpy(zero_copy_only=False), "empty",
                                    None)
        kept = np.zeros(n, bool)
        kept[good] = [r is None for r in reason[good]]
        keep_texts = texts.filter(pa.array(kept[good]))
        cols[name] = pc.replace_with_mask(captions, pa.array(kept), keep_texts) if kept.any() else captions
        reasons_of[name + REJECT_SUFFIX] = pa.array(reason, pa.string())
        counts = Counter(r for r in reason if r is not None)
        per_source[name] = {"rewritten": int(kept.sum()), "fallbacks": dict(counts.most_common())}
    amb = int(np.count_nonzero(ambiguous[good])) if len(good) else 0
    stats = {
        "dataset": cfg.dataset, "shard": shard.id, "rewrite_id": rid, "captions": n, "matched": int(len(good)),
        "missing": n - int(len(good)), "ambiguous": amb, "collisions": int(len(at) - len(good)), "prompts": 0,
        "sources": per_source, "fallbacks_total": sum(sum(v["fallbacks"].values()) for v in per_source.values()),
        "engine": {"name": "import", "choose": cfg.choose, "filter": cfg.filter}, "input_digest": digest,
        "laclip_version": __version__, "host": socket.gethostname(), "finished_at": _now(),
    }
    cols.update(reasons_of)
    cols[PROVENANCE_COLUMN] = pa.array(lines, pa.int64(), mask=~hit)
    table = pa.table(cols).replace_schema_metadata({out.META_SOURCES: json.dumps(names).encode(),
                                                    out.META_STATS: json.dumps(stats).encode()})
    stats["seconds"] = round(time.perf_counter() - t0, 4)
    if not claim.write_once(store, layout.rewrite_shard(cfg.dataset, rid, shard.id), out.table_bytes(table)):
        _log("shard-raced", shard=shard.id, note="another attempt published it first")
    claim.write_once(store, layout.rewrite_stats(cfg.dataset, rid, shard.id), claim.dump(stats))
    _log("shard-done", shard=shard.id, captions=n, matched=stats["matched"], missing=stats["missing"],
         ambiguous=amb)
    return stats
