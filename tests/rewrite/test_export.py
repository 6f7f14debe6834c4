"""`laclip rewrites export`: under open_clip's rule for several caption fields, the printed flags draw
uniformly from each sample's original caption and its accepted rewrites (LaCLIP's draw), never
the original alone (plain CLIP)."""

from __future__ import annotations

import json
import random
import re
import shlex
from collections import Counter

import pytest
from scipy.stats import chisquare
from typer.testing import CliRunner

from laclip.data.shards import iter_tar
from laclip.errors import UsageError
from laclip.rewrite.output import read_rewrites
from laclip.storage import open_store
from laclip_cli.main import app
from tests.train.train_helpers import SOURCES, write_rewrites


def open_clip_draw(meta: dict, keys: list[str], probs: list[float], rng: random.Random) -> str:
    """open_clip's documented rule (`--json-text-key` with `--json-text-key-probs`): the keys are put
    in a random order drawn by their weights (keys without weight after them, as fallbacks), then
    the first non-empty field wins. Without probs the first non-empty key in order wins."""
    weighted = [(k, w) for k, w in zip(keys, probs) if w > 0]
    order = []
    while weighted:
        pick = rng.choices(range(len(weighted)), weights=[w for _, w in weighted])[0]
        order.append(weighted.pop(pick)[0])
    order += [k for k, w in zip(keys, probs) if w <= 0]
    return next((meta[k].strip() for k in order if isinstance(meta.get(k), str) and meta[k].strip()), "")


def export(store, tmp_path) -> tuple[str, list[str], list[float]]:
    dest = tmp_path / "wds"
    res = CliRunner().invoke(app, ["--root", store.url, "rewrites", "export", "--dataset", "demo", "--rewrites", "rw1",
                                   "--out", str(dest)], env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    line = next(line for line in res.output.splitlines() if "--json-text-key" in line)
    args = shlex.split(line.split(":", 1)[1])
    i, j = args.index("--json-text-key"), args.index("--json-text-key-probs")
    keys = args[i + 1].split(";")
    probs = [float(p) for p in args[j + 1:] if re.fullmatch(r"[0-9.]+", p)]
    return str(dest), keys, probs


def test_exported_fields_draw_the_original_and_each_accepted_rewrite_equally_often(demo_copy, tmp_path):
    write_rewrites(demo_copy, rejected={"bard"}, drop_keys=2)
    dest, keys, probs = export(demo_copy, tmp_path)
    assert keys == ["caption", *SOURCES] and probs == [1.0] * len(keys)
    exported = open_store(dest)
    rng = random.Random(0)
    samples = list(iter_tar(exported, "00000.tar"))
    pools = read_rewrites(demo_copy, "demo", "rw1", "00000").rows
    with_rewrites = 0
    for sample in samples:
        meta = json.loads(sample["json"])
        caption = sample["txt"].decode()
        assert meta["caption"] == caption and meta["bard"] == ""  # rejected: empty, not the caption
        assert meta["laclip_rejected"]["bard"] == ("echo" if sample["__key__"] in pools else "no rewrite row")
        # the texts open_clip can draw are exactly those laclip's own trainer draws from
        expected = [caption, *pools[sample["__key__"]][1]] if sample["__key__"] in pools else [caption]
        drawn = Counter(open_clip_draw(meta, keys, probs, rng) for _ in range(600))
        assert sorted(drawn) == sorted(expected)
        if len(expected) > 1:
            with_rewrites += 1
            assert chisquare(list(drawn.values())).pvalue > 1e-4, drawn
    assert with_rewrites == len(samples) - 2  # the two keys without a rewrite row draw their caption only
    # all draws pooled: each accepted text equally often (one in four per sample here)
    total = Counter()
    for sample in samples:
        meta = json.loads(sample["json"])
        if sample["__key__"] in pools:
            for _ in range(100):
                text = open_clip_draw(meta, keys, probs, rng)
                total["caption" if text == sample["txt"].decode() else text.split(":")[0]] += 1
    assert set(total) == {"caption", "chatgpt", "coco", "human"}
    assert chisquare(list(total.values())).pvalue > 1e-3, total


def test_without_probs_open_clip_would_train_on_the_original_only(demo_copy, tmp_path):
    """Why the export prints --json-text-key-probs: the priority rule alone always takes the caption."""
    write_rewrites(demo_copy)
    dest, keys, _ = export(demo_copy, tmp_path)
    for sample in iter_tar(open_store(dest), "00001.tar"):
        meta = json.loads(sample["json"])
        assert open_clip_draw(meta, keys, [0.0] * len(keys), random.Random(0)) == sample["txt"].decode()


def test_an_export_by_an_older_laclip_is_not_extended(demo_copy, tmp_path):
    write_rewrites(demo_copy)
    dest = tmp_path / "wds"
    dest.mkdir()
    (dest / "export.json").write_text(json.dumps({"format": "wds-json", "dataset": "demo", "rewrite_id": "rw1"}))
    res = CliRunner().invoke(app, ["--root", demo_copy.url, "rewrites", "export", "--dataset", "demo", "--rewrites",
                                   "rw1", "--out", str(dest)], env={"COLUMNS": "300"})
    assert isinstance(res.exception, UsageError) and "by an older laclip" in str(res.exception)


def test_weighted_export_draws_as_laclips_trainer_does(demo_copy, tmp_path):
    """`rewrites export --text-probs` prints the weights in open_clip's key order; drawing by open_clip's rule
    from the exported fields and drawing with laclip's own loader (choose_texts) give each text with the
    probability its weight has among the sample's texts that exist (bard, rejected, is absent)."""
    from laclip.rewrite.draw import parse_text_probs
    from laclip.train.data import choose_texts

    write_rewrites(demo_copy, rejected={"bard"})
    flag = "caption=3,chatgpt=1,bard=2,coco=0,human=2"
    dest = tmp_path / "wds"
    res = CliRunner().invoke(app, ["--root", demo_copy.url, "rewrites", "export", "--dataset", "demo", "--rewrites",
                                   "rw1", "--out", str(dest), "--text-probs", flag], env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    line = next(line for line in res.output.splitlines() if "--json-text-key" in line)
    args = shlex.split(line.split(":", 1)[1])
    keys = args[args.index("--json-text-key") + 1].split(";")
    probs = [float(p) for p in args[args.index("--json-text-key-probs") + 1:] if re.fullmatch(r"[0-9.e-]+", p)]
    weights = parse_text_probs(flag)
    assert keys == ["caption", *SOURCES] and probs == pytest.approx([weights[k] for k in keys], abs=1e-6)
    pools = read_rewrites(demo_copy, "demo", "rw1", "00000")
    sample = next(s for s in iter_tar(open_store(str(dest)), "00000.tar") if s["__key__"] in pools.rows)
    meta, caption = json.loads(sample["json"]), sample["txt"].decode()
    rng, n = random.Random(3), 6000
    theirs = Counter(open_clip_draw(meta, keys, probs, rng) for _ in range(n))
    texts, origins = pools.rows[sample["__key__"]][1], pools.origins[sample["__key__"]]
    ours = Counter(choose_texts(caption, texts, rng, 1, 1, origins, weights)[0][0] for _ in range(n))
    expected = {caption: 3 / 6, f"chatgpt: {caption}": 1 / 6, f"human: {caption}": 2 / 6}  # coco: a fallback
    for drawn in (theirs, ours):
        assert set(drawn) == set(expected), drawn
        assert chisquare([drawn[t] for t in expected], [n * p for p in expected.values()]).pvalue > 1e-4


def test_export_weights_must_name_every_source(demo_copy, tmp_path):
    write_rewrites(demo_copy)
    res = CliRunner().invoke(app, ["--root", demo_copy.url, "rewrites", "export", "--dataset", "demo", "--rewrites",
                                   "rw1", "--out", str(tmp_path / "w"), "--text-probs", "caption=1,chatgpt=1"])
    assert isinstance(res.exception, UsageError) and "missing: bard, coco, human" in str(res.exception)
    assert not (tmp_path / "w").exists()  # refused before anything is written
