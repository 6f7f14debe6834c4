"""Hostile-input classes 1-4: malformed datasets through `datasets show --check`, rewrite, train and eval.

Each dataset has a good shard 00000 (keys 0000xxxx) and a shard 00001 carrying the defect (keys
0001xxxx), so "nothing lost" can be checked: every good sample is rewritten or trained exactly once.
The documented outcomes are laclip.data.shards's rule (and laclip.data.images's pixel limit).
"""

from __future__ import annotations

import inspect
import random
from collections import Counter
from pathlib import Path

import pyarrow as pa

from .harness import (Case, Sample, assert_clean_error, good_shard, jpeg, keys_of, labelled, laclip, parquet_bytes,
                      png, png_header_only, rows_table, run_entry, sample_members, tar_bytes, write_checkpoint,
                      write_dataset, write_eval_set)

GOOD = keys_of("0000") | keys_of("0001")


# -- the stages, as the pods run them -------------------------------------------------------------
def train_epoch(root: Path, dataset: str, **overrides) -> tuple[Counter, Counter]:
    """What the trainer does with a dataset: its start-up checks and sample count, then one epoch of
    its loader (TrainStream) on one process: (keys trained, counts)."""
    from laclip.storage import open_store
    from laclip.train import inputs
    from laclip.train.config import TrainConfig
    from laclip.train.data import TrainStream

    cfg = TrainConfig(preset="demo", run="corpus", root=str(root), dataset=dataset, augment="none", workers=0,
                      **overrides)
    store = open_store(str(root))
    shards = inputs.check_inputs(cfg, store)
    counts: Counter = Counter()
    extra = {}
    if hasattr(inputs, "scan"):
        found = inputs.scan(store, shards, cfg.scan_shards)
        counts.update(unreadable_parquets=len(found.unreadable), skipped_rows=sum(found.skipped_rows.values()))
        extra = {"max_pixels": cfg.max_image_pixels, "skip_keys": found.repeated}
    else:  # the code before the fix
        from laclip.train.data import count_samples

        count_samples(store, shards)
    params = inspect.signature(TrainStream).parameters
    spec = dict(dataset=dataset, rewrites=None, augment="none", texts_per_image=1, min_words=2, batch_size=1,
                model="laclip-tiny", image_size=64, mean=(0.5,) * 3, std=(0.5,) * 3, crop_scale=(0.7, 1.0),
                shuffle_buffer=1, seed=0, workers=1)
    if "spec" in params:  # the loader's settings as one typed object
        from laclip.train.data import StreamSpec

        stream = TrainStream(store, shards, StreamSpec(**spec, max_pixels=extra.get("max_pixels")),
                             skip_keys=extra.get("skip_keys"))
    else:  # keyword arguments, as the code before the fix took them
        stream = TrainStream(store, shards, **spec, rank=0, world_size=1,
                             **{k: v for k, v in extra.items() if k in params})
    stream._setup()
    keys: Counter = Counter()
    rng = random.Random(0)
    for sample, table in stream._shuffled(0, 0, counts):
        if stream._decode(sample, table, rng, counts) is not None:
            keys[sample["__key__"]] += 1
    return keys, counts


def rewrite_all(root: Path, dataset: str) -> tuple[Counter, Counter]:
    """The rewrite worker (null engine) over every shard: (keys in the outputs, rows skipped)."""
    from laclip import layout
    from laclip.rewrite import output as rout
    from laclip.rewrite.config import RewriteConfig
    from laclip.rewrite.worker import run_index
    from laclip.storage import open_store

    store = open_store(str(root))
    cfg = RewriteConfig(dataset=dataset, engine="null", root=str(root), sources=["chatgpt"], shards_per_pod=100,
                        rewrite_id="corpus")
    results = run_index(cfg, store, 0)
    keys: Counter = Counter()
    for sid in layout.rewritten_shards(store, dataset, "corpus"):
        keys.update(rout.read_shard(store, dataset, "corpus", sid).column("key").to_pylist())
    skipped = Counter()
    for stats in results:
        skipped.update(stats.get("skipped_rows") or {})
    return keys, skipped


def check(root: Path, dataset: str, *extra: str):
    return laclip("--root", str(root), "datasets", "show", dataset, "--check", *extra)


def assert_flagged(res, *words: str | tuple[str, ...]) -> None:
    """`--check` found the problem: exit 1, the problem named in its output (each word, or one of each
    tuple of words), no traceback."""
    assert res.exc is None and res.rc not in (0, None), f"--check passed it: {res.out[-400:]}"
    text = res.out + res.err
    assert "Traceback" not in text, text[-800:]
    for word in words:
        assert any(w in text for w in ((word,) if isinstance(word, str) else word)), \
            f"{word!r} not in --check output:\n{text[-1200:]}"


def names_column(text: str, column: str) -> bool:
    return f"'{column}'" in text or f"{column} of key" in text


def evaluate(root: Path, dataset: str):
    from laclip.eval.config import EvalConfig
    from laclip.eval.worker import run_eval

    ckpt = write_checkpoint(root)
    cfg = EvalConfig(checkpoint=str(ckpt), root=str(root), datasets=[dataset], tasks=["zeroshot"], workers=0,
                     batch_size=4)
    return run_eval(cfg)


def raises_data_error(fn, *words: str) -> str:
    from laclip.errors import LaclipError

    try:
        fn()
    except LaclipError as exc:
        text = str(exc)
        assert exc.permanent, f"a bad input must not be retried: {type(exc).__name__}: {text}"
        for word in words:
            assert word in text, f"{word!r} not in {text!r}"
        return text
    raise AssertionError("no error: the bad input was used")


# -- class 1: columns of the wrong type -------------------------------------------------------------
COLUMN_KINDS = {  # name -> (arrow array of 4 values, bad rows it holds, a file-level defect?)
    "int": (pa.array([1, 2, 3, 4]), 4, True),
    "float": (pa.array([1.5, 2.0, 3.0, 4.0]), 4, True),
    "bool": (pa.array([True, False, True, False]), 4, True),
    "list": (pa.array([["a", "b"], ["c"], [], ["d"]]), 4, True),
    "struct": (pa.array([{"x": "a"}] * 4), 4, True),
    "nulls": (None, 2, False),  # 2 of the 4 values null
    "binary-not-utf8": (None, 1, False),  # 1 of the 4 values not UTF-8
}


def _typed_parquet(column: str, kind: str) -> tuple[bytes, bytes]:
    samples = [Sample(f"0001{j:04d}", caption=f"a blue circle number {j}", image=jpeg(32, 10 + j)) for j in range(4)]
    table = rows_table(samples)
    values, _, _ = COLUMN_KINDS[kind]
    if kind == "nulls":
        old = table.column(column).to_pylist()
        values = pa.array([None if j in (1, 3) else v for j, v in enumerate(old)], pa.string())
    elif kind == "binary-not-utf8":
        old = table.column(column).to_pylist()
        values = pa.array([v.encode() if j != 2 else b"bad \xff\xfe" for j, v in enumerate(old)], pa.binary())
    table = table.set_column(table.column_names.index(column), column, values)
    return tar_bytes(sample_members(samples)), parquet_bytes(table)


def _class1(column: str, kind: str, stage: str):
    bad_rows, file_level = COLUMN_KINDS[kind][1], COLUMN_KINDS[kind][2]
    url = "00001.parquet"

    def run(tmp: Path) -> None:
        write_dataset(tmp, "typed", [good_shard("0000"), _typed_parquet(column, kind)])
        if stage == "check":
            res = check(tmp, "typed")
            assert_flagged(res, url)
            assert file_level and names_column(res.out + res.err, column) or not file_level and (
                "skipped" in res.out or names_column(res.out + res.err, column)), (res.out + res.err)[-800:]
        elif stage == "rewrite":
            from laclip.errors import LaclipError

            try:
                keys, skipped = rewrite_all(tmp, "typed")
            except LaclipError as exc:  # a DataError naming the file and the column
                assert exc.permanent and url in str(exc) and names_column(str(exc), column), str(exc)
                return
            assert not file_level, f"a {kind} {column} column was turned into text: {sorted(keys)[:6]}"
            want = keys_of("0000") | {f"0001{j:04d}" for j in range(4) if (kind == "nulls" and j not in (1, 3))
                                      or (kind == "binary-not-utf8" and j != 2)}
            assert set(keys) == want and all(n == 1 for n in keys.values()), sorted(keys)
            assert sum(skipped.values()) == bad_rows, f"skipped rows not counted: {dict(skipped)}"
        else:  # train: the tar is what it trains on; the bad parquet is counted, never fatal
            keys, counts = train_epoch(tmp, "typed")
            assert set(keys) == GOOD and all(n == 1 for n in keys.values()), sorted(keys)
            counted = counts["unreadable_parquets"] if file_level else counts["skipped_rows"]
            assert counted == (1 if file_level else bad_rows), f"not counted: {dict(counts)}"

    return Case(1, f"{stage}-{column}-{kind}", run)


CLASS1 = [_class1(col, kind, stage) for col in ("key", "caption") for kind in COLUMN_KINDS
          for stage in ("check", "rewrite", "train")]
CLASS1.append(Case(1, "check-status-int", lambda tmp: assert_flagged(check(
    write_dataset(tmp, "typed", [good_shard("0000"), (good_shard("0001")[0], parquet_bytes(
        rows_table([Sample("00010000")]).set_column(2, "status", pa.array([1]))))]).parents[1], "typed"),
    "00001.parquet", "status")))


# -- class 2: duplicates ----------------------------------------------------------------------------
def _dup_in_tar(n: int, consecutive: bool, prefix: str = "0001") -> tuple[bytes, bytes]:
    samples = [Sample(f"{prefix}{j:04d}", image=jpeg(32, 20 + j)) for j in range(4)]
    extra = [Sample(samples[j % 4].key, caption="the same key again", image=jpeg(32, 40 + j)) for j in range(n)]
    order = (samples[:1] + extra + samples[1:]) if consecutive else (samples + extra)
    return tar_bytes(sample_members(order)), parquet_bytes(rows_table(samples))


def _dup_in_parquet(n: int) -> tuple[bytes, bytes]:
    samples = [Sample(f"0001{j:04d}", image=jpeg(32, 20 + j)) for j in range(4)]
    rows = samples + [Sample(samples[j % 4].key, caption="another caption for it") for j in range(n)]
    return tar_bytes(sample_members(samples)), parquet_bytes(rows_table(rows))


def _dup_across(n: int, prefix: str = "0001") -> tuple[bytes, bytes]:
    samples = [Sample(f"{prefix}{j:04d}", image=jpeg(32, 20 + j)) for j in range(4)]
    samples += [Sample(f"0000{j:04d}", caption="a key of shard 0 again", image=jpeg(32, 60 + j)) for j in range(n)]
    return tar_bytes(sample_members(samples)), parquet_bytes(rows_table(samples))


def _class2_tar(n: int, consecutive: bool, stage: str):
    def run(tmp: Path) -> None:
        write_dataset(tmp, "dups", [good_shard("0000"), _dup_in_tar(n, consecutive)])
        if stage == "check":
            assert_flagged(check(tmp, "dups"), "00001.tar", "repeat")
        else:
            keys, counts = train_epoch(tmp, "dups")
            assert set(keys) == GOOD and all(v == 1 for v in keys.values()), f"trained twice: {dict(keys)}"
            assert counts["duplicate_keys"] == n, dict(counts)
    return Case(2, f"{stage}-tar-repeats-{n}{'-consecutive' if consecutive else ''}", run)


def _class2_parquet(n: int, stage: str):
    def run(tmp: Path) -> None:
        write_dataset(tmp, "dups", [good_shard("0000"), _dup_in_parquet(n)])
        if stage == "check":
            assert_flagged(check(tmp, "dups"), "00001.parquet", "duplicate key")
        elif stage == "rewrite":
            keys, skipped = rewrite_all(tmp, "dups")
            assert set(keys) == GOOD and all(v == 1 for v in keys.values()), dict(keys)
            assert skipped["duplicate_key"] == n, dict(skipped)
        else:
            keys, counts = train_epoch(tmp, "dups")
            assert set(keys) == GOOD and all(v == 1 for v in keys.values()) and counts["skipped_rows"] == n, \
                (dict(keys), dict(counts))
    return Case(2, f"{stage}-parquet-repeats-{n}", run)


def _class2_across(n: int, stage: str):
    def run(tmp: Path) -> None:
        write_dataset(tmp, "dups", [good_shard("0000"), _dup_across(n)])
        if stage == "check":
            assert_flagged(check(tmp, "dups"), "00001.parquet", "earlier shard")
        else:
            keys, counts = train_epoch(tmp, "dups")
            assert set(keys) == GOOD and all(v == 1 for v in keys.values()), f"trained twice: {dict(keys)}"
            assert counts["duplicate_keys"] == n, dict(counts)
    return Case(2, f"{stage}-across-shards-{n}", run)


def _class2_missing(part: str):
    def run(tmp: Path) -> None:
        samples = [Sample(f"0001{j:04d}") for j in range(4)]
        if part == "jpg":
            samples[2].image = None
        else:
            samples[1].txt = None
        write_dataset(tmp, "holes", [good_shard("0000"), (tar_bytes(sample_members(samples)),
                                                          parquet_bytes(rows_table(samples)))])
        assert_flagged(check(tmp, "holes"), "00001.tar", "without an image" if part == "jpg" else "without a .txt")
    return Case(2, f"check-sample-without-{part}", run)


CLASS2 = ([_class2_tar(n, c, st) for n in (1, 2) for c in (False, True) for st in ("check", "train")]
          + [_class2_parquet(n, st) for n in (1, 3) for st in ("check", "rewrite", "train")]
          + [_class2_across(n, st) for n in (1, 2) for st in ("check", "train")]
          + [_class2_missing(p) for p in ("jpg", "txt")])


# -- class 3: images that are not what they claim -----------------------------------------------------
IMAGES = {  # name -> (bytes maker, trained?) for laclip-tiny (64 px: a limit of 1,048,576 pixels)
    "png-1100x1100": (lambda: png(1100, 1100), False),
    "png-100-megapixels": (lambda: png(10000, 10000), False),
    "png-header-20000x20000": (lambda: png_header_only(20000, 20000), False),
    "png-header-4000x4000": (lambda: png_header_only(4000, 4000), False),
    "png-50000x20-within-limit": (lambda: png(50000, 20), True),
    "jpeg-truncated": (lambda: jpeg(64)[:200], False),
    "not-an-image": (lambda: b"GIF89a but not really", False),
}


def _image_shard(maker, prefix: str = "0001") -> tuple[bytes, bytes]:
    samples = [Sample(f"{prefix}{j:04d}", image=jpeg(32, 30 + j)) for j in range(4)]
    samples[1].image = maker()
    return tar_bytes(sample_members(samples)), parquet_bytes(rows_table(samples))


def _class3(name: str, stage: str):
    maker, used = IMAGES[name]

    def run(tmp: Path) -> None:
        if stage == "train":
            write_dataset(tmp, "images", [good_shard("0000"), _image_shard(maker)])
            keys, counts = train_epoch(tmp, "images")
            want = GOOD if used else GOOD - {"00010001"}
            assert set(keys) == want, f"{name}: trained {sorted(set(keys) ^ want)} wrongly"
            assert counts["broken_images"] == (0 if used else 1), dict(counts)
        elif stage == "check":
            write_dataset(tmp, "images", [good_shard("0000"), _image_shard(maker)])
            res = check(tmp, "images", "--max-image-pixels", "1048576")
            if used:
                assert res.rc == 0 and res.exc is None, res.out[-600:]
            else:
                assert_flagged(res, "00001.tar")
        else:  # eval: a benchmark image that cannot be used ends the evaluation, naming it
            items = labelled(6)
            items[3] = (items[3][0], maker(), items[3][2])
            write_eval_set(tmp, "evalset", items)
            if used:
                assert evaluate(tmp, "evalset")
            else:
                raises_data_error(lambda: evaluate(tmp, "evalset"), items[3][0])
    return Case(3, f"{stage}-{name}", run)


CLASS3 = [_class3(n, st) for n in IMAGES for st in ("train", "eval", "check")
          if not (st == "check" and n.startswith(("jpeg", "not")))]


def _limit_is_configurable(tmp: Path) -> None:
    write_dataset(tmp, "images", [good_shard("0000"), _image_shard(lambda: png(1100, 1100))])
    keys, counts = train_epoch(tmp, "images", max_image_pixels=2_000_000)
    assert set(keys) == GOOD and not counts["broken_images"], dict(counts)


CLASS3.append(Case(3, "train-limit-raised-by-config", _limit_is_configurable))


# -- class 4: "never fatal" that was fatal ------------------------------------------------------------
def _garbage(kind: str) -> bytes:
    good = good_shard("0001")[1]
    return {"random-bytes": bytes(random.Random(4).randrange(256) for _ in range(600)),
            "truncated": good[: len(good) // 2], "empty": b"", "non-utf8": b"\xff\xfe\xfd caption \x80" * 40,
            "magic-only": b"PAR1", "text": "key,caption,status\n00010000,a cat,success\n".encode()}[kind]


def _class4_parquet(kind: str, stage: str, **overrides):
    def run(tmp: Path) -> None:
        write_dataset(tmp, "broken", [good_shard("0000"), (good_shard("0001")[0], _garbage(kind))])
        if stage == "train":
            keys, counts = train_epoch(tmp, "broken", **overrides)
            assert set(keys) == GOOD and counts["unreadable_parquets"] == 1, (sorted(keys), dict(counts))
        elif stage == "rewrite":  # its input: a clear, permanent error naming the file
            raises_data_error(lambda: rewrite_all(tmp, "broken"), "00001.parquet")
        else:
            assert_flagged(check(tmp, "broken"), "00001.parquet")
    suffix = "-probed" if overrides else ""
    return Case(4, f"{stage}-parquet-{kind}{suffix}", run)


def _all_unreadable(steps: bool):
    def run(tmp: Path) -> None:
        write_dataset(tmp, "broken", [(good_shard("0000")[0], b"junk"), (good_shard("0001")[0], b"")])
        if steps:  # a fixed step budget needs no count: it trains on the tars
            keys, counts = train_epoch(tmp, "broken", steps=5)
            assert set(keys) == GOOD and counts["unreadable_parquets"] == 2, dict(counts)
        else:  # epochs need a count: a clear, permanent error at the trainer's start, before any work
            from laclip.train.config import TrainConfig
            from laclip.train.main import main

            cfg = TrainConfig(preset="demo", run="corpus", root=str(tmp), dataset="broken", steps=None, epochs=2,
                              workers=0, tensorboard=False)
            code, logged = run_entry(main, ["--config", cfg.to_arg()])
            assert code == 3 and "no sample could be counted" in logged and "Traceback" not in logged, logged[-1500:]
    return Case(4, f"train-every-parquet-unreadable-{'steps' if steps else 'epochs'}", run)


def _unfinished_synth(stage: str):
    def run(tmp: Path) -> None:
        from laclip.data.synth import synth_demo
        from laclip.storage import open_store

        synth_demo(open_store(str(tmp)), shards=2, per_shard=4)  # the settings `data synth` below uses
        (tmp / "datasets" / "demo" / "synth.json").unlink()  # interrupted before its last write
        for lost in ("00001.parquet", "00001.tar"):
            (tmp / "datasets" / "demo" / lost).unlink()
        if stage == "train":
            raises_data_error(lambda: train_epoch(tmp, "demo"), "laclip data synth")
        elif stage == "rewrite":
            raises_data_error(lambda: rewrite_all(tmp, "demo"), "laclip data synth")
        elif stage == "eval":
            raises_data_error(lambda: evaluate(tmp, "demo-eval"), "laclip data synth")
        elif stage == "show":
            assert_clean_error(laclip("--root", str(tmp), "datasets", "show", "demo"), "laclip data synth")
        else:  # `data synth` again completes it
            res = laclip("--root", str(tmp), "data", "synth", "--shards", "2", "--per-shard", "4")
            assert res.rc == 0 and (tmp / "datasets" / "demo" / "synth.json").exists(), res.err[-500:]
    return Case(4, f"unfinished-synth-{stage}", run)


CLASS4 = ([_class4_parquet(k, st) for k in ("random-bytes", "truncated", "empty", "non-utf8", "magic-only", "text")
           for st in ("train", "rewrite", "check")]
          + [_class4_parquet(k, "train", scan_shards=0) for k in ("truncated", "empty")]
          + [_all_unreadable(True), _all_unreadable(False)]
          + [_unfinished_synth(st) for st in ("train", "rewrite", "eval", "show", "resume")])

CASES = CLASS1 + CLASS2 + CLASS3 + CLASS4
