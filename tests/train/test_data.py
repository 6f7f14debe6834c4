"""The streaming loader: uniform text draws, joins by key, bad input counted, exact resume."""

from __future__ import annotations

import random
from collections import Counter
from itertools import islice

import pytest
import torch
from scipy.stats import chisquare

from laclip.data.registry import resolve_shards
from laclip.data.shards import read_captions
from laclip.errors import DataError
from laclip.train.data import StreamSpec, TrainStream, choose_texts, epoch_slices, plan_slices
from laclip.train.model import image_geometry
from .train_helpers import SOURCES, write_rewrites


def stream(store, **kw):
    size, mean, std = image_geometry("laclip-tiny")
    args = dict(dataset="demo", rewrites="rw1", augment="laclip", texts_per_image=1, min_words=2, batch_size=16,
                model="laclip-tiny", image_size=size, mean=mean, std=std, crop_scale=(0.5, 1.0),
                shuffle_buffer=64, seed=0, workers=1)
    where = {k: kw.pop(k) for k in ("rank", "world_size", "start", "skip_keys") if k in kw}
    args.update(kw)
    return TrainStream(store, resolve_shards(store, "demo"), StreamSpec(**args), **where)


def decode(tokens) -> list[str]:
    import open_clip

    tok = open_clip.get_tokenizer("laclip-tiny")
    return [tok.decode(t.tolist()).replace("<start_of_text>", "").split("<end_of_text>")[0].strip() for t in tokens]


def drawn_sources(loader, batches: int = 24) -> Counter:
    """Which text each drawn sample got: its rewrite source (a rewrite reads `<source>: <caption>`, as
    train_helpers writes them) or the original. 24 batches of 64 are 1,536 draws, 3 epochs of the demo."""
    seen = Counter()
    for _, tokens, _ in islice(iter(loader), batches):
        for text in decode(tokens):
            head = text.split(":")[0].strip()
            seen[head if head in SOURCES else "original"] += 1
    return seen


def test_choose_texts_is_uniform_over_original_and_rewrites():
    rng = random.Random(1)
    pool = [f"rewrite number {i}" for i in range(4)]
    counts = Counter(choose_texts("the original caption", pool, rng, 1, 2)[0][0] for _ in range(50_000))
    assert len(counts) == 5
    assert chisquare(list(counts.values())).pvalue > 1e-3, counts
    # a one-word rewrite falls back to the original, as in the reference code
    draws = [choose_texts("orig caption", ["x"], random.Random(s), 1, 2) for s in range(200)]
    assert all(t == ["orig caption"] for t, _ in draws)
    assert sum(f for _, f in draws) > 50


def test_multitext_draws_distinct_texts_when_it_can():
    for s in range(100):
        texts, _ = choose_texts("a b", ["c d", "e f", "g h"], random.Random(s), 3, 2)
        assert len(set(texts)) == 3


def test_loader_draws_uniformly_through_real_shards(demo_copy):
    """Every sample, every time it is seen: 1/5 original, 1/5 per rewrite source (chi-square)."""
    write_rewrites(demo_copy)
    seen = drawn_sources(stream(demo_copy, batch_size=64))
    assert set(seen) == {"original", *SOURCES}
    assert chisquare(list(seen.values())).pvalue > 1e-3, seen


def test_rejected_rewrites_are_not_drawn(demo_copy):
    """A rejected rewrite holds the caption itself: drawing it would make the original twice as
    likely as each rewrite. The draw is uniform over the original and the kept rewrites."""
    write_rewrites(demo_copy, rejected={"bard"})
    seen = drawn_sources(stream(demo_copy, batch_size=64))
    assert set(seen) == {"original", "chatgpt", "coco", "human"}
    assert chisquare(list(seen.values())).pvalue > 1e-3, seen
    for _, tokens, _ in islice(iter(stream(demo_copy, texts_per_image=4)), 4):
        texts = decode(tokens)
        assert all(len(set(texts[i:i + 4])) == 4 for i in range(0, len(texts), 4))


def test_missing_rewrites_and_keys_train_on_originals_and_are_counted(demo_copy):
    shards = resolve_shards(demo_copy, "demo")
    write_rewrites(demo_copy, skip_shards={shards[0].id}, drop_keys=5)
    stats, texts = Counter(), []
    for _, tokens, info in islice(iter(stream(demo_copy, batch_size=32)), 16):  # one epoch: 512 samples
        stats.update(info["stats"])
        texts += decode(tokens)
    assert stats["shards_without_rewrites"] == 1
    assert stats["samples_without_rewrites"] == 128
    assert stats["keys_without_rewrites"] == 5 * 3
    assert stats["samples"] == 512


def test_unreadable_rewrite_parquet_trains_on_originals_and_is_counted(demo_copy):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    shards = resolve_shards(demo_copy, "demo")
    write_rewrites(demo_copy)
    demo_copy.write_bytes(f"rewrites/demo/rw1/{shards[0].id}.parquet", b"not a parquet")
    buf = io.BytesIO()
    pq.write_table(pa.table({"id": ["x"], "chatgpt": ["a rewrite"]}), buf)  # no `key` column
    demo_copy.write_bytes(f"rewrites/demo/rw1/{shards[1].id}.parquet", buf.getvalue())
    stats = Counter()
    for _, _, info in islice(iter(stream(demo_copy, batch_size=32)), 16):  # one epoch: 512 samples
        stats.update(info["stats"])
    assert stats["shards_without_rewrites"] == 2 and stats["samples_without_rewrites"] == 256
    assert stats["samples"] == 512


def test_broken_image_is_skipped_and_counted(demo_copy):
    import io
    import tarfile

    shard = resolve_shards(demo_copy, "demo")[1]
    src = tarfile.open(fileobj=io.BytesIO(demo_copy.read_bytes(shard.tar)))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as dst:
        for n, m in enumerate(src.getmembers()):
            data = src.extractfile(m).read()
            if m.name.endswith(".jpg") and n < 30:
                data = data[: len(data) // 3]  # truncated JPEG
            m.size = len(data)
            dst.addfile(m, io.BytesIO(data))
    demo_copy.write_bytes(shard.tar, out.getvalue())
    stats = Counter()
    for _, _, info in islice(iter(stream(demo_copy, rewrites=None, batch_size=32)), 15):
        stats.update(info["stats"])
    assert stats["broken_images"] == 10  # 30 members = 10 samples x (jpg, txt, json)


def test_missing_data_shard_is_a_clear_error(demo_copy):
    shard = resolve_shards(demo_copy, "demo")[2]
    demo_copy.delete(shard.tar)
    with pytest.raises(DataError, match=f"{shard.id}.*no .tar"):
        resolve_shards(demo_copy, "demo")


def test_shard_vanishing_mid_run_is_counted_not_fatal(demo_copy):
    s = stream(demo_copy, rewrites=None, batch_size=32)
    demo_copy.delete(s.shards[0].tar)
    stats = Counter()
    for _, _, info in islice(iter(s), 12):
        stats.update(info["stats"])
    assert stats["unreadable_shards"] == 1


def test_no_usable_sample_is_an_error_not_a_hang(demo_copy):
    s = stream(demo_copy, rewrites=None)
    for shard in s.shards:
        demo_copy.write_bytes(shard.tar, b"not a tar")
    with pytest.raises(DataError, match="no usable sample"):
        next(iter(s))


def test_slices_split_shards_disjointly_across_workers(demo_store):
    shards = resolve_shards(demo_store, "demo")
    for workers in (2, 4, 6, 8):
        slices = plan_slices(shards, workers)
        got = [sl for w in range(workers) for sl in epoch_slices(slices, 0, 3, w, workers)]
        assert sorted(got, key=repr) == sorted(slices, key=repr)
        assert all(epoch_slices(slices, 0, 3, w, workers) for w in range(workers))


def test_resume_position_continues_the_same_stream(demo_copy):
    write_rewrites(demo_copy)
    full = list(islice(iter(stream(demo_copy)), 40))  # crosses an epoch boundary (32 batches/epoch)
    _, _, info = full[24]
    resumed = list(islice(iter(stream(demo_copy, start={0: (info["epoch"], info["consumed"])})), 15))
    # the same samples in the same order, at the same positions (images differ only by random crops)
    assert [(a["epoch"], a["consumed"], a["keys"]) for _, _, a in full[25:]] == \
        [(b["epoch"], b["consumed"], b["keys"]) for _, _, b in resumed]
    assert len({k for _, _, a in full[25:] for k in a["keys"]}) > 16 * 7  # keys that tell batches apart


def test_rewrites_made_from_another_caption_train_on_the_original_and_are_counted(demo_copy):
    """A few rows whose rewrite parquet records another caption than the shard holds now (their
    rewrites describe another image): the sample trains on its own caption, and is counted."""
    import open_clip

    mismatched = write_rewrites(demo_copy, mismatch=2)
    assert len(mismatched) == 2 * 4
    captions = {k: c for shard in resolve_shards(demo_copy, "demo") for k, c in read_captions(demo_copy, shard)}
    tok = open_clip.get_tokenizer("laclip-tiny")
    stats, seen, others = Counter(), Counter(), Counter()
    for _, tokens, info in islice(iter(stream(demo_copy, batch_size=32)), 16 * 3):  # three epochs
        stats.update(info["stats"])
        for key, row in zip(info["keys"], tokens):
            if key in mismatched:
                seen[key] += 1
                assert torch.equal(row, tok([captions[key]])[0]), key  # never a rewrite of the other caption
        others.update(text.split(":")[0].strip() for text in decode(tokens))
    assert set(seen) == mismatched and stats["rewrite_caption_mismatches"] == sum(seen.values()) == 3 * 8
    assert stats["samples"] == 3 * 512 and set(SOURCES) <= set(others)  # the other rows still draw rewrites


def test_the_run_configs_source_weights_reach_the_loader(demo_copy):
    """--text-probs travels TrainConfig -> StreamSpec.of -> TrainStream: weights 2:1:1:0:0 draw the
    original half the time, chatgpt and bard a quarter each, coco and human never."""
    from laclip.rewrite.draw import parse_text_probs
    from laclip.train.config import TrainConfig

    write_rewrites(demo_copy)
    cfg = TrainConfig(run="r", root=demo_copy.url, preset="demo", rewrites="rw1", batch_size=64, workers=1,
                      text_probs=parse_text_probs("caption=2,chatgpt=1,bard=1,coco=0,human=0"))
    spec = StreamSpec.of(cfg)
    seen = drawn_sources(TrainStream(demo_copy, resolve_shards(demo_copy, "demo"), spec))
    assert set(seen) == {"original", "chatgpt", "bard"}, seen
    n = sum(seen.values())
    assert chisquare([seen["original"], seen["chatgpt"], seen["bard"]], [n / 2, n / 4, n / 4]).pvalue > 1e-4, seen
