"""Checks shared by the rewrite tests."""

import json

from laclip import layout
from laclip.data.registry import resolve_shards
from laclip.data.shards import read_captions
from laclip.rewrite import output as rout

SOURCES = ["chatgpt", "bard", "coco", "human"]


def check_complete(store, dataset, rewrite_id, sources=SOURCES):
    """Every shard has an output holding each input key exactly once, in order, no nulls."""
    for shard in resolve_shards(store, dataset):
        table = rout.read_shard(store, dataset, rewrite_id, shard.id)
        rows = read_captions(store, shard)
        assert table.column("key").to_pylist() == [k for k, _ in rows]
        assert table.column("caption").to_pylist() == [c for _, c in rows]
        assert rout.source_columns(table) == sources
        for s in sources:
            assert table.column(s).null_count == 0
        assert json.loads(store.read_text(layout.rewrite_stats(dataset, rewrite_id, shard.id)))["captions"] == len(rows)
