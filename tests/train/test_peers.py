"""laclip with the field's own tools: open_clip's trainer (open_clip_torch 3.3, unmodified) on
laclip's demo shards and on exported rewrite shards, laclip's evaluation of its checkpoints
(`.../checkpoints/epoch_N.pt`), and `clip_benchmark build` over laclip's and CLIP_benchmark's
own result files together."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from laclip import layout
from laclip.train.checkpoint import local_dir_config

TINY = "laclip-tiny"
EVAL = dict(workers=0, batch_size=64)


def open_clip_train(data: str, logs: Path, name: str, model: str, samples: int = 64) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "open_clip_train.main", "--train-data", data, "--train-num-samples", str(samples),
           "--dataset-type", "webdataset", "--batch-size", "16", "--model", model, "--epochs", "1",
           "--workers", "1", "--precision", "fp32", "--lr", "1e-3", "--warmup", "1", "--save-frequency", "1",
           "--logs", str(logs), "--name", name, "--report-to", "", "--seed", "0", "--log-every-n-steps", "1"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def peer_run(demo_store, tmp_path_factory):
    """open_clip_train.main, as installed, for one epoch of 64 samples on the demo shards."""
    tmp = tmp_path_factory.mktemp("open-clip-train")
    model = "local-dir:" + str(local_dir_config(TINY, tmp / "model"))  # laclip-tiny, without code of ours
    shards = demo_store.local_path(layout.dataset_folder("demo"))
    proc = open_clip_train(f"{shards}/{{00000..00003}}.tar", tmp / "logs", "peer-a", model)
    return proc, tmp / "logs" / "peer-a" / "checkpoints" / "epoch_1.pt", model, tmp


@pytest.mark.slow
def test_open_clip_train_trains_unmodified_on_the_demo_shards(peer_run):
    import open_clip
    import torch

    import laclip.train.model  # noqa: F401

    proc, ckpt, _, _ = peer_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "KeyError" not in proc.stderr and "Train Epoch: 0" in proc.stderr + proc.stdout
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert state["epoch"] == 1 and state["name"] == "peer-a"
    open_clip.create_model_and_transforms(TINY, pretrained=str(ckpt))  # the checkpoint loads back


@pytest.mark.slow
def test_exported_rewrite_shards_still_read_in_open_clip(demo_copy, peer_run, tmp_path):
    """`rewrites export --format wds-json`: the .json of every sample carries its rewrites, and open_clip
    3.3's loader (which reads .txt) reads the shards as it reads the originals."""
    import open_clip
    from open_clip_train.data import get_wds_dataset
    from types import SimpleNamespace
    from typer.testing import CliRunner

    from laclip.data.shards import iter_tar
    from laclip_cli.main import app

    from .train_helpers import SOURCES, write_rewrites

    write_rewrites(demo_copy, rejected={"bard"}, drop_keys=2)
    out = tmp_path / "wds"
    res = CliRunner().invoke(app, ["--root", demo_copy.url, "rewrites", "export", "--dataset", "demo", "--rewrites",
                                   "rw1", "--format", "wds-json", "--out", str(out)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "512 samples: 504 with rewrites, 8 without a rewrite row" in res.output
    assert '--json-text-key "caption;chatgpt;bard;coco;human" --json-text-key-probs 1 1 1 1 1' in res.output
    from laclip.storage import open_store

    exported, source = open_store(str(out)), demo_copy
    for sid in ("00000", "00003"):
        ours = list(iter_tar(exported, f"{sid}.tar"))
        theirs = list(iter_tar(source, f"datasets/demo/{sid}.tar"))
        assert [s["__key__"] for s in ours] == [s["__key__"] for s in theirs]
        for a, b in zip(ours, theirs):
            assert a["jpg"] == b["jpg"] and a["txt"] == b["txt"]
            meta, caption = json.loads(a["json"]), b["txt"].decode()
            assert meta["caption"] == caption  # img2dataset's own fields are kept
            if meta["laclip_rejected"].get("chatgpt") == "no rewrite row":
                assert all(meta[s] == "" for s in SOURCES)
            else:
                assert meta["chatgpt"] == f"chatgpt: {caption}" and meta["bard"] == ""
                assert meta["laclip_rejected"] == {"bard": "echo"}
        assert exported.read_bytes(f"{sid}.parquet") == source.read_bytes(f"datasets/demo/{sid}.parquet")

    _, _, model, _ = peer_run
    args = SimpleNamespace(train_data=f"{out}/{{00000..00003}}.tar", train_num_samples=512,
                           train_data_upsampling_factors=None, dataset_resampled=False, seed=0, batch_size=64,
                           workers=0, world_size=1, val_data=None)
    _, preprocess, _ = open_clip.create_model_and_transforms(model)
    data = get_wds_dataset(args, preprocess, is_train=True, epoch=0, tokenizer=open_clip.get_tokenizer(model))
    images = sum(len(imgs) for imgs, _ in data.dataloader)
    assert images == 512


@pytest.mark.slow
def test_open_clip_train_checkpoints_are_evaluated_under_their_own_run(demo_copy, peer_run, tmp_path, monkeypatch):
    """`.../<name>/checkpoints/epoch_1.pt` is run <name>; two runs with the same epoch file keep apart,
    --run names a run; `pretrained` is the file itself."""
    from laclip.errors import UsageError
    from laclip.eval.config import EvalConfig
    from laclip_cli.stages.eval import run_here

    proc, ckpt, _, _ = peer_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    other = tmp_path / "logs" / "peer-b" / "checkpoints" / "epoch_1.pt"
    other.parent.mkdir(parents=True)
    shutil.copy(ckpt, other)
    root = str(demo_copy.local_path(""))
    got = {}
    for path in (ckpt, other):
        cfg = EvalConfig(checkpoint=str(path), root=root, model=TINY, tasks=["zeroshot"], **EVAL)
        assert cfg.run == path.parents[1].name and cfg.checkpoint_name == "epoch_1"
        [record] = run_here(cfg, quiet=True)
        assert record["pretrained"] == str(path)  # with .pt: passable back to open_clip
        got[cfg.run] = record
    assert sorted(got) == ["peer-a", "peer-b"]
    assert [c for c, *_ in layout.eval_results(demo_copy, "peer-a")] == ["epoch_1"]
    named = EvalConfig(checkpoint=str(other), root=root, model=TINY, tasks=["zeroshot"], run="mine", **EVAL)
    assert run_here(named, quiet=True)[0]["laclip"]["run"] == "mine"
    clash = EvalConfig(checkpoint=str(ckpt), root=root, model=TINY, tasks=["zeroshot"], run="mine", **EVAL)
    with pytest.raises(UsageError, match="give this checkpoint its own --run"):
        run_here(clash, quiet=True)


CLIP_BENCHMARK = """
import sys
import laclip.train.model  # registers laclip-tiny with open_clip, nothing else
from clip_benchmark.metrics import zeroshot_classification as zc
def accuracy(output, target, topk=(1,)):  # its own formula; its float(ndarray) fails under numpy 2.4
    pred = output.topk(max(topk), 1, True, True)[1].t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    return [correct[:k].reshape(-1).float().sum().item() / len(target) for k in topk]
zc.accuracy = accuracy
import torch
if not torch.cuda.is_available():  # its linear probe hardwires CUDA (assert, .cuda()): the same code on the CPU
    import inspect
    from clip_benchmark.metrics import linear_probe as lp
    src = inspect.getsource(lp).replace("assert device == 'cuda'", "pass").replace(".cuda()", ".to(device)")
    exec(compile(src, lp.__file__, "exec"), lp.__dict__)
from clip_benchmark.cli import main
sys.argv = ["clip_benchmark", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
def test_clip_benchmark_build_puts_laclip_and_clip_benchmark_results_in_one_table(demo_copy, peer_run, tmp_path):
    from laclip.eval.config import EvalConfig
    from laclip_cli.stages.eval import run_here

    proc, ckpt, _, _ = peer_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = tmp_path / "results"
    results.mkdir()
    root = str(demo_copy.local_path(""))
    for task in ("zeroshot_classification", "linear_probe"):
        peer = subprocess.run(
            [sys.executable, "-c", CLIP_BENCHMARK, "eval", "--dataset", "wds/demo-eval", "--dataset_root",
             str(demo_copy.local_path("datasets/demo-eval")), "--task", task, "--model", TINY, "--pretrained",
             str(ckpt), "--batch_size", "64", "--num_workers", "0", "--no_amp",
             "--feature_root", str(tmp_path / "features"),
             "--output", str(results / "{dataset}_{task}_clip_benchmark.json")],
            capture_output=True, text=True, timeout=300)
        assert peer.returncode == 0, peer.stderr[-3000:]
    cfg = EvalConfig(checkpoint=str(ckpt), root=root, model=TINY, tasks=["zeroshot", "linear_probe"], **EVAL)
    for record in run_here(cfg, quiet=True):
        (results / f"laclip_{record['task']}.json").write_text(json.dumps(record))
    table = tmp_path / "benchmark.csv"
    build = subprocess.run([sys.executable, "-c", "from clip_benchmark.cli import main; main()", "build",
                            str(results), "--output", str(table)], capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 4
    by = {(r["task"], bool(r.get("laclip"))): r for r in rows}
    assert {r["dataset"] for r in rows} == {"wds/demo-eval"}
    assert {r["pretrained"] for r in rows} == {str(ckpt)} and {r["model"] for r in rows} == {TINY}
    ours, theirs = by["zeroshot_classification", True], by["zeroshot_classification", False]
    for metric in ("acc1", "acc5", "mean_per_class_recall"):  # fp32, the same model and images
        assert float(ours[metric]) == pytest.approx(float(theirs[metric]), abs=1e-3), metric
    ours, theirs = by["linear_probe", True], by["linear_probe", False]
    for metric in ("lp_acc1", "lp_acc5", "lp_mean_per_class_recall"):  # the same columns, each tool's own probe
        assert 0 <= float(ours[metric]) <= 1 and 0 <= float(theirs[metric]) <= 1, metric
    assert not ours["acc1"] and not theirs["acc1"]  # no zero-shot column filled by a probe row
