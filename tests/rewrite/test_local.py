"""`laclip submit rewrite --local`: every index as a local process, the cluster's output layout."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from laclip.rewrite import output as rout
from laclip.rewrite.config import RewriteConfig
from laclip_cli.main import app
from laclip_cli.submit_rewrite import run_local

from tests.rewrite.helpers import check_complete

runner = CliRunner()


def test_local_demo_with_eda(demo_copy):
    root = str(demo_copy.root)
    result = runner.invoke(app, ["--root", root, "submit", "rewrite", "--dataset", "demo", "--local"],
                           env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    rid = RewriteConfig(dataset="demo", engine="eda").resolved_rewrite_id()
    assert f"rewrite {rid}: 4 shards, 512 captions x 4 sources" in result.stdout
    assert "no WordNet corpus" in result.stderr
    check_complete(demo_copy, "demo", rid)
    # The one-command pipeline's entry point: the same id, nothing redone.
    seen = []
    assert run_local(RewriteConfig(dataset="demo", engine="eda"), demo_copy,
                     progress=lambda done, total: seen.append((done, total))) == rid
    assert seen == [(4, 4)]  # every index already done: no process started

    # A worker killed between a parquet and its stats: the summary still counts that shard, and a
    # re-run restores the stats file (the index's worker starts only to do that).
    store, stats_path = demo_copy, rout.shard_stats("demo", rid, "00002")
    full = rout.summarize(store, "demo", rid)
    store.delete(stats_path)
    assert rout.summarize(store, "demo", rid) == full
    seen.clear()
    assert run_local(RewriteConfig(dataset="demo", engine="eda"), store, progress=lambda d, t: seen.append(d)) == rid
    assert seen == [3, 4] and json.loads(store.read_text(stats_path))["shard"] == "00002"


def test_local_demo_with_tiny_hf_model(demo_copy, tiny_llama):
    root = str(demo_copy.root)
    result = runner.invoke(app, ["--root", root, "submit", "rewrite", "--dataset", "demo", "--local",
                                 "--engine", "hf", "--model", str(tiny_llama), "--sources", "chatgpt,human",
                                 "--max-new-tokens", "6", "--shards-per-pod", "4", "--batch-size", "128"],
                           env={"COLUMNS": "250", "OMP_NUM_THREADS": "1"})
    assert result.exit_code == 0, result.output
    (rid,) = [p.split("/")[2] for p in demo_copy.list("rewrites/demo/") if p.endswith("config.json")]
    assert rid.startswith("hf-")
    check_complete(demo_copy, "demo", rid, sources=["chatgpt", "human"])
    stats = json.loads(demo_copy.read_text(rout.shard_stats("demo", rid, "00000")))
    assert stats["engine"]["engine"] == "hf" and stats["sampling"]["max_new_tokens"] == 6
    assert stats["prompts"] == 2 * stats["captions"]


def test_local_failure_names_the_index(demo_copy):
    """An engine that cannot reach its server: retried once, then reported; nothing written."""
    args = ["--engine", "openai", "--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "--shards-per-pod", "4",
            "--engine-option", "retries=0", "--engine-option", "timeout_s=2"]
    result = runner.invoke(app, ["--root", str(demo_copy.root), "submit", "rewrite", "--dataset", "demo", "--local",
                                 *args])
    assert result.exit_code != 0
    assert "1 of 1 indexes failed" in str(result.exception) and "index 0 (exit 1)" in str(result.exception)
    assert "127.0.0.1:9" in str(result.exception)
    assert [p for p in demo_copy.list("rewrites/") if p.endswith(".parquet")] == []
