"""The backtranslate engine: captions round-trip through two tiny random MarianMT-shaped translation
models made here (no download), or a causal LM through the hf engine, with the usual filters."""

from __future__ import annotations

import json

import pytest

from laclip import layout
from laclip.errors import UsageError
from laclip.rewrite import output as rout
from laclip.rewrite.config import RewriteConfig, Sampling
from laclip.rewrite.engines import make_engine
from laclip.rewrite.worker import run_index

from tests.rewrite.test_engines import requests_for

SMALL = Sampling(max_new_tokens=12)


@pytest.fixture(scope="module")
def marian_pair(tmp_path_factory, demo_store):
    from laclip.rewrite.tiny_model import corpus, make_tiny_marian

    texts = corpus(demo_store, "demo")
    root = tmp_path_factory.mktemp("marian")
    return (make_tiny_marian(root / "en-de", texts, seed=0), make_tiny_marian(root / "de-en", texts, seed=1))


def test_round_trip_is_two_seeded_legs(marian_pair):
    there, back = marian_pair
    engine = make_engine(RewriteConfig(dataset="demo", engine="backtranslate", model=str(there),
                                       back_model=str(back), sampling=SMALL))
    info = engine.info()
    assert info["forward"]["kind"] == info["backward"]["kind"] == "seq2seq"
    assert info["forward"]["model"] == str(there) and info["backward"]["architecture"] == "marian"
    reqs = requests_for(["a small red circle on a grey background", "two blue stars at the top"])
    outs = engine(reqs)
    assert len(outs) == 2 and all(isinstance(o, str) for o in outs)
    assert engine(reqs) == outs  # the same seeds: the same round trip (a retried pod writes the same)
    middle = engine.forward.translate([r.caption for r in reqs], reqs[0].seed)
    assert engine.backward.translate(middle, reqs[0].seed ^ 0x5DEECE66D) == outs  # pivot, then back


def test_backtranslate_rewrites_a_shard_with_filters_and_fallbacks(demo_copy, marian_pair):
    there, back = marian_pair
    cfg = RewriteConfig(dataset="demo", engine="backtranslate", model=str(there), back_model=str(back),
                        sampling=SMALL, batch_size=64)
    rid = cfg.resolved_rewrite_id()
    assert rid.startswith("backtranslate-en-de-")
    other = cfg.model_copy(update={"back_model": str(there)})
    assert other.resolved_rewrite_id() != rid  # the back model is part of the id
    [stats] = run_index(cfg, demo_copy, 0)
    table = rout.read_shard(demo_copy, "demo", rid, stats["shard"])
    assert table.num_rows == stats["captions"]
    for source in ("chatgpt", "bard", "coco", "human"):
        texts, why = table.column(source).to_pylist(), table.column(source + "_rejected").to_pylist()
        # a rejected round trip keeps the caption; the random models' text is mostly rejected
        assert all(t == c for t, c, w in zip(texts, table.column("caption").to_pylist(), why) if w is not None)
    fallbacks = sum(sum(s["fallbacks"].values()) for s in stats["sources"].values())
    kept = sum(s["rewritten"] for s in stats["sources"].values())
    assert fallbacks + kept == stats["prompts"] and fallbacks == stats["fallbacks_total"]
    assert stats["engine"]["engine"] == "backtranslate"
    record = json.loads(demo_copy.read_text(layout.rewrite_record("demo", rid)))
    assert record["fingerprint"]["back_model"] == str(back)


def test_a_causal_lm_leg_is_served_by_the_hf_engine(tiny_llama):
    engine = make_engine(RewriteConfig(dataset="demo", engine="backtranslate", model=str(tiny_llama),
                                       back_model=str(tiny_llama), sampling=SMALL,
                                       engine_options={"pivot": "French"}))
    assert engine.info()["forward"]["kind"] == "prompt" and engine.info()["forward"]["engine"] == "hf"
    assert engine.forward.prompt("a red circle").endswith("English: a red circle\nFrench:")
    outs = engine(requests_for(["a red circle", "a blue star"]))
    assert len(outs) == 2 and all("\n" not in o for o in outs)


def test_bad_backtranslate_settings(marian_pair, tmp_path):
    there, back = marian_pair
    with pytest.raises(UsageError, match="--back-model"):
        RewriteConfig(dataset="demo", engine="backtranslate", model=str(there)).check()
    with pytest.raises(UsageError, match="does nothing"):
        RewriteConfig(dataset="demo", engine="hf", model=str(there), back_model=str(back)).check()
    with pytest.raises(UsageError, match="vLLM does not serve"):
        make_engine(RewriteConfig(dataset="demo", engine="backtranslate", model=str(there), back_model=str(back),
                                  engine_options={"backend": "vllm"}))
    with pytest.raises(UsageError, match="does not exist"):
        make_engine(RewriteConfig(dataset="demo", engine="backtranslate", model=str(there),
                                  back_model=str(tmp_path / "nowhere")))
