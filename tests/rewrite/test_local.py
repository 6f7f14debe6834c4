"""`laclip submit rewrite --local`: every index as a local process, the cluster's output layout."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from laclip import layout
from laclip.errors import LaclipError
from laclip.rewrite import output as rout
from laclip.rewrite.config import RewriteConfig
from laclip_cli.main import app
from laclip_cli.stages.rewrite import run_here

from tests.rewrite.helpers import check_complete

runner = CliRunner()


@pytest.mark.slow
def test_local_demo_with_eda(demo_copy):
    root = str(demo_copy.root)
    result = runner.invoke(app, ["--root", root, "submit", "rewrite", "--dataset", "demo", "--local"],
                           env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    from laclip.rewrite import wordnet

    cfg, warning = RewriteConfig(dataset="demo", engine="eda").for_this_machine()
    rid = cfg.resolved_rewrite_id()
    assert f"rewrite {rid}: 4 shards, 512 captions x 4 sources" in result.stdout
    # every run here that lacks an operation says so (and the id is that of the operations that ran)
    assert ("cannot run here" in result.stderr) == (wordnet.operations_here() != wordnet.OPERATIONS)
    assert (warning is None) == (wordnet.operations_here() == wordnet.OPERATIONS)
    check_complete(demo_copy, "demo", rid)
    # The one-command pipeline's entry point: the same id, nothing redone.
    seen = []
    assert run_here(RewriteConfig(dataset="demo", engine="eda", root=root),
                    progress=lambda done, total: seen.append((done, total))) == rid
    assert seen == [(4, 4)]  # every index already done: no process started

    # A worker killed between a parquet and its stats: the summary still counts that shard, and a
    # re-run restores the stats file (the index's worker starts only to do that).
    store, stats_path = demo_copy, layout.rewrite_stats("demo", rid, "00002")
    full = rout.summarize(store, "demo", rid)
    store.delete(stats_path)
    assert rout.summarize(store, "demo", rid) == full
    seen.clear()
    assert run_here(RewriteConfig(dataset="demo", engine="eda", root=root), progress=lambda d, t: seen.append(d)) == rid
    assert seen == [3, 4] and json.loads(store.read_text(stats_path))["shard"] == "00002"


@pytest.mark.slow
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
    stats = json.loads(demo_copy.read_text(layout.rewrite_stats("demo", rid, "00000")))
    assert stats["engine"]["engine"] == "hf" and stats["sampling"]["max_new_tokens"] == 6
    assert stats["prompts"] == 2 * stats["captions"]


@pytest.mark.slow
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


@pytest.mark.slow
def test_local_run_from_a_folder_holding_a_laclip_package(demo_copy, tmp_path, monkeypatch):
    """The children run `python -m laclip.rewrite.main` with PYTHONSAFEPATH: a ./laclip/ in the current
    folder (a checkout's parent, a stray copy) is not imported in place of the installed package."""
    cwd = tmp_path / "elsewhere"
    (cwd / "laclip").mkdir(parents=True)
    (cwd / "laclip" / "__init__.py").write_text("")
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("PYTHONSAFEPATH", raising=False)  # what the children get must come from laclip
    result = runner.invoke(app, ["--root", str(demo_copy.root), "submit", "rewrite", "--dataset", "demo", "--local",
                                 "--engine", "null", "--shards-per-pod", "2"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, (result.output, result.exception)
    rid = RewriteConfig(dataset="demo", engine="null").resolved_rewrite_id()
    assert f"rewrite {rid}: 4 shards, 512 captions x 4 sources" in result.stdout
    check_complete(demo_copy, "demo", rid)
    assert sorted(p.name for p in (cwd / "laclip").iterdir()) == ["__init__.py"]  # nothing written there


@pytest.mark.slow
def test_local_children_see_the_shadowing_package_without_the_safe_path(demo_copy, tmp_path):
    """The hazard the previous test guards against is real: without PYTHONSAFEPATH, `python -m` from that
    folder imports the empty ./laclip/ as the package, and the worker cannot start."""
    import os
    import subprocess
    import sys

    from laclip_cli.local import child_env

    (tmp_path / "laclip").mkdir()
    (tmp_path / "laclip" / "__init__.py").write_text("")
    cfg = RewriteConfig(dataset="demo", engine="null", shards_per_pod=4, root=str(demo_copy.root))
    cmd = [sys.executable, "-m", "laclip.rewrite.main", "--config", cfg.worker_json()]
    plain = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}
    shadowed = subprocess.run(cmd, cwd=tmp_path, env={**plain, "JOB_COMPLETION_INDEX": "0"}, capture_output=True,
                              text=True, timeout=120)
    assert shadowed.returncode != 0 and str(tmp_path / "laclip" / "__init__.py") in shadowed.stderr
    assert layout.rewritten_shards(demo_copy, "demo", cfg.resolved_rewrite_id()) == []
    safe = subprocess.run(cmd, cwd=tmp_path, env=child_env({"JOB_COMPLETION_INDEX": "0"}), capture_output=True,
                          text=True, timeout=120)
    assert safe.returncode == 0, safe.stderr
    check_complete(demo_copy, "demo", cfg.resolved_rewrite_id())


@pytest.mark.slow
def test_local_rerun_refuses_a_shard_that_changed_since(demo_copy):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    cfg = RewriteConfig(dataset="demo", engine="null", shards_per_pod=2, root=str(demo_copy.root))
    rid = run_here(cfg)
    assert run_here(cfg) == rid  # unchanged: reused
    path = "datasets/demo/00001.parquet"
    table = pq.read_table(pa.BufferReader(demo_copy.read_bytes(path))).slice(0, 100)  # rows dropped
    buf = io.BytesIO()
    pq.write_table(table, buf)
    demo_copy.write_bytes(path, buf.getvalue())
    with pytest.raises(LaclipError, match="changed since rewrite") as info:
        run_here(cfg)
    assert demo_copy.url_of(path) in str(info.value)
