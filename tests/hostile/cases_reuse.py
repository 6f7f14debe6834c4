"""Round two, classes 103-105: outputs handed back for other settings or other data, and the reverse error (the
same input in another form refused). An output is reused only when everything that decides it is the same:
a finished training run asked for with one setting or one input changed, the pipeline after its data was
drawn again, an export after its rewrite set or dataset changed, a rewrite id after the model folder's
content or the hf engine's batch size changed. The correct outcome of a change is a refusal in one line
naming it, or a new output (a new id); of an unchanged input (also reordered rows), the old output.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .harness import Case, assert_clean_error, assert_ok, jpeg, laclip, parquet_bytes, tar_bytes

_TEMPLATES: dict[str, Path] = {}


def _template(name: str, build) -> Path:
    """A store built once per process (a finished run, a pipeline run), copied for each case."""
    if name not in _TEMPLATES:
        folder = Path(tempfile.mkdtemp(prefix=f"hostile-{name}-"))
        atexit.register(shutil.rmtree, folder, True)
        build(folder / "store")
        _TEMPLATES[name] = folder / "store"
    return _TEMPLATES[name]


def _copy(name: str, build, tmp: Path, dest: str = "store") -> Path:
    root = tmp / dest
    shutil.copytree(_template(name, build), root, symlinks=True)
    return root


def _demo(root: Path, **kw) -> None:
    from laclip.data.synth import synth_demo
    from laclip.storage import open_store

    synth_demo(open_store(str(root)), **{"shards": 1, "per_shard": 64, "eval_train_per_class": 5,
                                         "eval_test_per_class": 5, **kw})


def _rewrite_set(root: Path, rid: str = "rw", text: str = "{s}: {c}", shards=None) -> None:
    """rewrites/demo/<rid>/: a parquet per dataset shard (key, caption, one column per source), and a record."""
    folder = root / "rewrites" / "demo" / rid
    folder.mkdir(parents=True, exist_ok=True)
    for parquet in sorted((root / "datasets" / "demo").glob("*.parquet")):
        if shards is not None and parquet.stem not in shards:
            continue
        t = pq.read_table(parquet)
        keys, caps = t.column("key").to_pylist(), t.column("caption").to_pylist()
        cols = {"key": keys, "caption": caps, **{s: [text.format(s=s, c=c) for c in caps] for s in ("chatgpt", "bard")}}
        pq.write_table(pa.table(cols), folder / parquet.name)
    (folder / "config.json").write_text(json.dumps({"dataset": "demo", "rewrite_id": rid,
                                                    "sources": ["chatgpt", "bard"]}))


def _edit_parquet(root: Path, shard: str, edit) -> None:
    path = root / "datasets" / "demo" / f"{shard}.parquet"
    path.write_bytes(parquet_bytes(edit(pq.read_table(path))))


def _new_captions(t: pa.Table) -> pa.Table:
    caps = [c + " seen again" for c in t.column("caption").to_pylist()]
    return t.set_column(t.column_names.index("caption"), "caption", pa.array(caps, pa.string()))


def _new_images(root: Path, shard: str = "00000") -> None:
    """The same keys and captions, other images (a re-download whose links now serve other pictures)."""
    from laclip.data.shards import iter_tar
    from laclip.storage import open_store

    store = open_store(str(root))
    members = []
    for i, sample in enumerate(iter_tar(store, f"datasets/demo/{shard}.tar")):
        for ext, data in sample.items():
            if ext != "__key__":
                members.append((f"{sample['__key__']}.{ext}", jpeg(64, 200 + i) if ext == "jpg" else data))
    (root / "datasets" / "demo" / f"{shard}.tar").write_bytes(tar_bytes(members))


# -- class 103: a finished training run asked for with other settings or data ----------------------
BASE = ["submit", "train", "--dataset", "demo", "--local", "--run", "done", "--steps", "2", "--augment", "none",
        "--workers", "0", "--batch-size", "8"]


def _trained(root: Path) -> None:
    _demo(root)
    _rewrite_set(root)
    assert_ok(laclip("--root", str(root), *BASE))


RUN_CHANGES = [  # (name, extra flags, what the store is changed by, a word the refusal names)
    ("lr", ["--lr", "0.01"], None, "lr"), ("wd", ["--wd", "0.3"], None, "wd"),
    ("set-seed", ["--set", "seed=1"], None, "seed"), ("seed-flag", ["--seed", "2"], None, "seed"),
    ("batch-size", ["--batch-size", "4"], None, "batch_size"),
    ("augment-laclip", ["--augment", "laclip", "--rewrites", "rw"], None, "augment"),
    ("shuffle-buffer", ["--set", "shuffle_buffer=7"], None, "shuffle_buffer"),
    ("crop-scale", ["--set", "crop_scale=[0.5,1.0]"], None, "crop_scale"),
    ("grad-clip", ["--set", "grad_clip=1.0"], None, "grad_clip"),
    ("max-image-pixels", ["--set", "max_image_pixels=5000"], None, "max_image_pixels"),
    ("images-replaced", [], lambda root: _new_images(root), "dataset"),
    ("captions-changed", [], lambda root: _edit_parquet(root, "00000", _new_captions), "dataset"),
]
RUN_SAME = [("same-command", []), ("log-every", ["--log-every", "1"]), ("keep-last", ["--keep-last", "5"])]


def _run_changed(name, extra, change, word) -> Case:
    def run(tmp: Path) -> None:
        root = _copy("trained", _trained, tmp)
        before = (root / "checkpoints" / "done" / "step_2.pt").read_bytes()
        if change:
            change(root)
        args = list(BASE)
        if "--augment" in extra:  # replaces the base's --augment none
            i = args.index("--augment")
            del args[i:i + 2]
        res = laclip("--root", str(root), *args, *extra)
        assert_clean_error(res, word)
        assert (root / "checkpoints" / "done" / "step_2.pt").read_bytes() == before
    return Case(103, f"finished-run-{name}", run, slow=True, group="hostile-trained")


def _run_same(name, extra) -> Case:
    def run(tmp: Path) -> None:
        root = _copy("trained", _trained, tmp)
        before = (root / "checkpoints" / "done" / "step_2.pt").read_bytes()
        res = laclip("--root", str(root), *BASE, *extra)
        assert_ok(res)
        assert (root / "checkpoints" / "done" / "step_2.pt").read_bytes() == before  # reused, not trained again
    return Case(103, f"finished-run-reused-{name}", run, slow=True, group="hostile-trained")


# -- class 104: the pipeline after its data changed --------------------------------------------------
PIPE = ["pipeline", "--local", "--steps", "2"]


def _piped(root: Path) -> None:
    _demo(root)
    assert_ok(laclip("--root", str(root), *PIPE, env={"OMP_NUM_THREADS": "1"}))


def _piped_in_place() -> Path:
    """The piped store at the path it was built at (its evaluation records name checkpoints by URL, so a copy
    elsewhere is another store): restored there from a pristine copy for each case."""
    def build(pristine: Path) -> None:
        _piped(pristine.parent / "live")
        shutil.copytree(pristine.parent / "live", pristine, symlinks=True)

    pristine = _template("piped", build)
    live = pristine.parent / "live"
    shutil.rmtree(live, ignore_errors=True)
    shutil.copytree(pristine, live, symlinks=True)
    return live


def _pipeline(name: str, change, reuse: bool) -> Case:
    def run(tmp: Path) -> None:
        root = _piped_in_place()
        if change:
            change(root)
        res = laclip("--root", str(root), *PIPE, env={"OMP_NUM_THREADS": "1"})
        assert_ok(res)
        reused = res.out.count("reusing checkpoints/")
        assert reused == (2 if reuse else 0), f"{reused} models reused: {res.out[-600:]}"
    return Case(104, f"pipeline-{name}", run, slow=True, group="hostile-piped")


PIPELINE = [
    _pipeline("unchanged-data", None, True),
    _pipeline("demo-drawn-again-seed-5", lambda root: _demo(root, seed=5, overwrite=True), False),
    _pipeline("images-replaced", _new_images, False),
    _pipeline("captions-changed", lambda root: _edit_parquet(root, "00000", _new_captions), False),
    _pipeline("shard-added", lambda root: _demo(root, shards=2, overwrite=True), False),
]

# -- class 105: exports and rewrite ids that outlive what made them -----------------------------------
def _exported(root: Path) -> None:
    _demo(root, shards=2)
    _rewrite_set(root)
    assert_ok(laclip("--root", str(root), "rewrites", "export", "--dataset", "demo", "--rewrites", "rw",
                     "--out", str(root.parent / "wds")))


def _export(name: str, change, ok: bool, *words: str) -> Case:
    def run(tmp: Path) -> None:
        root = _copy("exported", _exported, tmp)
        shutil.copytree(_template("exported", _exported).parent / "wds", tmp / "wds")
        change(root)
        res = laclip("--root", str(root), "rewrites", "export", "--dataset", "demo", "--rewrites", "rw",
                     "--out", str(tmp / "wds"))
        if not ok:
            assert_clean_error(res, *words)
            return
        assert_ok(res)
        from laclip.data.shards import iter_tar
        from laclip.storage import open_store

        for tar in sorted((tmp / "wds").glob("*.tar")):  # every sample carries the set's rewrites as they are now
            for sample in iter_tar(open_store(str(tmp / "wds")), tar.name):
                meta = json.loads(sample["json"])
                assert meta.get("chatgpt", "").startswith("chatgpt"), (tar.name, meta)
    return Case(105, f"export-{name}", run)


def _remade(root: Path) -> None:
    shutil.rmtree(root / "rewrites" / "demo" / "rw")
    _rewrite_set(root, text="{s} (made again): {c}")


def _grown(root: Path, rewritten: bool) -> None:
    """A shard added to the dataset after the export (a copy of 00001 under new keys)."""
    from laclip.data.shards import iter_tar
    from laclip.storage import open_store

    src, store = root / "datasets" / "demo", open_store(str(root))
    members = [(f"{s['__key__'].replace('00001', '00002', 1)}.{ext}", data)
               for s in iter_tar(store, "datasets/demo/00001.tar") for ext, data in s.items() if ext != "__key__"]
    (src / "00002.tar").write_bytes(tar_bytes(members))
    t = pq.read_table(src / "00001.parquet")
    keys = [k.replace("00001", "00002", 1) for k in t.column("key").to_pylist()]
    pq.write_table(t.set_column(0, "key", pa.array(keys, pa.string())), src / "00002.parquet")
    if rewritten:
        _rewrite_set(root, shards={"00002"})


EXPORTS = [
    _export("rewrite-set-made-again", _remade, False, "export"),
    _export("shard-added-without-rewrites", lambda root: _grown(root, False), False, "00002"),
    _export("dataset-captions-changed", lambda root: _edit_parquet(root, "00001", _new_captions), False, "00001"),
    _export("shard-added-with-rewrites", lambda root: _grown(root, True), True),
    _export("nothing-changed", lambda root: None, True),
]


def _model_folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    (path / "model.safetensors").write_bytes(b"weights" * 1000)
    (path / "tokenizer.json").write_text(json.dumps({"version": "1.0"}))
    return path


def _rewrite_id(root: Path, model: Path, *extra: str) -> str:
    res = laclip("--root", str(root), "submit", "rewrite", "--dataset", "demo", "--engine", "hf", "--model",
                 str(model), "--num-shards", "1", "--dry-run", *extra)
    assert_ok(res)
    return next(ln.split(":", 1)[1].strip() for ln in res.out.splitlines() if "laclip.dev/rewrite-id:" in ln)


def _model_change(name: str, change, same: bool) -> Case:
    def run(tmp: Path) -> None:
        _demo(tmp / "store")
        model = _model_folder(tmp / "models" / "llama-tiny")
        before = _rewrite_id(tmp / "store", model)
        moved = change(model)
        model = moved if isinstance(moved, Path) else model
        after = _rewrite_id(tmp / "store", model)
        assert (before == after) == same, f"{before} then {after}"
    return Case(105, f"hf-model-folder-{name}", run)


def _copied(model: Path) -> Path:
    dest = model.parent.parent / "elsewhere" / model.name
    shutil.copytree(model, dest)
    shutil.rmtree(model)
    return dest


MODELS = [
    _model_change("weights-replaced", lambda m: (m / "model.safetensors").write_bytes(b"other" * 1400), False),
    _model_change("one-byte-of-weights", lambda m: (m / "model.safetensors").write_bytes(b"weights" * 999 + b"weightz"),
                  False),
    _model_change("config-changed", lambda m: (m / "config.json").write_text('{"model_type": "llama", '
                                                                             '"hidden_size": 128}'), False),
    _model_change("tokenizer-changed", lambda m: (m / "tokenizer.json").write_text('{"version": "2.0"}'), False),
    _model_change("weights-added", lambda m: (m / "model-00002.safetensors").write_bytes(b"more"), False),
    _model_change("touched-only", lambda m: (m / "model.safetensors").touch(), True),
    _model_change("moved-elsewhere", _copied, True),
    _model_change("readme-edited", lambda m: (m / "README.md").write_text("notes"), True),
]


def _batch(name: str, engine: str, a: str, b: str, same: bool) -> Case:
    def run(tmp: Path) -> None:
        _demo(tmp / "store")
        model = ["--model", str(_model_folder(tmp / "m"))] if engine == "hf" else []
        ids = []
        for size in (a, b):
            res = laclip("--root", str(tmp / "store"), "submit", "rewrite", "--dataset", "demo", "--engine", engine,
                         *model, "--num-shards", "1", "--dry-run", "--batch-size", size)
            assert_ok(res)
            ids.append(next(ln for ln in res.out.splitlines() if "laclip.dev/rewrite-id:" in ln))
        assert (ids[0] == ids[1]) == same, ids
    return Case(105, f"batch-size-{name}", run)


BATCHES = [_batch("hf-1-vs-32", "hf", "1", "32", False), _batch("hf-8-vs-16", "hf", "8", "16", False),
           _batch("eda-1-vs-64", "eda", "1", "64", True)]


def _reordered(name: str, edit, ok: bool) -> Case:
    """img2dataset writes a shard's rows in download order: the same rows in another order are the same input."""
    def run(tmp: Path) -> None:
        root = tmp / "store"
        _demo(root, shards=2)
        cmd = ["--root", str(root), "submit", "rewrite", "--dataset", "demo", "--engine", "null", "--local"]
        assert_ok(laclip(*cmd))
        _edit_parquet(root, "00001", edit)
        res = laclip(*cmd)
        if ok:
            assert_ok(res)
        else:
            assert_clean_error(res, "00001", "1 of 64 captions differ")
    return Case(105, f"rewrite-input-{name}", run, slow=True)  # --local starts the rewrite pods


def _reverse(t: pa.Table) -> pa.Table:
    return t.take(list(range(t.num_rows))[::-1])


def _reverse_and_edit(t: pa.Table) -> pa.Table:
    t = _reverse(t)
    caps = t.column("caption").to_pylist()
    caps[3] = "another image altogether"
    return t.set_column(t.column_names.index("caption"), "caption", pa.array(caps, pa.string()))


REORDERED = [_reordered("rows-reversed", _reverse, True),
             _reordered("rows-shuffled", lambda t: t.take([(7 * i) % t.num_rows for i in range(t.num_rows)]), True),
             _reordered("rows-reversed-one-caption-changed", _reverse_and_edit, False)]

CASES = ([_run_changed(*c) for c in RUN_CHANGES] + [_run_same(*c) for c in RUN_SAME] + PIPELINE + EXPORTS + MODELS
         + BATCHES + REORDERED)
