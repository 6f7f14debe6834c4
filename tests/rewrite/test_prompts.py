"""Meta pairs, the seeded draw, caption cleaning and the prompt format."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from laclip.errors import DataError, UsageError
from laclip.rewrite.config import BUILTIN_SOURCES, RewriteConfig
from laclip.rewrite.prompts import (
    INSTRUCTION, PromptBuilder, builtin_meta_pairs, clean_caption, draw_pairs, load_meta_pairs,
    parse_meta_pairs, read_meta_pairs_file, request_hash,
)


@pytest.mark.parametrize("source", BUILTIN_SOURCES)
def test_builtin_sources_have_16_distinct_pairs(source):
    pairs = builtin_meta_pairs(source)
    assert len(pairs) == 16 and len(set(pairs)) == 16
    assert all(src != tgt and "=>" not in src + tgt for src, tgt in pairs)


def test_sources_differ_from_each_other():
    targets = {s: {t for _, t in builtin_meta_pairs(s)} for s in BUILTIN_SOURCES}
    for a in BUILTIN_SOURCES:
        for b in BUILTIN_SOURCES:
            if a < b:
                assert not targets[a] & targets[b]


def test_draw_is_seeded_distinct_sorted_and_spread():
    h = request_hash("cc12m", "00007", "000070001", "chatgpt", 0)
    assert h == request_hash("cc12m", "00007", "000070001", "chatgpt", 0)
    assert h != request_hash("cc12m", "00007", "000070001", "bard", 0)
    assert h != request_hash("cc12m", "00007", "000070001", "chatgpt", 1)
    combos = [draw_pairs(16, request_hash("d", "00000", str(k), "coco", 0)) for k in range(4000)]
    assert all(len(set(c)) == 3 and list(c) == sorted(c) and max(c) < 16 for c in combos)
    use = Counter(i for c in combos for i in c)
    assert len(use) == 16 and min(use.values()) > 0.7 * max(use.values())  # every pair is used, evenly
    assert len(set(combos)) > 400  # of the 560 combinations


def test_draw_is_pinned():
    """Changing the draw silently would re-key every resumed run: pin one value."""
    h = request_hash("cc12m", "00000", "000000000", "chatgpt", 0)
    assert (h, draw_pairs(16, h)) == (626464024944474969, (7, 13, 14))


def test_prompt_format():
    pairs = load_meta_pairs(["human"])
    b = PromptBuilder(pairs, "demo", 0)
    prompt, combo, h = b.build("00000", "k1", "human", "a red circle")
    lines = prompt.split("\n")
    assert lines[0] == INSTRUCTION
    assert len(lines) == 5
    for line, i in zip(lines[1:4], combo):
        assert line == f"{pairs['human'][i][0]} => {pairs['human'][i][1]}"
    assert lines[4] == "a red circle =>"
    fast = b.for_shard("00000", "human")("k1", "a red circle")
    assert fast[0] == prompt and fast[2] == h


@pytest.mark.parametrize("raw, clean", [
    ("  a\tdog\n on the\r\nbeach  ", "a dog on the beach"),
    ("cat => dog", "cat -> dog"),
    ("bell\x07 and\x00null", "bell and null"),
    ("🐶🐶🐶", "🐶🐶🐶"),
    ("一只狗在海滩上奔跑", "一只狗在海滩上奔跑"),
    ("   ", ""),
])
def test_clean_caption(raw, clean):
    assert clean_caption(raw, 64, 400) == clean


def test_long_captions_are_cut_at_a_word_boundary():
    words = [f"word{i}" for i in range(5000)]  # about 40 kB
    text = clean_caption(" ".join(words), 64, 400)
    assert text == " ".join(words[:64])[: len(text)] and len(text) <= 400 and not text.endswith(" ")
    assert text.split()[-1] in words  # no half word at the end
    cjk = clean_caption("海" * 20_000, 64, 400)
    assert cjk == "海" * 400


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=600))
def test_any_caption_gives_a_five_line_prompt(raw):
    cap = clean_caption(raw, 64, 400)
    assert "\n" not in cap and "=>" not in cap and len(cap) <= 400 and cap == cap.strip()
    if cap:
        prompt, _, _ = PromptBuilder(load_meta_pairs(["coco"]), "demo", 0).build("00000", "k", "coco", cap)
        assert prompt.count("\n") == 4 and prompt.endswith(" =>") and prompt.count("=>") == 4


def test_user_meta_pairs_file(tmp_path):
    good = tmp_path / "mine.txt"
    good.write_text("# mine\na b => c d\ne f => g h\n\ni j => k l\n")
    assert read_meta_pairs_file(good) == [("a b", "c d"), ("e f", "g h"), ("i j", "k l")]
    bad = tmp_path / "bad.txt"
    bad.write_text("a => b\nno separator here\nc => d\n")
    with pytest.raises(DataError, match="line 2"):
        read_meta_pairs_file(bad)
    with pytest.raises(DataError, match="at least 3"):
        parse_meta_pairs("a => b\n", "x")
    with pytest.raises(UsageError, match="does not exist"):
        read_meta_pairs_file(tmp_path / "missing.txt")


def test_custom_source_and_unknown_source():
    pairs = [("a b", "c d"), ("e f", "g h"), ("i j", "k l")]
    cfg = RewriteConfig(dataset="demo", engine="eda", sources=["mine", "coco"], meta_pairs={"mine": pairs}).check()
    assert load_meta_pairs(cfg.sources, cfg.meta_pairs)["mine"] == pairs
    with pytest.raises(UsageError, match="unknown meta-pair source 'gpt5'"):
        RewriteConfig(dataset="demo", engine="eda", sources=["gpt5"]).check()
    with pytest.raises(ValueError):
        RewriteConfig(dataset="demo", sources=["caption"])
    with pytest.raises(DataError, match="repeats a pair"):
        RewriteConfig(dataset="demo", engine="eda", sources=["mine"], meta_pairs={"mine": [("a", "b")] * 3}).check()


def test_rewrite_id_is_stable_and_tracks_settings():
    a = RewriteConfig(dataset="cc12m", model="/m/llama-7b")
    assert a.resolved_rewrite_id() == RewriteConfig(dataset="cc12m", model="/m/llama-7b", shards_per_pod=4,
                                                    batch_size=7).resolved_rewrite_id()
    assert a.resolved_rewrite_id().startswith("vllm-llama-7b-")
    for change in ({"seed": 1}, {"sources": ["coco"]}, {"model": "/m/other"},
                   {"sampling": {"temperature": 0.7}}, {"meta_pairs": {"coco": [("a", "b"), ("c", "d"), ("e", "f")]}}):
        other = RewriteConfig(**{"dataset": "cc12m", "model": "/m/llama-7b", **change})
        assert other.resolved_rewrite_id() != a.resolved_rewrite_id()
    with pytest.raises(UsageError):
        RewriteConfig(dataset="cc12m", engine="eda", rewrite_id="Bad Id").check()


def test_a_changed_output_filter_is_a_new_rewrite_id(monkeypatch):
    """A resumed run must not mix shards filtered by an older filter with newer ones."""
    import laclip.rewrite.config as config

    before = RewriteConfig(dataset="cc12m", model="/m/llama-7b").resolved_rewrite_id()
    monkeypatch.setattr(config, "FILTER_VERSION", config.FILTER_VERSION + 1)
    assert RewriteConfig(dataset="cc12m", model="/m/llama-7b").resolved_rewrite_id() != before


@pytest.mark.parametrize("engine, execution, output", [
    ("vllm", {"gpu_memory_utilization": 0.8}, {"seeded": False}),  # lower GPU memory after an OOM: resume
    ("vllm", {"gpu_memory_utilization": 0.7}, {"dtype": "float16"}),
    ("openai", {"retries": 0, "timeout_s": 5}, {"unknown_knob": 1}),  # unknown options count, to be safe
    ("eda", {}, {"alpha": 0.3}),
    ("null", {"delay_s": 0.5}, {}),
])
def test_execution_options_keep_the_rewrite_id(engine, execution, output):
    base = {"dataset": "cc12m", "engine": engine, "model": "/m/llama-7b", "endpoint": "http://x/v1"}
    rid = RewriteConfig(**base).resolved_rewrite_id()
    assert RewriteConfig(**base, engine_options=execution).resolved_rewrite_id() == rid
    if output:
        assert RewriteConfig(**base, engine_options={**execution, **output}).resolved_rewrite_id() != rid
