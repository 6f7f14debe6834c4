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


def require_peer_webdataset() -> None:
    """open_clip 3.3's trainer needs webdataset <= 0.2.86 (1.x ends every shard with an empty sample its
    group_by_keys_nothrow does not expect: KeyError 'fname'); laclip[train] pins it. Say so rather than
    measure a crash."""
    from importlib.metadata import version

    have = version("webdataset")
    parts = tuple(int(p) for p in have.split(".")[:3] if p.isdigit())
    if parts > (0, 2, 86):
        raise SystemExit(f"webdataset {have} is installed; open_clip_train needs <= 0.2.86: "
                         "pip install -e '.[train]' (it pins open_clip_torch[training])")


def peer_model(dest: str | None = None) -> str:
    """`local-dir:DIR` for laclip-tiny: open_clip_train.main builds it with no code of ours."""
    from laclip.train.checkpoint import local_dir_config

    dest = dest or os.path.join(tempfile.gettempdir(), "laclip-bench-peer-model")
    return "local-dir:" + str(local_dir_config(MODEL, dest))
