"""The worker on real shards: layout, every key once, skipping, bad captions, failing engines."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from laclip.data.shards import write_shard
from laclip.errors import UsageError
from laclip.rewrite import output as rout
from laclip.rewrite.config import RewriteConfig
from laclip.rewrite.engines import EngineError
from laclip.rewrite.engines.base import Engine, NullEngine
from laclip.rewrite.worker import EXIT_PERMANENT, main, run_index

from tests.rewrite.helpers import SOURCES, check_complete


def test_eda_rewrites_a_dataset_and_resumes(demo_copy):
    store = demo_copy
    cfg = RewriteConfig(dataset="demo", engine="eda", shards_per_pod=2)
    rid = cfg.resolved_rewrite_id()
    with pytest.warns(RuntimeWarning, match="WordNet"):
        stats = run_index(cfg, store, 0) + run_index(cfg, store, 1)
    assert [s["shard"] for s in stats] == ["00000", "00001", "00002", "00003"]
    check_complete(store, "demo", rid)
    table = rout.read_shard(store, "demo", rid, "00000")
    kept = sum(v is None for v in table.column("chatgpt_rejected").to_pylist())
    assert kept > 0.8 * table.num_rows  # eda rewrites almost every caption
    changed = [a != b for a, b in zip(table.column("caption").to_pylist(), table.column("bard").to_pylist())]
    assert sum(changed) == kept or sum(changed) > 0.8 * table.num_rows
    total = rout.summarize(store, "demo", rid)
    assert total["shards"] == 4 and total["captions"] == 512 and total["prompts"] == 2048
    assert sum(total["fallbacks"].values()) == sum(s["fallbacks_total"] for s in stats)
    record = json.loads(store.read_text(f"rewrites/demo/{rid}/config.json"))
    assert record["sources"] == SOURCES and record["fingerprint"]["engine"] == "eda"
    assert stats[0]["engine"]["wordnet"] is False and stats[0]["prompt_set_hash"]

    before = store.local_path(rout.shard_output("demo", rid, "00000")).stat().st_mtime_ns
    store.delete(rout.shard_stats("demo", rid, "00001"))  # as if killed between parquet and stats
    assert run_index(cfg, store, 0) == []  # all done: skipped
    assert store.local_path(rout.shard_output("demo", rid, "00000")).stat().st_mtime_ns == before
    assert json.loads(store.read_text(rout.shard_stats("demo", rid, "00001")))["shard"] == "00001"
    assert run_index(cfg, store, 7) == []  # an index past the end has nothing to do


def test_uneven_shards_per_pod(demo_copy):
    cfg = RewriteConfig(dataset="demo", engine="null", shards_per_pod=3)
    assert [s["shard"] for s in run_index(cfg, demo_copy, 1)] == ["00003"]
    assert [s["shard"] for s in run_index(cfg, demo_copy, 0)] == ["00000", "00001", "00002"]
    check_complete(demo_copy, "demo", cfg.resolved_rewrite_id())


def test_same_id_with_other_settings_is_refused(demo_copy):
    run_index(RewriteConfig(dataset="demo", engine="null", rewrite_id="mine", shards_per_pod=4), demo_copy, 0)
    with pytest.raises(UsageError, match="different settings"):
        run_index(RewriteConfig(dataset="demo", engine="eda", rewrite_id="mine", shards_per_pod=4), demo_copy, 0)


BAD_CAPTIONS = {
    "empty": "",
    "blank": " \t\n ",
    "huge": "a very long caption " * 1000,  # 20 kB
    "emoji": "🐶🌊☀️",
    "cyrillic": "собака бежит по пляжу",
    "arabic": "كلب يركض على الشاطئ",
    "cjk": "一只狗在海滩上奔跑",
    "arrow": "input => output => more",
    "newlines": "a dog\non the\r\nbeach",
    "control": "a dog\x00\x07 on\x1b the beach\x7f",
    "ordinary": "a dog running on the beach",
}


class Recorder(Engine):
    """A real engine that answers with fixed text and keeps what it was asked."""

    name = "recorder"

    def __init__(self, answer=" a different sentence here\nrest"):
        self.answer, self.seen = answer, []

    def generate(self, requests):
        self.seen += requests
        return [self.answer for _ in requests]


def bad_store(demo_copy):
    samples = [{"key": f"k{i:03d}-{name}", "caption": cap, "jpg": b"\xff\xd8"} for i, (name, cap) in
               enumerate(BAD_CAPTIONS.items())]
    write_shard(demo_copy, "datasets/weird", 0, samples)
    return demo_copy


def test_bad_captions_are_kept_and_prompts_stay_clean(demo_copy):
    store = bad_store(demo_copy)
    engine = Recorder()
    cfg = RewriteConfig(dataset="weird", engine="null", rewrite_id="weird-1")
    (stats,) = run_index(cfg, store, 0, engine=engine)
    check_complete(store, "weird", "weird-1")
    assert len(engine.seen) == 4 * (len(BAD_CAPTIONS) - 2)  # the empty and blank captions get no prompt
    for r in engine.seen:
        lines = r.prompt.split("\n")
        assert len(lines) == 5 and lines[-1].endswith(" =>") and lines[-1].count("=>") == 1
        assert all(ch == "\n" or ch.isprintable() for ch in r.prompt)
        assert len(r.caption) <= cfg.max_caption_chars
    table = rout.read_shard(store, "weird", "weird-1", "00000").to_pylist()
    by_key = {row["key"].split("-", 1)[1]: row for row in table}
    assert by_key["empty"]["chatgpt_rejected"] == "empty_input" and by_key["empty"]["chatgpt"] == ""
    assert by_key["blank"]["human_rejected"] == "empty_input" and by_key["blank"]["human"] == BAD_CAPTIONS["blank"]
    assert by_key["huge"]["caption"] == BAD_CAPTIONS["huge"]  # the original is kept whole
    assert by_key["ordinary"]["coco"] == "a different sentence here"
    assert stats["sources"]["bard"]["fallbacks"] == {"empty_input": 2}


@pytest.mark.parametrize("answer, reason", [
    ("\x00\x01\x02 \ufffd\ufffd", "invalid"),
    (" a dog running on the beach", "echo"),
    (" x => y and more", "scaffolding"),
    (" the the the the the the", "repetition"),
    ("", "empty"),
])
def test_garbage_answers_fall_back_with_a_reason(demo_copy, answer, reason):
    store = bad_store(demo_copy)
    (stats,) = run_index(RewriteConfig(dataset="weird", engine="null", rewrite_id="g"), store, 0,
                         engine=Recorder(answer))
    check_complete(store, "weird", "g")
    row = [r for r in rout.read_shard(store, "weird", "g", "00000").to_pylist() if r["key"].endswith("ordinary")][0]
    assert row["chatgpt"] == BAD_CAPTIONS["ordinary"] and row["chatgpt_rejected"] == reason
    assert stats["sources"]["chatgpt"]["fallbacks"][reason] >= 1


class Failing(NullEngine):
    """Raises on the n-th batch, or returns too few outputs."""

    def __init__(self, fail_at=2, short=False):
        super().__init__()
        self.calls, self.fail_at, self.short = 0, fail_at, short

    def generate(self, requests):
        self.calls += 1
        if self.calls == self.fail_at:
            if self.short:
                return super().generate(requests)[:-1]
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return super().generate(requests)


@pytest.mark.parametrize("short", [False, True])
def test_engine_failing_mid_shard_leaves_nothing_then_retry_completes(demo_copy, short):
    cfg = RewriteConfig(dataset="demo", engine="null", batch_size=64, rewrite_id="crash", shards_per_pod=4)
    with pytest.raises(EngineError if short else RuntimeError):
        run_index(cfg, demo_copy, 0, engine=Failing(fail_at=3, short=short))
    assert rout.list_done(demo_copy, "demo", "crash") == []
    assert [p for p in demo_copy.list("rewrites/") if not p.endswith("config.json")] == []
    run_index(cfg, demo_copy, 0)  # the next attempt
    check_complete(demo_copy, "demo", "crash")


def test_main_exit_codes(demo_copy, tmp_path, capsys):
    root = str(demo_copy.root)
    assert main(["--root", root, "--index", "0", "--config", '{"dataset": "demo", "engine": "nope"}']) == EXIT_PERMANENT
    assert main(["--root", root, "--index", "0", "--config",
                 '{"dataset": "demo", "engine": "eda", "sources": ["chatgpt", "gpt9"]}']) == EXIT_PERMANENT
    assert "unknown meta-pair source 'gpt9'" in capsys.readouterr().err
    config = json.dumps({"dataset": "demo", "engine": "hf", "model": str(tmp_path / "no-model")})
    assert main(["--root", root, "--index", "0", "--config", config]) == EXIT_PERMANENT
    assert "does not exist" in capsys.readouterr().err
    config = '{"dataset": "nothere", "engine": "eda"}'
    assert main(["--root", root, "--index", "0", "--config", config]) == EXIT_PERMANENT
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"dataset": "demo", "engine": "null", "shards_per_pod": 2}))
    assert main(["--root", root, "--config", f"@{cfg}", "--index", "1"]) == 0
    rid = RewriteConfig(dataset="demo", engine="null").resolved_rewrite_id()
    assert rout.list_done(demo_copy, "demo", rid) == ["00002", "00003"]
    assert pq.read_schema(demo_copy.local_path(rout.shard_output("demo", rid, "00002"))).names[:3] == \
        ["key", "caption", "chatgpt"]


def test_a_shard_added_after_submit_fails_every_index(demo_copy, capsys):
    """Completions were counted from 4 shards; slicing 5 would leave 00004 unrewritten while all pods succeed."""
    samples = [{"key": "late-0", "caption": "a late shard", "jpg": b"\xff\xd8"}]
    write_shard(demo_copy, "datasets/demo", 4, samples)
    config = json.dumps({"dataset": "demo", "engine": "null", "shards_per_pod": 2, "num_shards": 4})
    for index in ("0", "1"):
        assert main(["--root", str(demo_copy.root), "--index", index, "--config", config]) == EXIT_PERMANENT
        assert "has 5 shards now but 4 when this rewrite was submitted: resubmit" in capsys.readouterr().err
    assert [p for p in demo_copy.list("rewrites/") if p.endswith(".parquet")] == []


@pytest.mark.parametrize("args, env, message", [
    (["--index", "-1"], None, "--index must be a whole number >= 0, not -1"),
    ([], "x", "JOB_COMPLETION_INDEX must be a whole number >= 0, not 'x'"),
    ([], None, "no index: pass --index N"),
    (["--index", "0", "--shards-per-pod", "0"], None, "invalid rewrite config"),
    (["--index", "0", "--shards-per-pod", "-1"], None, "shards_per_pod"),
    (["--index", "0", "--config", "@/nonexistent/cfg.json"], None, "cannot read the config file"),
    (["--index", "zero"], None, "argument --index: invalid int value"),
])
def test_setup_errors_are_permanent_and_clear(demo_copy, monkeypatch, capsys, args, env, message):
    if env is None:
        monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    else:
        monkeypatch.setenv("JOB_COMPLETION_INDEX", env)
    argv = ["--root", str(demo_copy.root), "--config", '{"dataset": "demo", "engine": "null"}', *args]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == EXIT_PERMANENT
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert demo_copy.list("rewrites/") == []


def test_shards_per_pod_flag_overrides_the_config(demo_copy):
    config = json.dumps({"dataset": "demo", "engine": "null", "shards_per_pod": 1, "num_shards": 4})
    assert main(["--root", str(demo_copy.root), "--index", "1", "--shards-per-pod", "3", "--config", config]) == 0
    rid = RewriteConfig(dataset="demo", engine="null").resolved_rewrite_id()
    assert rout.list_done(demo_copy, "demo", rid) == ["00003"]
