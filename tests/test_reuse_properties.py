"""Property tests (hypothesis) over every reuse path: change any one input or setting that decides an output, and
the old output is never handed back (a refusal naming the change, or a new identity); change only how or where it
runs, or the form of an input but not its content, and it is reused.

The tables below list, per output, a change of every setting that enters its identity; a test keeps each table
complete, so a setting added later is covered or the suite fails.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from laclip.errors import DataError, UsageError
from laclip.storage import open_store

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def _copy(root: Path) -> tuple[Path, object]:
    dest = Path(tempfile.mkdtemp(prefix="laclip-reuse-")) / "root"
    shutil.copytree(root, dest)
    return dest, open_store(str(dest))


def _rewrite_set(store, rid: str, dataset: str = "demo", text: str = "{c}, seen again") -> None:
    from tests.train.train_helpers import write_rewrites

    write_rewrites(store, dataset=dataset, rewrite_id=rid)
    if text != "{c}, seen again":
        for path in store.list(f"rewrites/{dataset}/{rid}/"):
            if path.endswith(".parquet"):
                t = pq.read_table(store.local_path(path))
                t = t.set_column(2, t.column_names[2], pa.array([text.format(c=c) for c in t.column("caption")
                                                                 .to_pylist()], pa.string()))
                pq.write_table(t, store.local_path(path))


# -- a training run ------------------------------------------------------------------------------------
BASE_RUN = dict(preset="demo", run="r", rewrites="rw1", augment="laclip", loss="multitext", texts_per_image=2,
                workers=0, steps=4)
RUN_CHANGES = {  # recipe field -> other values (with what a valid config needs beside it)
    "dataset": [{"dataset": "demo2"}], "rewrites": [{"rewrites": "rw2"}], "augment": [{"augment": "none"}],
    "min_words": [{"min_words": 0}, {"min_words": 5}], "model": [{"model": "ViT-B-32"}, {"model": "RN50"}],
    "batch_size": [{"batch_size": 4}, {"batch_size": 128}], "accum_freq": [{"accum_freq": 2}],
    "lr": [{"lr": 1e-4}, {"lr": 0.01}], "wd": [{"wd": 0.0}, {"wd": 0.2}], "beta1": [{"beta1": 0.8}],
    "beta2": [{"beta2": 0.999}], "eps": [{"eps": 1e-6}], "loss": [{"loss": "clip", "texts_per_image": 1}],
    "texts_per_image": [{"texts_per_image": 3}], "multitext_form": [{"multitext_form": "pooled"}],
    "local_loss": [{"local_loss": True, "gather_with_grad": True}], "gather_with_grad": [{"gather_with_grad": True}],
    "precision": [{"precision": "amp_bf16"}, {"precision": "auto"}],
    "crop_scale": [{"crop_scale": (0.5, 1.0)}, {"crop_scale": (0.9, 1.0)}], "grad_clip": [{"grad_clip": 1.0}],
    "seed": [{"seed": 1}, {"seed": 12345}], "shuffle_buffer": [{"shuffle_buffer": 1}, {"shuffle_buffer": 999}],
    "max_image_pixels": [{"max_image_pixels": 4096}], "scan_shards": [{"scan_shards": 0}],
    "text_probs": [{"text_probs": {"caption": 0.5, "chatgpt": 0.5}}],
}
DATA_CHANGES = ["tar", "parquet captions", "rewrite rows", "shard added", "shard removed"]
RUN_SAME = [{"workers": 2}, {"log_every": 1}, {"checkpoint_every": 1}, {"keep_last": 9}, {"tensorboard": False},
            {"lease_timeout_s": 60}, {"data_wait_warn": 0.5}, {"procs_per_node": 2}, {"compile": True},
            {"grad_checkpointing": True}, {"steps": 8}, {"warmup_steps": 1}, {"resume": "none"},
            {"max_rewrite_mismatch": 0.5}, {"eval_datasets": ["demo-eval"]}, {"nodes": "2"}]


def test_the_run_table_names_every_setting_of_the_recipe():
    from laclip.train.config import TrainConfig

    assert set(RUN_CHANGES) == set(TrainConfig(**BASE_RUN).recipe())


def _change_data(root: Path, store, what: str) -> None:
    folder = root / "datasets" / "demo"
    if what == "tar":
        tar = folder / "00001.tar"
        data = bytearray(tar.read_bytes())
        i = data.index(b"\xff\xd8") + 200  # a byte inside the first image
        data[i] ^= 0xFF
        tar.write_bytes(bytes(data))
    elif what == "parquet captions":
        t = pq.read_table(folder / "00002.parquet")
        caps = t.column("caption").to_pylist()
        caps[0] = caps[0] + " (another caption)"
        t = t.set_column(t.column_names.index("caption"), "caption", pa.array(caps))
        pq.write_table(t, folder / "00002.parquet")
    elif what == "rewrite rows":
        _rewrite_set(store, "rw1", text="{c}, made again")
    elif what == "shard added":
        for ext in ("tar", "parquet"):
            shutil.copy(folder / f"00003.{ext}", folder / f"00004.{ext}")
    else:
        for ext in ("tar", "parquet"):
            (folder / f"00003.{ext}").unlink()


@pytest.fixture(scope="module")
def run_root(demo_root, tmp_path_factory):
    """The demo store with two rewrite sets, a second dataset and the record of run `r` as its first start wrote it."""
    from laclip.data.registry import resolve_shards
    from laclip.train.config import TrainConfig
    from laclip.train.inputs import claim_run

    root = tmp_path_factory.mktemp("runs") / "root"
    shutil.copytree(demo_root, root)
    shutil.copytree(root / "datasets" / "demo", root / "datasets" / "demo2")
    store = open_store(str(root))
    for rid in ("rw1", "rw2"):
        _rewrite_set(store, rid)
    cfg = TrainConfig(root=str(root), **BASE_RUN)
    claim_run(cfg, store, resolve_shards(store, "demo"), cfg.model_dump(mode="json"))
    return root


@SETTINGS
@given(st.sampled_from(sorted(RUN_CHANGES) + DATA_CHANGES), st.data())
def test_a_run_is_never_handed_back_for_another_setting_or_other_data(run_root, change, data):
    from laclip.data.registry import resolve_shards
    from laclip.train.config import TrainConfig
    from laclip.train.inputs import check_run

    root, store = _copy(run_root)
    try:
        values = dict(BASE_RUN, root=str(root))
        if change in RUN_CHANGES:
            values.update(data.draw(st.sampled_from(RUN_CHANGES[change])))
        else:
            _change_data(root, store, change)
        cfg = TrainConfig(**values)
        with pytest.raises(UsageError, match="trained with other settings or data") as info:
            check_run(cfg, store, resolve_shards(store, cfg.dataset))
        word = {"tar": "dataset", "parquet captions": "dataset", "rewrite rows": "rewrites", "shard added": "dataset",
                "shard removed": "dataset"}.get(change, change)
        assert word in str(info.value)
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)


@SETTINGS
@given(st.sampled_from(range(len(RUN_SAME))))
def test_a_run_is_reused_when_only_how_it_runs_changes(run_root, which):
    from laclip.data.registry import resolve_shards
    from laclip.train.config import TrainConfig
    from laclip.train.inputs import check_run

    store = open_store(str(run_root))
    cfg = TrainConfig(**dict(BASE_RUN, root=str(run_root), **RUN_SAME[which]))
    check_run(cfg, store, resolve_shards(store, "demo"))


# -- a rewrite set -------------------------------------------------------------------------------------
def _model(folder: Path, weights: bytes = b"w" * 4096) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(weights)
    return str(folder)


REWRITE_CHANGES = {  # fingerprint key -> changes (a value, or "weights": the model folder's content)
    "engine": [{"engine": "vllm"}], "model": [{"model": "hub:org/another-model"}], "model_digest": ["weights"],
    "sources": [{"sources": ["chatgpt", "bard"]}],
    "prompt_set_hash": [{"sources": ["chatgpt", "mine"],
                         "meta_pairs": {"mine": [(f"a b {i}", f"c d {i}") for i in range(3)]}}],
    "sampling": [{"sampling": {"temperature": 0.5}}, {"sampling": {"top_p": 0.5}}, {"sampling": {"max_new_tokens": 9}},
                 {"sampling": {"stop": "."}}],
    "engine_options": [{"engine_options": {"dtype": "float16"}}, {"engine_options": {"device": "cuda"}}],
    "seed": [{"seed": 1}], "max_caption_words": [{"max_caption_words": 8}],
    "max_caption_chars": [{"max_caption_chars": 40}], "batch_size": [{"batch_size": 1}, {"batch_size": 64}],
    "faithfulness": [{"faithfulness": "off"}],  # "builtin" is what "auto" resolves to without WordNet
    "filter_version": [],  # fixed by the code: not a user's setting
    "back_model": [],  # backtranslate's second folder: its content enters model_digest
    "eda_operations": [],  # eda's (its ids are checked by the rewrite tests)
}
REWRITE_SAME = [{"shards_per_pod": 4}, {"parallelism": 3}, {"backoff_limit_per_index": 0}, {"run": "another"},
                {"num_shards": 4}, {"cluster": {"cpu": "2"}}, {"max_failed_indexes": 2}]


def _rewrite_cfg(tmp: Path, **values):
    from laclip.rewrite.config import RewriteConfig

    model = values.pop("model", None)  # a folder of weights, or "hub:NAME" for a model known by name only
    model = model[4:] if model and model.startswith("hub:") else _model(tmp / (model or "llama-tiny"))
    cfg = RewriteConfig(**{"dataset": "demo", "engine": "hf", "model": model, "sources": ["chatgpt", "bard", "coco"],
                           **values})
    return cfg.check().for_this_model()[0]


def test_the_rewrite_table_names_every_part_of_the_identity(tmp_path):
    from laclip.rewrite.config import ENGINES

    from laclip.rewrite.config import RewriteConfig

    for engine in ENGINES:
        extra = {"back_model": _model(tmp_path / "back")} if engine == "backtranslate" else \
            {"endpoint": "http://vllm:8000/v1"} if engine == "openai" else {}
        if engine in ("eda", "null"):
            cfg = RewriteConfig(dataset="demo", engine=engine).check()
        else:
            cfg = _rewrite_cfg(tmp_path, engine=engine, **extra)
        assert set(cfg.output_fingerprint()) <= set(REWRITE_CHANGES), engine


@SETTINGS
@given(st.sampled_from([k for k, v in REWRITE_CHANGES.items() if v]), st.data())
def test_a_rewrite_set_is_never_reused_for_another_setting_or_model(demo_root, key, data):
    from laclip.rewrite.worker import ensure_run_record

    tmp = Path(tempfile.mkdtemp(prefix="laclip-rw-"))
    try:
        base = _rewrite_cfg(tmp / "a")
        change = data.draw(st.sampled_from(REWRITE_CHANGES[key]))
        if change == "weights":
            (tmp / "b").mkdir()
            other = _rewrite_cfg(tmp / "b")
            Path(other.model, "model.safetensors").write_bytes(b"v" * 4096)
            other = other.model_copy(update={"model_digest": None}).for_this_model()[0]
        else:
            other = _rewrite_cfg(tmp / "b", **change)
        assert other.resolved_rewrite_id() != base.resolved_rewrite_id()  # a new identity ...
        store = open_store(str(tmp / "store"))
        pinned = [c.model_copy(update={"rewrite_id": "pinned"}) for c in (base, other)]
        ensure_run_record(store, pinned[0], "pinned", {})
        with pytest.raises(UsageError, match="different settings"):  # ... or, under a given id, a refusal
            ensure_run_record(store, pinned[1], "pinned", {})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_a_model_folder_is_known_by_its_content_not_its_place(tmp_path):
    here = _rewrite_cfg(tmp_path / "a")
    there = _rewrite_cfg(tmp_path / "b" / "c")  # the same files, under another parent folder
    assert here.model != there.model and here.resolved_rewrite_id() == there.resolved_rewrite_id()


@SETTINGS
@given(st.sampled_from(range(len(REWRITE_SAME))))
def test_a_rewrite_set_is_resumed_when_only_how_it_runs_changes(tmp_path_factory, which):
    tmp = tmp_path_factory.mktemp("same")
    base = _rewrite_cfg(tmp)
    assert base.model_copy(update=REWRITE_SAME[which]).resolved_rewrite_id() == base.resolved_rewrite_id()


# -- a rewritten shard and the dataset shard it was made from --------------------------------------------
EDITS = st.lists(st.one_of(
    st.tuples(st.just("caption"), st.integers(0, 127)), st.tuples(st.just("drop"), st.integers(0, 127)),
    st.tuples(st.just("add"), st.integers(0, 127)), st.tuples(st.just("key"), st.integers(0, 127))), max_size=3)


@pytest.fixture(scope="module")
def rewritten(demo_root, tmp_path_factory):
    from laclip.rewrite.config import RewriteConfig
    from laclip.rewrite.worker import run_index

    root = tmp_path_factory.mktemp("rewritten") / "root"
    shutil.copytree(demo_root, root)
    run_index(RewriteConfig(dataset="demo", engine="null"), open_store(str(root)), 0)
    return root


@SETTINGS
@given(EDITS, st.permutations(range(128)))
def test_a_rewritten_shard_is_reused_exactly_when_its_rows_are_the_same(rewritten, edits, order):
    from laclip.data.registry import resolve_shards
    from laclip.data.shards import read_captions
    from laclip.rewrite import output as out
    from laclip.rewrite.config import RewriteConfig

    store = open_store(str(rewritten))
    rid = RewriteConfig(dataset="demo", engine="null").resolved_rewrite_id()
    shard = resolve_shards(store, "demo")[0]
    rows = read_captions(store, shard)
    now = [rows[i] for i in order]  # another order: the same input
    for op, i in edits:
        i %= len(now)
        if op == "caption":
            now[i] = (now[i][0], now[i][1] + " and more")
        elif op == "drop":
            del now[i]
        elif op == "add":
            now.append((f"new{i}", "a caption of a new sample"))
        else:
            now[i] = (now[i][0] + "x", now[i][1])
    stats = out.recorded_stats(store, "demo", rid, shard.id, restore=False)
    if sorted(now) == sorted(rows):
        out.check_made_from(store, "demo", rid, shard, now, stats, "redo")
    else:
        with pytest.raises(DataError, match="changed since rewrite"):
            out.check_made_from(store, "demo", rid, shard, now, stats, "redo")


# -- an export, and the pipeline's ids ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(demo_root, tmp_path_factory):
    from laclip.rewrite.export import export_wds_json

    root = tmp_path_factory.mktemp("exported") / "root"
    shutil.copytree(demo_root, root)
    _rewrite_set(open_store(str(root)), "rw1")
    export_wds_json(open_store(str(root)), "demo", "rw1", str(root.parent / "wds"))
    return root


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.sampled_from(["tar", "parquet captions", "rewrite rows", "none"]))
def test_an_exported_shard_is_kept_only_while_its_inputs_are(exported, change):
    from laclip.rewrite.export import export_wds_json

    root, store = _copy(exported)
    try:
        shutil.copytree(exported.parent / "wds", root.parent / "wds")
        if change == "none":
            assert export_wds_json(store, "demo", "rw1", str(root.parent / "wds"))["shards_skipped"] == 4
        else:
            _change_data(root, store, change)
            with pytest.raises((UsageError, DataError), match="export"):
                export_wds_json(store, "demo", "rw1", str(root.parent / "wds"))
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)


@SETTINGS
@given(st.sampled_from(["seed", "steps", "nproc", "rewrite id"]), st.integers(1, 50))
def test_the_pipelines_run_ids_change_with_each_setting(what, n):
    from laclip_cli.pipeline import _tag

    base = ("eda-0123456789-dabcdef", 6, 0, 1)
    i = ["rewrite id", "steps", "seed", "nproc"].index(what)
    other = list(base)
    other[i] = f"eda-0123456789-d{n:06d}" if i == 0 else base[i] + n
    assert _tag(*other) != _tag(*base)


@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.sampled_from(["tar", "parquet captions", "shard added", "shard removed"]))
def test_the_pipelines_data_digest_names_the_demo_shards_content(demo_root, change):
    from laclip_cli.pipeline import _data_digest

    root, store = _copy(demo_root)
    try:
        before = _data_digest(store)
        _change_data(root, store, change)
        assert _data_digest(store) != before
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)
