"""`laclip rewrites import` on a release written exactly in the paper's format (a CSV of image
path and caption, four line-aligned .txt files) with rows dropped, reordered and duplicated."""

from __future__ import annotations

import json
import re
from collections import defaultdict

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from laclip.data.registry import resolve_shards
from laclip.data.shards import read_captions
from laclip.errors import DataError, UsageError
from laclip.rewrite.output import read_record, read_rewrites
from laclip.rewrite_import.config import ImportConfig
from laclip.rewrite_import.importer import run_import
from laclip_cli.main import app

from .release_fixture import SOURCES, write_release

runner = CliRunner()


def import_args(files: dict, rid: str = "rel") -> list[str]:
    args = ["rewrites", "import", "--dataset", "demo", "--original", files["original"], "--rewrite-id", rid]
    for s in SOURCES:  # both spellings: NAME=FILE and FILE named <dataset>_<name>.txt
        args += ["--source", f"{s}={files[s]}" if s == "chatgpt" else files[s]]
    return args


def norm(text: str) -> str:
    return " ".join(text.split())


def expected(store, release: dict) -> dict:
    """What the import must choose, computed directly: per caption the release rows in line order;
    the i-th sample with that caption (shard, row order) takes row i mod m."""
    rows_of = defaultdict(list)
    for i, (_, caption) in enumerate(release["rows"]):
        rows_of[norm(caption)].append(i)
    seen = defaultdict(int)
    want = {}
    for shard in resolve_shards(store, "demo"):
        for key, caption in read_captions(store, shard):
            cands = rows_of.get(norm(caption), [])
            want[key] = (cands[seen[norm(caption)] % len(cands)] if cands else None, len(cands), caption)
            seen[norm(caption)] += 1
    return want


def test_import_joins_by_caption_and_the_counts_add_up(demo_copy, tmp_path):
    release = write_release(demo_copy, tmp_path / "release")
    res = runner.invoke(app, ["--root", demo_copy.url, *import_args(release["files"])], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    want = expected(demo_copy, release)
    matched = sum(1 for line, _, _ in want.values() if line is not None)
    ambiguous = sum(1 for line, m, _ in want.values() if m > 1)
    assert 0 < ambiguous < matched < len(want)  # the fixture has all three kinds
    m = re.search(r"(\d+) shards, ([\d,]+) captions: ([\d,]+) matched .*?, ([\d,]+) missing .*?, ([\d,]+) of the "
                  r"matched ambiguous", res.output)
    shards, captions, got_matched, missing, got_ambiguous = (int(g.replace(",", "")) for g in m.groups())
    assert (captions, got_matched, missing, got_ambiguous) == (len(want), matched, len(want) - matched, ambiguous)
    assert got_matched + missing == captions
    printed = [[int(g.replace(",", "")) for g in m] for m in re.findall(
        r"shard \d+: ([\d,]+) captions, ([\d,]+) matched, ([\d,]+) missing, ([\d,]+) ambiguous", res.output)]
    assert len(printed) == shards == 4 and all(c == m + x for c, m, x, _ in printed)  # per shard, they add up
    assert [sum(col) for col in zip(*printed)] == [captions, got_matched, missing, got_ambiguous]
    record = read_record(demo_copy, "demo", "rel")
    assert record["kind"] == "import" and record["sources"] == list(SOURCES)
    assert record["inputs"]["original"]["rows"] == len(release["rows"])  # the header row does not count
    import hashlib

    for s in SOURCES:
        data = open(release["files"][s], "rb").read()
        assert record["inputs"]["sources"][s]["sha256"] == hashlib.sha256(data).hexdigest()
    per_shard = {k: 0 for k in ("captions", "matched", "missing", "ambiguous")}
    lines = open(release["files"]["chatgpt"]).read().splitlines()
    for shard in resolve_shards(demo_copy, "demo"):
        stats = json.loads(demo_copy.read_text(f"rewrites/demo/rel/{shard.id}.stats.json"))
        assert stats["matched"] + stats["missing"] == stats["captions"] == len(read_captions(demo_copy, shard))
        for k in per_shard:
            per_shard[k] += stats[k]
        table = pq.read_table(demo_copy.local_path(f"rewrites/demo/rel/{shard.id}.parquet")).to_pylist()
        assert [r["key"] for r in table] == [k for k, _ in read_captions(demo_copy, shard)]
        for row in table:
            line, _, caption = want[row["key"]]
            assert row["caption"] == caption  # the shard's own caption: what the trainer compares
            assert row["release_line"] == line
            if line is None:
                assert all(row[s] == caption and row[f"{s}_rejected"] == "not_in_release" for s in SOURCES)
            else:
                assert row["chatgpt"] == lines[line] == f"chatgpt r{line}: {norm(caption)}"
                assert all(row[s] == f"{s} r{line}: {norm(caption)}" and row[f"{s}_rejected"] is None for s in SOURCES)
    assert per_shard == {"captions": len(want), "matched": matched, "missing": len(want) - matched,
                         "ambiguous": ambiguous}
    # the trainer's reader sees the rewrites of matched samples and none for the missing ones
    rw = read_rewrites(demo_copy, "demo", "rel", resolve_shards(demo_copy, "demo")[0].id)
    for key, (caption, texts) in rw.rows.items():
        assert len(texts) == (4 if want[key][0] is not None else 0)

    # the same command again reuses the set; gzip-compressed copies of the files give the same rows
    again = runner.invoke(app, ["--root", demo_copy.url, *import_args(release["files"])], env={"COLUMNS": "200"})
    assert again.exit_code == 0 and f"{matched} matched" in again.output
    gz = write_release(demo_copy, tmp_path / "gz", gz=True)
    res = runner.invoke(app, ["--root", demo_copy.url, *import_args(gz["files"], "relgz")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for shard in resolve_shards(demo_copy, "demo"):
        a = pq.read_table(demo_copy.local_path(f"rewrites/demo/rel/{shard.id}.parquet"))
        b = pq.read_table(demo_copy.local_path(f"rewrites/demo/relgz/{shard.id}.parquet"))
        assert a.drop_columns([]).to_pylist() == b.to_pylist()


def test_first_choice_gives_every_duplicate_the_first_row(demo_copy, tmp_path):
    release = write_release(demo_copy, tmp_path / "release", duplicate=30)
    files = release["files"]
    cfg = ImportConfig(dataset="demo", root=demo_copy.url, original=files["original"], choose="first",
                       sources={s: files[s] for s in SOURCES}, chunk_rows=64)  # many small chunks
    totals = run_import(cfg)
    first = {}
    for i, (_, caption) in enumerate(release["rows"]):
        first.setdefault(norm(caption), i)
    rid = cfg.resolved_rewrite_id()
    for shard in resolve_shards(demo_copy, "demo"):
        for row in pq.read_table(demo_copy.local_path(f"rewrites/demo/{rid}/{shard.id}.parquet")).to_pylist():
            assert row["release_line"] == first.get(norm(row["caption"]))
    assert totals["matched"] + totals["missing"] == totals["captions"]


def test_files_that_are_not_line_aligned_are_refused(demo_copy, tmp_path):
    files = write_release(demo_copy, tmp_path / "release")["files"]
    lines = open(files["bard"]).read().splitlines(keepends=True)
    open(files["bard"], "w").write("".join(lines[:100] + lines[101:]))  # one line lost in the middle
    res = runner.invoke(app, ["--root", demo_copy.url, *import_args(files)])
    assert res.exit_code != 0
    assert isinstance(res.exception, DataError)
    assert f"demo_bard.txt has {len(lines) - 1:,} lines, but" in str(res.exception)
    assert f"has {len(lines):,} caption rows: the files are not line-aligned" in str(res.exception)
    assert not demo_copy.list("rewrites/demo/rel/")  # nothing written


def test_other_files_under_the_same_id_are_refused(demo_copy, tmp_path):
    files = write_release(demo_copy, tmp_path / "a")["files"]
    cfg = ImportConfig(dataset="demo", root=demo_copy.url, original=files["original"], rewrite_id="same",
                       sources={s: files[s] for s in SOURCES})
    run_import(cfg)
    text = open(files["human"]).read().replace("human r1:", "HUMAN r1:")  # the same name, other contents
    open(files["human"], "w").write(text)
    with pytest.raises(UsageError, match="records an import of other files or settings"):
        run_import(cfg)


def test_lines_original_and_a_missing_file(demo_copy, tmp_path):
    """One caption per line (RedCaps' release), and a clear error for a file that is not there."""
    release = write_release(demo_copy, tmp_path / "release", spaces=False)
    original = tmp_path / "release" / "demo_original.txt"
    original.write_text("".join(c + "\n" for _, c in release["rows"]))
    files = release["files"]
    cfg = ImportConfig(dataset="demo", root=demo_copy.url, original=str(original),
                       sources={s: files[s] for s in SOURCES})
    assert cfg.format == "lines"
    totals = run_import(cfg)
    assert totals["matched"] == sum(1 for v in expected(demo_copy, release).values() if v[0] is not None)
    bad = cfg.model_copy(update={"sources": {"chatgpt": str(tmp_path / "nope.txt")}, "rewrite_id": "x"})
    with pytest.raises(DataError, match="chatgpt file .*nope.txt does not exist"):
        run_import(bad)


@pytest.mark.slow
def test_training_on_an_import_uses_the_release_rewrites_of_each_samples_own_caption(demo_copy, tmp_path, capfd):
    """`submit train --local --rewrites <imported id>`: no sample is refused or counted as made from
    another caption, and the loader draws, for every matched sample, only its own caption and the
    release's rewrites of a row with that caption (the one the import chose)."""
    import random
    from collections import Counter

    from laclip.train.data import StreamSpec, TrainStream
    from laclip.train.model import image_geometry

    release = write_release(demo_copy, tmp_path / "release")
    res = runner.invoke(app, ["--root", demo_copy.url, *import_args(release["files"])], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    want = expected(demo_copy, release)
    res = runner.invoke(app, ["--root", demo_copy.url, "submit", "train", "--dataset", "demo", "--rewrites", "rel",
                              "--local", "--run", "on-import", "--set", "steps=2", "--set", "batch_size=16",
                              "--set", "workers=1", "--set", "checkpoint_every=2", "--set", "tensorboard=false"],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    printed = capfd.readouterr().out  # the trainer is a child process: its own stdout
    assert "done step=2" in printed and "picked_rewrite=" in printed
    assert "rewrite_caption_mismatches" not in printed and "keys_without_rewrites" not in printed

    size, mean, std = image_geometry("laclip-tiny")
    spec = StreamSpec(dataset="demo", rewrites="rel", augment="laclip", texts_per_image=1, min_words=2, batch_size=16,
                      model="laclip-tiny", image_size=size, mean=mean, std=std, crop_scale=(0.5, 1.0), shuffle_buffer=1,
                      seed=0, workers=1)
    stream = TrainStream(demo_copy, resolve_shards(demo_copy, "demo"), spec)
    stream._setup()
    stats, rng, drawn = Counter(), random.Random(0), defaultdict(set)
    for sample, table in stream._raw(0, 0, stats):
        for _ in range(40):
            _, texts = stream._decode(sample, table, rng, stats)
            drawn[sample["__key__"]].update(texts)
    assert set(drawn) == set(want) and not stats["rewrite_caption_mismatches"] and not stats["keys_without_rewrites"]
    for key, texts in drawn.items():
        line, _, caption = want[key]
        released = {f"{s} r{line}: {norm(caption)}" for s in SOURCES} if line is not None else set()
        allowed = {caption.strip()} | released
        assert texts <= allowed, (key, texts - allowed)
        assert (len(texts) > 1) == (line is not None)  # matched samples do draw the release's rewrites


def test_empty_lines_are_rejected_and_laclip_filters_drop_echoes(demo_copy, tmp_path):
    release = write_release(demo_copy, tmp_path / "release", spaces=False)
    files = release["files"]
    rows = [c for _, c in release["rows"]]
    open(files["bard"], "w").write("".join(f"{c}\n" for c in rows))  # every bard "rewrite" is the caption again
    open(files["human"], "w").write("".join("\n" if i % 2 else f"human r{i}: {c}\n" for i, c in enumerate(rows)))
    cfg = ImportConfig(dataset="demo", root=demo_copy.url, original=files["original"],
                       sources={s: files[s] for s in SOURCES})
    strict = cfg.model_copy(update={"filter": "laclip"})
    for c, bard in ((cfg, None), (strict, "echo")):
        run_import(c)
        rid = c.resolved_rewrite_id()
        shard = resolve_shards(demo_copy, "demo")[0]
        table = pq.read_table(demo_copy.local_path(f"rewrites/demo/{rid}/{shard.id}.parquet")).to_pylist()
        matched = [r for r in table if r["release_line"] is not None]
        assert matched and all(r["bard_rejected"] == bard for r in matched)
        assert all((r["human_rejected"] == "empty") == (r["release_line"] % 2 == 1) for r in matched)
        assert all(r["human"] == r["caption"] for r in matched if r["human_rejected"])
        stats = json.loads(demo_copy.read_text(f"rewrites/demo/{rid}/{shard.id}.stats.json"))
        assert stats["sources"]["human"]["fallbacks"]["empty"] == sum(1 for r in matched if r["release_line"] % 2)
