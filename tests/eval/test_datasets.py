"""CLIP_benchmark webdataset layout read from a store, and the bad inputs a user meets."""

from __future__ import annotations

import io
import tarfile

import pytest

from laclip.data.synth import EVAL_TEMPLATES, SHAPES
from laclip.errors import DataError, UsageError
from laclip.eval.datasets import builtin_lines, open_eval_dataset


def test_reads_demo_eval_split(demo_store):
    ds = open_eval_dataset(demo_store, "demo-eval")
    assert ds.has_split("test") and ds.has_split("train") and not ds.has_split("val")
    assert ds.classnames() == SHAPES and ds.templates() == EVAL_TEMPLATES
    samples = list(ds.iter_samples("test"))
    assert len(samples) == 80 and [s.index for s in samples] == list(range(80))
    assert sorted({s.label for s in samples}) == list(range(8))
    assert all(s.image[:2] == b"\xff\xd8" and s.captions for s in samples)
    # Workers split the samples between them: each exactly once.
    parts = [[s.index for s in ds.iter_samples("test", w, 3)] for w in range(3)]
    assert sorted(i for p in parts for i in p) == list(range(80)) and all(p for p in parts)


def test_dataset_by_folder_path(demo_store):
    ds = open_eval_dataset(demo_store, str(demo_store.local_path("datasets/demo-eval")))
    assert ds.name == "demo-eval" and ds.nshards("test") == 1 and ds.classnames() == SHAPES


def test_unknown_dataset_names_what_exists(demo_store):
    with pytest.raises(DataError, match=r"unknown evaluation dataset 'imagenet1k'.*demo-eval"):
        open_eval_dataset(demo_store, "imagenet1k")
    with pytest.raises(UsageError, match="Not_A_Name"):
        open_eval_dataset(demo_store, "Not_A_Name")
    with pytest.raises(DataError, match="does not exist|empty"):
        open_eval_dataset(demo_store, "/nonexistent/folder/x")


def test_missing_nshards(demo_copy):
    demo_copy.delete("datasets/demo-eval/test/nshards.txt")
    ds = open_eval_dataset(demo_copy, "demo-eval")  # train still has one: the dataset is known
    with pytest.raises(DataError, match=r"demo-eval/test/nshards\.txt is missing.*splits with one: train"):
        ds.nshards("test")


def test_nshards_promising_more_shards_than_exist(demo_copy):
    demo_copy.write_text("datasets/demo-eval/test/nshards.txt", "3\n")
    with pytest.raises(DataError, match=r"promises 3 shards but .*test/1\.tar is missing"):
        list(open_eval_dataset(demo_copy, "demo-eval").iter_samples("test"))


def test_empty_shard(demo_copy):
    buf = io.BytesIO()
    tarfile.open(fileobj=buf, mode="w").close()
    demo_copy.write_bytes("datasets/demo-eval/test/0.tar", buf.getvalue())
    with pytest.raises(DataError, match=r"shard .*demo-eval/test/0\.tar is empty"):
        list(open_eval_dataset(demo_copy, "demo-eval").iter_samples("test"))


def test_sample_without_image(demo_copy):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("k1.cls")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"3"))
    demo_copy.write_bytes("datasets/demo-eval/test/0.tar", buf.getvalue())
    with pytest.raises(DataError, match="sample 'k1' .* has no image"):
        list(open_eval_dataset(demo_copy, "demo-eval").iter_samples("test"))


def test_shipped_imagenet_names_and_clip_templates(demo_copy):
    names = builtin_lines("imagenet1k_classnames.txt")
    templates = builtin_lines("clip_imagenet_templates.txt")
    assert len(names) == 1000 and names[0] == "tench" and names[-1] == "toilet paper"
    assert len(templates) == 80 and all("{c}" in t for t in templates)
    # Without its own template file a dataset gets CLIP's 80; "dataset" insists on the file.
    demo_copy.delete("datasets/demo-eval/zeroshot_classification_templates.txt")
    ds = open_eval_dataset(demo_copy, "demo-eval")
    assert ds.templates() == templates
    with pytest.raises(DataError, match="zeroshot_classification_templates.txt is missing"):
        ds.templates("dataset")


def test_imagenet_classnames_file_of_wrong_length(demo_copy):
    for path in demo_copy.list("datasets/demo-eval/"):
        demo_copy.write_bytes(path.replace("demo-eval", "imagenet1k"), demo_copy.read_bytes(path))
    ds = open_eval_dataset(demo_copy, "imagenet1k")
    with pytest.raises(DataError, match=r"classnames\.txt has 8 names; ImageNet-1k has 1000"):
        ds.classnames()
    demo_copy.delete("datasets/imagenet1k/classnames.txt")
    assert len(open_eval_dataset(demo_copy, "imagenet1k").classnames()) == 1000  # the shipped list


def test_template_file_without_placeholder(demo_copy, tmp_path):
    bad = tmp_path / "templates.txt"
    bad.write_text("a photo of a {}.\n")
    with pytest.raises(DataError, match=r"must contain \{c\}.*'a photo of a \{\}\.'"):
        open_eval_dataset(demo_copy, "demo-eval").templates(str(bad))


def test_workers_read_only_their_own_shards(demo_copy):
    """With several shards, loader workers split by shard; the union is the split in order."""
    from laclip.eval.datasets import reshard

    before = [(s.key, s.label) for s in open_eval_dataset(demo_copy, "demo-eval").iter_samples("test")]
    reshard(demo_copy, "datasets/demo-eval/test", 3)
    ds = open_eval_dataset(demo_copy, "demo-eval")
    whole = list(ds.iter_samples("test"))
    assert sorted((s.key, s.label) for s in whole) == sorted(before)
    assert [s.index for s in whole] == sorted(s.index for s in whole)
    parts = [list(ds.iter_samples("test", w, 2)) for w in range(2)]
    assert {s.index >> 32 for s in parts[0]} == {0, 2} and {s.index >> 32 for s in parts[1]} == {1}
    merged = sorted((s for p in parts for s in p), key=lambda s: s.index)
    assert [s.key for s in merged] == [s.key for s in whole]
