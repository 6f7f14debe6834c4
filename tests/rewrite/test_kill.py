"""SIGKILL a worker process mid-shard, run it again: every shard complete, every key exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from laclip import layout
from laclip.rewrite import output as rout
from laclip.rewrite.config import RewriteConfig

from tests.rewrite.helpers import check_complete


@pytest.mark.slow
def test_killed_worker_resumes_without_loss_or_duplicates(demo_copy):
    store = demo_copy
    # 128 captions x 4 sources in batches of 32 at 0.04 s each: about 0.6 s per shard.
    cfg = RewriteConfig(dataset="demo", engine="null", engine_options={"delay_s": 0.04}, batch_size=32,
                        shards_per_pod=4, root=str(store.root))
    rid = cfg.resolved_rewrite_id()
    cmd = [sys.executable, "-m", "laclip.rewrite.main", "--config", cfg.worker_json()]
    env = {**os.environ, "JOB_COMPLETION_INDEX": "0"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not layout.rewritten_shards(store, "demo", rid):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.25)  # well inside the second shard
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = layout.rewritten_shards(store, "demo", rid)
    assert 1 <= len(done) < 4, done
    # Nothing half-written is visible: every listed object is a whole parquet or JSON.
    for path in store.list(layout.rewrite_folder("demo", rid) + "/"):
        if path.endswith(".parquet"):
            rout.read_shard(store, "demo", rid, path.rsplit("/", 1)[-1][:-8])
        else:
            json.loads(store.read_text(path))

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("shard-skipped") == len(done)
    check_complete(store, "demo", rid)
    keys = [k for sid in layout.rewritten_shards(store, "demo", rid)
            for k in rout.read_shard(store, "demo", rid, sid).column("key").to_pylist()]
    assert len(keys) == len(set(keys)) == 4 * 128
