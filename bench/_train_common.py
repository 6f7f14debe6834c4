"""Shared set-up for the training benchmarks: the demo dataset (8 shards x 512) with 4 rewrites
per caption in a temporary store, and the tiny model both trainers use."""

from __future__ import annotations

import os
import platform
import tempfile

MODEL = "laclip-tiny"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores {cpu}, Python {platform.python_version()}"


def demo_store(root: str | None = None):
    """A store holding the demo dataset and its rewrite set `bench` (made once per root), laid out as
    the rewrite stage lays it out (laclip.layout: one parquet per shard and the set's run record)."""
    import io
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from laclip import layout
    from laclip.data.registry import resolve_shards
    from laclip.data.shards import read_captions
    from laclip.data.synth import synth_demo
    from laclip.storage import open_store
    from laclip.storage.base import join

    root = root or os.path.join(tempfile.gettempdir(), "laclip-bench-train")
    store = open_store(root)
    if not store.exists(join(layout.dataset_folder("demo"), "00007.parquet")):
        synth_demo(store, shards=8, per_shard=512, overwrite=True)
    for shard in resolve_shards(store, "demo"):
        path = layout.rewrite_shard("demo", "bench", shard.id)
        if store.exists(path):
            continue
        rows = read_captions(store, shard)
        cols = {"key": [k for k, _ in rows], "caption": [c for _, c in rows]}
        for src in ("chatgpt", "bard", "coco", "human"):
            cols[src] = [f"{c}, rewritten in the style of {src}" for _, c in rows]
        buf = io.BytesIO()
        pq.write_table(pa.table(cols), buf)
        store.write_bytes(path, buf.getvalue())
    if not store.exists(layout.rewrite_record("demo", "bench")):
        store.write_text(layout.rewrite_record("demo", "bench"),
                         json.dumps({"dataset": "demo", "rewrite_id": "bench", "engine": "bench (fixed strings)",
                                     "sources": ["chatgpt", "bard", "coco", "human"]}) + "\n")
    return store


def patch_open_clip_train() -> None:
    """Make open_clip_train's webdataset pipeline run with webdataset 1.x, whose tar expander
    ends every shard with an empty end-of-shard marker that open_clip_train's own
    group_by_keys_nothrow does not expect (KeyError: 'fname'). Drops the markers; nothing else."""
    from open_clip_train import data

    if getattr(data.group_by_keys_nothrow, "_laclip_patched", False):
        return
    original = data.group_by_keys_nothrow

    def group_by_keys_nothrow(stream, *args, **kwargs):
        return original((s for s in stream if s), *args, **kwargs)

    group_by_keys_nothrow._laclip_patched = True
    data.group_by_keys_nothrow = group_by_keys_nothrow
