"""Rewrites where other trainers read them: `laclip rewrites export --format wds-json`.

Writes a copy of a dataset's shards (img2dataset's layout: NNNNN.tar + NNNNN.parquet) in which
every sample's `.json` also carries its rewrites, one field per source (`"chatgpt": "..."`), for
the trainer of open_clip's development branch. Its rule for several fields: `--json-text-key
"caption;chatgpt;..."` alone is a priority list (the first non-empty field wins: the original,
always, which is plain CLIP); with `--json-text-key-probs` the fields are put in a random order
weighted by those numbers and the first non-empty one wins. So equal weights over the caption and
every source, with a rejected rewrite left empty, draw uniformly from the original and the accepted
rewrites: LaCLIP's draw, the one laclip's own trainer makes. `open_clip_args` prints both flags.
Images and `.txt` are copied byte for byte, so the shards still train as they are in open_clip 3.3's
released trainer (which reads `.txt`) and in laclip.

A source field is empty where the rewrite was rejected, where the sample has no rewrite row, or
where its rewrites were made from another caption; `laclip_rejected` names those sources with the
reason. `caption` holds the sample's own caption (img2dataset's field, filled from `.txt` where it
is missing). A dataset shard the rewrite set has no parquet for (added to the dataset after the set
was made) is refused, naming it: its samples would carry no rewrite at all.

`export.json` beside the shards records what was exported (dataset, rewrite id, the set's settings);
an export into a folder holding another export is refused. Each exported shard is done when its
`NNNNN.export.json` exists (written last, create-only): it records the content digests of the three
files the shard was made from (the dataset's tar and parquet, the rewrite parquet). A second export
into the same folder skips a shard only when those are unchanged, and refuses one made from other
inputs (say, a rewrite set deleted and made again under the same id), naming what changed.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from typing import Callable

from laclip import __version__, claim, layout
from laclip.data.registry import resolve_shards
from laclip.data.shards import iter_tar
from laclip.errors import DataError, NotFound, UsageError
from laclip.rewrite import output as out
from laclip.rewrite.config import REJECT_SUFFIX
from laclip.storage import open_store
from laclip.storage.base import Store

RECORD = "export.json"
# 2: a rejected rewrite is an empty field (1 held the caption, which open_clip's draw weighs up)
# 3: each shard records what it was made from (NNNNN.export.json), checked before it is skipped
FORMAT_VERSION = 3


def open_clip_args(dest: str, sources: list[str], text_probs: dict[str, float] | None = None) -> str:
    """open_clip's flags for an export: LaCLIP's uniform draw over the caption and the accepted rewrites,
    or the draw weighted by `text_probs` (laclip.rewrite.draw: the same as `laclip submit train
    --text-probs`)."""
    keys = ["caption", *sources]
    weights = ["1"] * len(keys) if text_probs is None else [format(text_probs[k], "g") for k in keys]
    return (f"--train-data '{dest.rstrip('/')}/{{00000..NNNNN}}.tar' --dataset-type webdataset "
            f"--json-text-key \"{';'.join(keys)}\" --json-text-key-probs {' '.join(weights)}")


def export_wds_json(store: Store, dataset: str, rewrite_id: str, dest: str,
                    progress: Callable[[int, int], None] | None = None) -> dict:
    """Export; returns counts (shards, samples, with_rewrites, fell_back...)."""
    made = out.read_record(store, dataset, rewrite_id)  # a clear error for an unknown set
    target = open_store(dest)
    if target.url.rstrip("/") == store.url.rstrip("/"):
        raise UsageError("--out must be another folder than the store root (the shards would be overwritten)")
    shards = resolve_shards(store, dataset)
    have = set(layout.rewritten_shards(store, dataset, rewrite_id))
    missing = [s.id for s in shards if s.id not in have]
    if missing:
        listed = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(f"rewrites {rewrite_id!r} have no parquet for shard {listed} of {len(shards)} of dataset "
                        f"{dataset!r} (added to the dataset since the set was made, or not rewritten yet): its "
                        "samples would carry no rewrite. Run the rewrite that made the set again (it does only the "
                        "missing shards), then export")
    _claim_folder(target, {"format": "wds-json", "format_version": FORMAT_VERSION, "dataset": dataset,
                           "rewrite_id": rewrite_id, "rewrite_set": made.get("fingerprint"),
                           "source_store": store.url, "laclip_version": __version__})
    inputs = {**store.digests(layout.dataset_folder(dataset) + "/"),
              **store.digests(layout.rewrite_folder(dataset, rewrite_id) + "/")}
    counts: Counter = Counter()
    for i, shard in enumerate(shards):
        made_from = {"tar": inputs.get(shard.tar), "parquet": inputs.get(shard.parquet),
                     "rewrites": inputs.get(layout.rewrite_shard(dataset, rewrite_id, shard.id))}
        marker = f"{shard.id}.{RECORD}"
        before = claim.read_record(target, marker, f"delete {target.url}/ and export again")
        if before is not None:
            diff = claim.changes(before.get("made_from"), made_from)
            if diff:
                raise UsageError(f"{target.url_of(marker)} records shard {shard.id} exported from other inputs "
                                 f"({claim.summary(diff)}): export into another folder, or delete "
                                 f"{target.url}/ to export again")
            counts["shards_skipped"] += 1
        else:
            counts.update(_export_shard(store, target, dataset, rewrite_id, shard, f"{shard.id}.tar"))
            target.write_bytes(f"{shard.id}.parquet", store.read_bytes(shard.parquet))
            claim.write_once(target, marker, claim.dump({"shard": shard.id, "made_from": made_from}))  # last: done
        counts["shards"] += 1
        if progress:
            progress(i + 1, len(shards))
    return dict(counts)


def _claim_folder(target: Store, record: dict) -> None:
    """export.json: written once; another export (another set, another laclip's format) is refused."""
    if claim.write_once(target, RECORD, claim.dump(record)):
        return
    theirs = claim.read_record(target, RECORD, "export into another folder") or {}
    if theirs.get("format_version") != FORMAT_VERSION:
        raise UsageError(f"{target.url_of(RECORD)} records an export by an older laclip (rejected rewrites hold the "
                         "caption, or its shards record not what they were made from): export into another folder")
    keys = ("dataset", "rewrite_id", "rewrite_set")
    diff = claim.changes({k: theirs.get(k) for k in keys}, {k: record[k] for k in keys})
    if diff:
        raise UsageError(f"{target.url_of(RECORD)} records an export of {theirs.get('dataset')!r} rewrites "
                         f"{theirs.get('rewrite_id')!r} ({claim.summary(diff)}): export into another folder")


def _export_shard(store: Store, target: Store, dataset: str, rewrite_id: str, shard, tar_name: str) -> Counter:
    counts: Counter = Counter()
    try:
        table = out.read_shard(store, dataset, rewrite_id, shard.id)
    except NotFound:
        table = None
    sources = out.source_columns(table) if table is not None else []
    rows = {}
    if table is not None:
        cols = {c: table.column(c).to_pylist() for c in table.column_names}
        for i, key in enumerate(cols["key"]):
            rows[key] = i
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for sample in iter_tar(store, shard.tar):
            key = sample["__key__"]
            caption = sample["txt"].decode("utf-8", "replace").strip() if "txt" in sample else ""
            meta = json.loads(sample["json"]) if "json" in sample else {}
            i = rows.get(key)
            if i is None or (cols["caption"][i] or "").strip() != caption:
                counts["without_rewrites" if i is None else "caption_mismatches"] += 1
                rejected = {s: "no rewrite row" if i is None else "made from another caption" for s in sources}
            else:
                rejected = {s: cols[s + REJECT_SUFFIX][i] for s in sources
                            if cols.get(s + REJECT_SUFFIX) and cols[s + REJECT_SUFFIX][i] is not None}
                rejected.update({s: "empty" for s in sources if s not in rejected and not (cols[s][i] or "").strip()})
                counts["with_rewrites"] += 1
            meta.update({s: "" if s in rejected else cols[s][i] for s in sources})
            if not isinstance(meta.get("caption"), str) or not meta["caption"].strip():
                meta["caption"] = caption
            meta["laclip_rewrite_id"] = rewrite_id
            meta["laclip_rejected"] = rejected
            sample["json"] = json.dumps(meta, ensure_ascii=False).encode()
            for ext, data in sample.items():
                if ext == "__key__":
                    continue
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
            counts["samples"] += 1
            counts["fell_back"] += len(rejected)
    target.write_bytes(tar_name, buf.getvalue(), create_only=False)
    return counts
