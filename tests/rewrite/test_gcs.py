"""The worker against a gs:// root (the real google-cloud-storage client and fake-gcs-server):
outputs land create-only, and of two attempts racing on one shard exactly one publishes."""

from __future__ import annotations

import json

from laclip import layout
from laclip.data.registry import resolve_shards
from laclip.rewrite import output as rout
from laclip.rewrite.config import RewriteConfig
from laclip.rewrite.engines.base import NullEngine
from laclip.rewrite.worker import ShardRewriter, run_index
from laclip.storage import open_store

from tests.rewrite.helpers import check_complete


def test_worker_on_gcs_and_a_race(demo_store, gcs_bucket):
    store = open_store(gcs_bucket + "/prefix")
    pairs = [(demo_store.local_path(p), p) for p in demo_store.list("datasets/demo/")
             if p.rsplit("/", 1)[-1].startswith(("00000.", "00001."))]
    store.upload_many(pairs)
    cfg = RewriteConfig(dataset="demo", engine="null", shards_per_pod=2)
    rid = cfg.resolved_rewrite_id()
    assert [s["shard"] for s in run_index(cfg, store, 0)] == ["00000", "00001"]
    check_complete(store, "demo", rid)
    assert json.loads(store.read_text(f"rewrites/demo/{rid}/config.json"))["rewrite_id"] == rid

    # Two attempts of one index (a pod thought lost, and its replacement) both rewrite shard 00000
    # of a new run: the first publish wins, the second sees AlreadyExists and reports the race.
    race = cfg.model_copy(update={"rewrite_id": "race"})
    shard = resolve_shards(store, "demo")[0]
    first, second = (ShardRewriter(race, store, NullEngine(), "race") for _ in range(2))
    won = first.rewrite(shard)
    assert won is not None and second.rewrite(shard) is None
    assert rout.read_shard(store, "demo", "race", "00000").num_rows == won["captions"]
    assert layout.rewritten_shards(store, "demo", "race") == ["00000"]
