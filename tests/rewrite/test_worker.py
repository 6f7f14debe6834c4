"""The worker on real shards: layout, every key once, skipping, bad captions, failing engines."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow.parquet as pq
import pytest

from laclip import entrypoint, layout
from laclip.data.registry import resolve_shards
from laclip.data.shards import read_captions, write_shard
from laclip.errors import EXIT_PERMANENT, DataError, UsageError
from laclip.rewrite import main as rewrite_main
from laclip.rewrite import output as rout
from laclip.rewrite.config import RewriteConfig
from laclip.rewrite.engines import EngineError
from laclip.rewrite.engines.base import Engine, NullEngine
from laclip.rewrite.worker import run_index

from tests.rewrite.helpers import SOURCES, check_complete


@pytest.fixture(autouse=True)
def laclip_logging():
    """The entrypoint routes the `laclip` loggers to the stderr of its test (capsys): put them back after."""
    import logging

    log = logging.getLogger("laclip")
    saved = list(log.handlers), log.level, log.propagate
    yield
    log.handlers[:], log.level, log.propagate = saved[0], saved[1], saved[2]


def main(argv: list[str]) -> int:
    """`python -m laclip.rewrite.main ARGV` in this process: its exit code (argparse's too)."""
    try:
        return entrypoint.main("rewrite", RewriteConfig, rewrite_main.run, argv)
    except SystemExit as exc:
        return exc.code


def test_eda_rewrites_a_dataset_and_resumes(demo_copy):
    store = demo_copy
    cfg = RewriteConfig(dataset="demo", engine="eda", shards_per_pod=2)
    rid = cfg.resolved_rewrite_id()
    from laclip.rewrite import wordnet

    cfg, _ = cfg.for_this_machine()  # what a run here asks for: all four operations where WordNet is
    rid = cfg.resolved_rewrite_id()
    stats = run_index(cfg, store, 0) + run_index(cfg, store, 1)
    assert [s["shard"] for s in stats] == ["00000", "00001", "00002", "00003"]
    check_complete(store, "demo", rid)
    table = rout.read_shard(store, "demo", rid, "00000")
    reasons = Counter((v or "keep").split(":")[0] for s in SOURCES for v in table.column(f"{s}_rejected").to_pylist())
    # eda changes almost every caption, but its synonyms come from any WordNet sense ("ring" -> "telephone",
    # "circle" -> "circuit") and a deleted article leaves a near-echo: the faithfulness and echo checks take
    # those (about a third on the demo's short captions); nothing else is rejected
    assert reasons["keep"] > 0.6 * 4 * table.num_rows, reasons
    assert set(reasons) <= {"keep", "echo", "object", "attribute", "off_topic", "too_short"}, reasons
    changed = [a != b for a, b in zip(table.column("caption").to_pylist(), table.column("bard").to_pylist())]
    assert sum(changed) == sum(v is None for v in table.column("bard_rejected").to_pylist())  # a kept one differs
    total = rout.summarize(store, "demo", rid)
    assert total["shards"] == 4 and total["captions"] == 512 and total["prompts"] == 2048
    assert sum(total["fallbacks"].values()) == sum(s["fallbacks_total"] for s in stats)
    record = json.loads(store.read_text(f"rewrites/demo/{rid}/config.json"))
    assert record["sources"] == SOURCES and record["fingerprint"]["engine"] == "eda"
    here = wordnet.operations_here()
    assert stats[0]["engine"]["operations"] == list(here) and stats[0]["prompt_set_hash"]
    assert record["fingerprint"]["eda_operations"] == list(here)
    used = stats[0]["operations_used"]  # rewrites per operation in the shard: every one that runs is drawn
    assert set(used) == set(here) and sum(used.values()) == stats[0]["prompts"]

    before = store.local_path(layout.rewrite_shard("demo", rid, "00000")).stat().st_mtime_ns
    store.delete(layout.rewrite_stats("demo", rid, "00001"))  # as if killed between parquet and stats
    assert run_index(cfg, store, 0) == []  # all done: skipped
    assert store.local_path(layout.rewrite_shard("demo", rid, "00000")).stat().st_mtime_ns == before
    assert json.loads(store.read_text(layout.rewrite_stats("demo", rid, "00001")))["shard"] == "00001"
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

    def __init__(self, answer=None):
        self.answer, self.seen = answer, []

    def generate(self, requests):
        """Default: the caption's own words, told again (no filter rejects that, the faithfulness check included)."""
        self.seen += requests
        return [self.answer if self.answer is not None else f" seen once more: {r.caption}\nrest" for r in requests]


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
    assert by_key["ordinary"]["coco"] == "seen once more: a dog running on the beach"
    # the empty and blank captions, and the huge one's rewrite, which repeats it (the caption repeats itself)
    assert stats["sources"]["bard"]["fallbacks"] == {"empty_input": 2, "repetition": 1}


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
    assert layout.rewritten_shards(demo_copy, "demo", "crash") == []
    assert [p for p in demo_copy.list("rewrites/") if not p.endswith("config.json")] == []
    run_index(cfg, demo_copy, 0)  # the next attempt
    check_complete(demo_copy, "demo", "crash")


def config(store, **fields) -> str:
    """The worker config as the Job's container args carry it (the store root is a field)."""
    return json.dumps({"root": str(store.root), **fields})


def test_main_exit_codes(demo_copy, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "0")
    assert main(["--config", config(demo_copy, dataset="demo", engine="nope")]) == EXIT_PERMANENT
    assert "invalid --set engine 'nope': Input should be 'vllm', 'hf'" in capsys.readouterr().err
    assert main(["--config", config(demo_copy, dataset="demo", engine="eda",
                                    sources=["chatgpt", "gpt9"])]) == EXIT_PERMANENT
    assert "unknown meta-pair source 'gpt9'" in capsys.readouterr().err
    assert main(["--config", config(demo_copy, dataset="demo", engine="hf",
                                    model=str(tmp_path / "no-model"))]) == EXIT_PERMANENT
    assert "does not exist" in capsys.readouterr().err
    assert main(["--config", config(demo_copy, dataset="nothere", engine="eda")]) == EXIT_PERMANENT
    cfg = tmp_path / "cfg.json"
    cfg.write_text(config(demo_copy, dataset="demo", engine="null", shards_per_pod=2))
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    assert main(["--config-file", str(cfg)]) == 0
    rid = RewriteConfig(dataset="demo", engine="null").resolved_rewrite_id()
    assert layout.rewritten_shards(demo_copy, "demo", rid) == ["00002", "00003"]
    assert pq.read_schema(demo_copy.local_path(layout.rewrite_shard("demo", rid, "00002"))).names[:3] == \
        ["key", "caption", "chatgpt"]


def test_a_shard_added_after_submit_fails_every_index(demo_copy, capsys, monkeypatch):
    """Completions were counted from 4 shards; slicing 5 would leave 00004 unrewritten while all pods succeed."""
    samples = [{"key": "late-0", "caption": "a late shard", "jpg": b"\xff\xd8"}]
    write_shard(demo_copy, "datasets/demo", 4, samples)
    cfg = config(demo_copy, dataset="demo", engine="null", shards_per_pod=2, num_shards=4)
    for index in ("0", "1"):
        monkeypatch.setenv("JOB_COMPLETION_INDEX", index)
        assert main(["--config", cfg]) == EXIT_PERMANENT
        assert "has 5 shards now but 4 when this rewrite was submitted: resubmit" in capsys.readouterr().err
    assert [p for p in demo_copy.list("rewrites/") if p.endswith(".parquet")] == []


GOOD = {"dataset": "demo", "engine": "null"}


@pytest.mark.parametrize("args, env, message", [
    ([], "-1", "JOB_COMPLETION_INDEX must be a whole number >= 0, not '-1'"),
    ([], "x", "JOB_COMPLETION_INDEX must be a whole number >= 0, not 'x'"),
    ([], None, "no completion index: set JOB_COMPLETION_INDEX"),
    (["--set", "shards_per_pod=0"], "0", "invalid --set shards_per_pod 0: Input should be greater than or equal to 1"),
    (["--set", "shards_per_pod=-1"], "0", "shards_per_pod"),
    (["--set", "shards_per_pod"], "0", "expected FIELD=VALUE"),
    (["--set", "nosuch=1"], "0", "--set nosuch: no field 'nosuch'"),
    # The flags of the old entrypoint are gone (the index comes from the environment, root and
    # shards per pod are config fields): argparse refuses them, permanently.
    (["--index", "0"], "0", "unrecognized arguments: --index 0"),
    (["--root", "/elsewhere"], "0", "unrecognized arguments: --root /elsewhere"),
    (["--shards-per-pod", "2"], "0", "unrecognized arguments: --shards-per-pod 2"),
])
def test_setup_errors_are_permanent_and_clear(demo_copy, monkeypatch, capsys, args, env, message):
    if env is None:
        monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    else:
        monkeypatch.setenv("JOB_COMPLETION_INDEX", env)
    assert main(["--config", config(demo_copy, **GOOD), *args]) == EXIT_PERMANENT
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert demo_copy.list("rewrites/") == []


@pytest.mark.parametrize("argv, message", [
    (["--config-file", "/nonexistent/cfg.json"], "cannot read config file /nonexistent/cfg.json"),
    (["--config", "{not json"], "--config is not JSON"),
    (["--config", "[1, 2]"], "--config must be a JSON object"),
    ([], "one of the arguments --config --config-file is required"),
    (["--config", "{}", "--config-file", "/x.json"], "not allowed with argument"),
    (["--config", "@/tmp/cfg.json"], "--config is not JSON"),  # the old @FILE form is gone
])
def test_config_source_errors_are_permanent(demo_copy, monkeypatch, capsys, argv, message):
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "0")
    assert main(argv) == EXIT_PERMANENT
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert demo_copy.list("rewrites/") == []


@pytest.mark.slow
def test_the_module_exits_permanently_on_bad_args(demo_copy):
    """The real `python -m laclip.rewrite.main`, as the pod runs it: a bad argument is exit 3, not argparse's 2."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "JOB_COMPLETION_INDEX": "0"}
    cmd = [sys.executable, "-m", "laclip.rewrite.main", "--config", config(demo_copy, **GOOD)]
    bad = subprocess.run([*cmd, "--index", "0"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == EXIT_PERMANENT and "unrecognized arguments: --index 0" in bad.stderr
    wrong = subprocess.run(cmd, env={**env, "JOB_COMPLETION_INDEX": "one"}, capture_output=True, text=True,
                           timeout=120)
    assert wrong.returncode == EXIT_PERMANENT, wrong.stderr
    assert "[rewrite] error: JOB_COMPLETION_INDEX must be a whole number >= 0, not 'one'" in wrong.stderr
    assert "Traceback" not in wrong.stderr and demo_copy.list("rewrites/") == []
    ok = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert layout.rewritten_shards(demo_copy, "demo", RewriteConfig(**GOOD).resolved_rewrite_id()) == ["00000"]


def test_shards_per_pod_set_overrides_the_config(demo_copy, monkeypatch):
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    cfg = config(demo_copy, dataset="demo", engine="null", shards_per_pod=1, num_shards=4)
    assert main(["--config", cfg, "--set", "shards_per_pod=3"]) == 0
    rid = RewriteConfig(dataset="demo", engine="null").resolved_rewrite_id()
    assert layout.rewritten_shards(demo_copy, "demo", rid) == ["00003"]


def test_root_comes_from_the_config(demo_copy, tmp_path, monkeypatch):
    """The pod's store is the config's `root` (not $LACLIP_ROOT or a flag)."""
    monkeypatch.setenv("LACLIP_ROOT", str(tmp_path / "not-here"))
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "0")
    assert main(["--config", config(demo_copy, dataset="demo", engine="null")]) == 0
    rid = RewriteConfig(dataset="demo", engine="null").resolved_rewrite_id()
    assert layout.rewritten_shards(demo_copy, "demo", rid) == ["00000"]
    assert not (tmp_path / "not-here").exists()


# -- a finished shard is reused only for the captions it was made from ------------------------------
def rewrite_parquet(store, shard_id: str, change) -> None:
    """Replace datasets/demo/<shard>.parquet by `change(table)` (as a re-download would)."""
    import io

    import pyarrow as pa

    path = f"datasets/demo/{shard_id}.parquet"
    table = pq.read_table(pa.BufferReader(store.read_bytes(path)))
    buf = io.BytesIO()
    pq.write_table(change(table), buf)
    store.write_bytes(path, buf.getvalue())


def other_captions(table):
    import pyarrow as pa

    captions = table.column("caption").to_pylist()
    captions[5] = "a completely different image"
    return table.set_column(table.column_names.index("caption"), "caption", pa.array(captions, pa.string()))


CHANGES = {
    "captions changed": (other_captions, "1 of 128 captions differ, 0 keys added, 0 removed"),
    "rows dropped": (lambda t: t.slice(0, 100), "0 of 100 captions differ, 0 keys added, 28 removed"),
}


def reversed_rows(table):
    return table.take(list(range(table.num_rows))[::-1])


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_finished_shard_whose_dataset_changed_is_refused(demo_copy, monkeypatch, capsys, change):
    store = demo_copy
    cfg = RewriteConfig(dataset="demo", engine="null", shards_per_pod=2)
    rid = cfg.resolved_rewrite_id()
    assert [s["shard"] for s in run_index(cfg, store, 0)] == ["00000", "00001"]
    outputs = {p: store.read_bytes(p) for p in store.list(layout.rewrite_folder("demo", rid) + "/")}

    # Unchanged: skipped, nothing rewritten (also when the parquet is rewritten with the same rows, or with
    # the same rows in another order, as a download of the same URL list again writes them).
    rewrite_parquet(store, "00001", lambda t: t)
    assert run_index(cfg, store, 0) == []
    rewrite_parquet(store, "00001", reversed_rows)
    assert run_index(cfg, store, 0) == []

    edit, what = CHANGES[change]
    rewrite_parquet(store, "00001", edit)
    shard_url = store.url_of("datasets/demo/00001.parquet")
    with pytest.raises(DataError) as info:
        run_index(cfg, store, 0)
    message = str(info.value)
    assert f"shard {shard_url} changed since rewrite {rid!r} was made from it ({what};" in message
    assert "--rewrite-id NEW" in message and "00000.parquet" not in message

    # The pod's entrypoint: one error line, exit 3 (FailIndex: no retry).
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "0")
    capsys.readouterr()
    assert main(["--config", cfg.model_copy(update={"root": str(store.root)}).worker_json()]) == EXIT_PERMANENT
    err = capsys.readouterr().err
    assert f"[rewrite] error: shard {shard_url} changed since rewrite {rid!r}" in err and "Traceback" not in err
    # Nothing was redone or replaced: the old outputs stay as they were, for the user to decide.
    assert {p: store.read_bytes(p) for p in store.list(layout.rewrite_folder("demo", rid) + "/")} == outputs

    # A new rewrite id makes rewrites of the shard as it is now.
    fresh = cfg.model_copy(update={"rewrite_id": "after-redownload"})
    assert [s["shard"] for s in run_index(fresh, store, 0)] == ["00000", "00001"]
    (now,) = [s for s in resolve_shards(store, "demo") if s.id == "00001"]
    assert rout.read_originals(store, "demo", "after-redownload", "00001") == read_captions(store, now)


def test_a_finished_shard_without_an_input_digest_is_refused(demo_copy):
    """Stats that record no input digest (made before it was recorded) cannot show the shard is unchanged."""
    store = demo_copy
    cfg = RewriteConfig(dataset="demo", engine="null", shards_per_pod=1)
    rid = cfg.resolved_rewrite_id()
    run_index(cfg, store, 2)
    path = layout.rewrite_stats("demo", rid, "00002")
    stats = json.loads(store.read_text(path))
    del stats["input_digest"]
    store.write_text(path, json.dumps(stats))
    with pytest.raises(DataError, match=r"changed since rewrite .*\(its rewrites record no input digest;"):
        run_index(cfg, store, 2)
    assert run_index(cfg, store, 3)  # another shard is not concerned
