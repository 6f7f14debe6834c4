"""End to end on the demo evaluation set: the CLI's --local run, results, report, cache, bad input.

Results are `evals/<run>/<checkpoint>/<dataset>/<task>-<id>.json`, <id> naming everything that decides
the numbers (laclip.eval.results.identity): a request with the same settings gets the existing record
back, any other setting makes a new file."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from laclip import layout
from laclip.errors import DataError, NotFound, UsageError
from laclip.eval.config import EvalConfig
from laclip.eval.worker import run_eval
from laclip_cli.main import app
from laclip_cli.stages.eval import results as results_of_request
from laclip_cli.stages.eval import run_here
from tests.hostile.harness import run_entry

from .conftest import TINY, TINY_WIDE, save_checkpoint

FAST = dict(workers=0, batch_size=64)


def eval_entry(argv: list[str]) -> tuple[int, str]:
    """`python -m laclip.eval.main ARGV` in this process: (exit code, stderr). That the module run as a
    process exits with this code is tests/test_contract.py's (every entrypoint, one way)."""
    from laclip.entrypoint import main
    from laclip.eval.main import run

    return run_entry(lambda args: main("eval", EvalConfig, run, argv=args), argv)


def rewrite_shard(store, path: str, drop) -> None:
    """The shard again, less the members whose name `drop` picks."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(store.read_bytes(path))) as src, tarfile.open(fileobj=buf, mode="w") as out:
        for member in src.getmembers():
            if not drop(member.name):
                out.addfile(member, src.extractfile(member))
    store.write_bytes(path, buf.getvalue())


def root_of(store) -> str:
    return str(store.local_path(""))


def results(store, run: str, checkpoint: str = "step_1") -> dict[tuple[str, str], list[str]]:
    """(dataset, task) -> the paths of its result files (one per set of settings)."""
    found: dict[tuple[str, str], list[str]] = {}
    for ckpt, dataset, task, rid, path in layout.eval_results(store, run):
        if ckpt == checkpoint:
            found.setdefault((dataset, task), []).append(path)
    return found


def blank_keeping_version(store, path: str) -> None:
    """Zero a file in place with its size and mtime kept: its version (which the result ids and the
    features cache record) is unchanged, so only reading its bytes could tell."""
    local = store.local_path(path)
    st = local.stat()
    local.write_bytes(b"\0" * st.st_size)
    os.utime(local, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert store.versions(path) == {path: f"{st.st_size}-{st.st_mtime_ns}"}


@pytest.mark.slow  # `submit eval --local` runs the entrypoint as a child process; clip_benchmark's build
def test_local_run_results_and_report(ckpt_store, tiny_models, tmp_path, monkeypatch):
    root = root_of(ckpt_store)
    save_checkpoint(ckpt_store, "laclip-run", 1, TINY, seed=1)
    env = {"LACLIP_MODEL_CONFIGS": str(tiny_models), "LACLIP_ROOT": root}
    runner = CliRunner()
    res = runner.invoke(app, ["submit", "eval", "--checkpoint", "clip-run/step_1", "--local", "--episodes", "40",
                              "--workers", "1"], env=env)  # the pod's entrypoint, as a child process
    assert res.exit_code == 0, res.output
    assert "zeroshot_classification" in res.output and "4 results" in res.output
    other = EvalConfig.for_checkpoint(f"{root}/checkpoints/laclip-run/step_1.pt", tasks="zeroshot,fewshot", **FAST)
    monkeypatch.setenv("LACLIP_MODEL_CONFIGS", str(tiny_models))  # the entrypoint runs as a child process
    records = run_here(other, quiet=True)  # what the one-command pipeline calls
    assert sorted(r["task"] for r in records) == ["fewshot_knn", "zeroshot_classification"]
    assert all(r["laclip"]["run"] == "laclip-run" for r in records)
    files = ckpt_store.list("evals/clip-run/step_1/")
    found = results(ckpt_store, "clip-run")
    assert sorted(found) == [("demo-eval", t) for t in ("fewshot_knn", "linear_probe", "zeroshot_classification",
                                                        "zeroshot_retrieval")]
    for (_, task), [path] in found.items():
        record = json.loads(ckpt_store.read_text(path))
        # CLIP_benchmark's shape, so its `build` command and other tools read it.
        assert {"dataset", "model", "pretrained", "task", "metrics", "language"} <= set(record)
        # CLIP_benchmark's names: `wds/<name>`, and the file itself (`.pt`), passable back to open_clip
        assert record["task"] == task and record["model"] == TINY and record["dataset"] == "wds/demo-eval"
        assert record["pretrained"] == f"{root}/checkpoints/clip-run/step_1.pt"
        # <task>-<id>.json: the id is the digest of what decided the numbers, recorded beside them
        rid = record["laclip"]["result_id"]
        assert path == f"evals/clip-run/step_1/demo-eval/{task}-{rid}.json" and len(rid) == 12
        from laclip.eval.results import result_id

        assert result_id(record["laclip"]["identity"]) == rid
    [zs_path] = found["demo-eval", "zeroshot_classification"]
    zs = json.loads(ckpt_store.read_text(zs_path))
    assert set(zs["metrics"]) == {"acc1", "acc5", "mean_per_class_recall"} and 0 <= zs["metrics"]["acc1"] <= 1
    assert zs["laclip"]["images"] == 80 and zs["laclip"]["templates"] == 10
    assert {"evals/clip-run/step_1/features/demo-eval/test.npz",
            "evals/clip-run/step_1/features/demo-eval/train.npz"} <= set(files)

    # CLIP_benchmark's own `build` command turns our result folder into its CSV.
    csv_out = tmp_path / "benchmark.csv"
    folder = ckpt_store.local_path("evals/clip-run/step_1/demo-eval")
    proc = subprocess.run([sys.executable, "-c", "from clip_benchmark.cli import main; main()", "build",
                           str(folder), "--output", str(csv_out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    import csv

    table = list(csv.DictReader(csv_out.open()))
    assert sorted(r["task"] for r in table) == ["fewshot_knn", "linear_probe", "zeroshot_classification",
                                                "zeroshot_retrieval"]
    zs_row = next(r for r in table if r["task"] == "zeroshot_classification")
    assert float(zs_row["acc1"]) == pytest.approx(zs["metrics"]["acc1"])

    png = tmp_path / "chart.png"
    res = runner.invoke(app, ["eval", "report", "clip-run", "laclip-run", "--png", str(png)], env=env)
    assert res.exit_code == 0, res.output
    assert "clip-run" in res.output and "laclip-run" in res.output and "zero-shot" in res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    md = runner.invoke(app, ["eval", "report", "clip-run", "--markdown", "--no-png"], env=env)
    header = md.output.splitlines()[0]
    assert header.startswith("| run | checkpoint | demo-eval zero-shot |")
    missing = runner.invoke(app, ["eval", "report", "never-ran"], env=env)
    assert missing.exit_code != 0 and "no evaluation results" in str(missing.exception)


def test_features_are_cached_and_finished_tasks_skipped(ckpt_store, caplog):
    cfg = EvalConfig.for_checkpoint("clip-run/step_1", root=root_of(ckpt_store), tasks="zeroshot", **FAST)
    first = run_eval(cfg)
    assert [r["task"] for r in first] == ["zeroshot_classification"]
    listed = ckpt_store.list("evals/")
    assert run_eval(cfg) == first  # done when its result exists: that record, not made again
    assert ckpt_store.list("evals/") == listed
    # The test shard blanked in place (the same dataset version): only the cache can supply its features.
    blank_keeping_version(ckpt_store, "datasets/demo-eval/test/0.tar")
    clip80 = cfg.model_copy(update={"templates": "clip80"})
    assert results_of_request(clip80) == [] and results_of_request(cfg) == first  # what `--wait` prints
    with caplog.at_level("INFO", logger="laclip.eval"):
        (again,) = run_eval(clip80)
    assert again["laclip"]["templates"] == 80 and again["laclip"]["images"] == 80
    assert again["laclip"]["result_id"] != first[0]["laclip"]["result_id"]  # other templates: a new result
    assert "features from cache" in caplog.text
    assert results_of_request(clip80) == [again] and results_of_request(cfg) == first  # each its own
    with pytest.raises(DataError, match="test/0.tar is empty"):  # without the cache, the shard is read
        run_eval(cfg.model_copy(update={"templates": "clip80", "cache_features": False, "run": "other"}))
    # A dataset whose files changed is another dataset: the features cached for the old one are not used.
    ckpt_store.delete("datasets/demo-eval/test/0.tar")
    with pytest.raises(DataError, match="test/0.tar is missing"):
        run_eval(cfg)
    assert "computing them again" in caplog.text


def test_features_cached_at_another_precision_are_computed_again(ckpt_store, caplog):
    """amp features are not fp32 features: a task must not mix a cached amp split with fp32 ones."""
    cfg = EvalConfig.for_checkpoint("clip-run/step_1", root=root_of(ckpt_store), tasks="zeroshot",
                                    precision="amp", **FAST)
    run_eval(cfg)
    blank_keeping_version(ckpt_store, "datasets/demo-eval/test/0.tar")  # only the (amp) cache can supply them now
    assert run_eval(cfg.model_copy(update={"templates": "clip80"}))[0]["laclip"]["templates"] == 80  # amp: cached
    with pytest.raises(DataError, match="test/0.tar is empty"):
        run_eval(cfg.model_copy(update={"precision": "fp32"}))
    assert "computing them again" in caplog.text


def test_checkpoint_of_another_architecture(ckpt_store):
    save_checkpoint(ckpt_store, "wide", 2, TINY_WIDE)
    cfg = EvalConfig.for_checkpoint("wide/step_2", root=root_of(ckpt_store), model=TINY, **FAST)
    with pytest.raises(DataError, match=rf"does not fit model '{TINY}': its weights are saved as '{TINY_WIDE}'"):
        run_eval(cfg)
    # Without --model the checkpoint's own config.model is used, and it loads.
    ok = run_eval(cfg.model_copy(update={"model": None, "tasks": ["zeroshot"]}))
    assert ok[0]["model"] == TINY_WIDE


def test_classnames_file_of_wrong_length(ckpt_store):
    ckpt_store.write_text("datasets/demo-eval/classnames.txt", "\n".join(["circle", "square", "triangle"]) + "\n")
    cfg = EvalConfig.for_checkpoint("clip-run/step_1", root=root_of(ckpt_store), tasks="zeroshot", **FAST)
    with pytest.raises(DataError, match="class-name list has only 3 names.*wrong length"):
        run_eval(cfg)


def test_missing_checkpoint_and_unknown_dataset(ckpt_store):
    root = root_of(ckpt_store)
    with pytest.raises(NotFound, match="checkpoints/clip-run/step_9.pt does not exist"):
        run_eval(EvalConfig.for_checkpoint("clip-run/step_9", root=root, **FAST))
    with pytest.raises(DataError, match="unknown evaluation dataset 'cifar10'"):
        run_eval(EvalConfig.for_checkpoint("clip-run/step_1", root=root, datasets="cifar10", **FAST))


def test_worker_exit_code_for_bad_input(ckpt_store, tiny_models, monkeypatch):
    cfg = EvalConfig.for_checkpoint("clip-run/step_1", root=root_of(ckpt_store), datasets="demo-eval,cifar10",
                                    **FAST)
    for name, value in (("LACLIP_MODEL_CONFIGS", str(tiny_models)), ("JOB_COMPLETION_INDEX", "1"),
                        ("LACLIP_LOG_FORMAT", "json")):
        monkeypatch.setenv(name, value)
    code, err = eval_entry(["--config", cfg.model_dump_json()])
    assert code == 3, err  # the Job's podFailurePolicy fails this index without retries
    assert "unknown evaluation dataset 'cifar10'" in err and "Traceback" not in err
    (line,) = err.strip().splitlines()[-1:]
    assert json.loads(line)["severity"] == "ERROR" and json.loads(line)["permanent"] is True  # a JSON line in pods
    assert results(ckpt_store, "clip-run") == {}  # index 1 only: demo-eval is index 0's


def test_entrypoint_reads_a_config_file_and_sets(ckpt_store, tiny_models, tmp_path, monkeypatch):
    """What --local runs: `python -m laclip.eval.main --config-file F [--set FIELD=VALUE ...]`."""
    import yaml

    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump({"checkpoint": "clip-run/step_1", "root": root_of(ckpt_store),
                                      "tasks": ["fewshot"], "workers": 0, "batch_size": 64}))
    monkeypatch.setenv("LACLIP_MODEL_CONFIGS", str(tiny_models))
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    cmd = ["--config-file", str(config)]
    code, err = eval_entry(cmd + ["--set", "fewshot.episodes=7", "--set", "seed=4"])
    assert code == 0, err
    [path] = results(ckpt_store, "clip-run")["demo-eval", "fewshot_knn"]
    record = json.loads(ckpt_store.read_text(path))
    assert record["laclip"]["identity"]["fewshot"]["episodes"] == 7 and record["laclip"]["seed"] == 4
    code, err = eval_entry(cmd + ["--set", "fewshot.episodes=0"])
    assert code == 3 and "Traceback" not in err
    assert "invalid --set fewshot.episodes 0: Input should be greater than or equal to 1" in err
    code, err = eval_entry(cmd + ["--set", "fewshot.nope=1"])
    assert code == 3 and "--set fewshot.nope: no field 'nope' in fewshot" in err


def test_cli_local_unknown_dataset_is_a_clean_error(ckpt_store):
    res = CliRunner().invoke(app, ["--root", root_of(ckpt_store), "submit", "eval", "--checkpoint", "clip-run/step_1",
                                   "--local", "--datasets", "demo-eval,flowers102"])
    assert res.exit_code != 0 and isinstance(res.exception, DataError)
    assert "unknown evaluation dataset 'flowers102'" in str(res.exception)


def test_two_checkpoints_cannot_share_a_results_folder(ckpt_store, tmp_path):
    root = root_of(ckpt_store)
    first = run_eval(EvalConfig.for_checkpoint("clip-run/step_1", root=root, tasks="zeroshot", **FAST))
    elsewhere = tmp_path / "copy" / "clip-run"
    elsewhere.mkdir(parents=True)
    (elsewhere / "step_1.pt").write_bytes(ckpt_store.read_bytes("checkpoints/clip-run/step_1.pt"))
    impostor = EvalConfig.for_checkpoint(str(elsewhere / "step_1.pt"), root=root, tasks="fewshot", **FAST)
    assert impostor.out_dir == "evals/clip-run/step_1"
    with pytest.raises(UsageError, match="holds the evaluation of .*checkpoints/clip-run/step_1"):
        run_eval(impostor)
    # The same checkpoint named with or without `.pt` is the same checkpoint: its result stands.
    assert run_eval(EvalConfig.for_checkpoint(f"{root}/checkpoints/clip-run/step_1.pt", root=root,
                                              tasks="zeroshot", **FAST)) == first


def test_report_of_a_training_curve(tmp_path):
    """Many step_N checkpoints: the table orders them by step and the chart draws curves."""
    from laclip.eval.results import chart, load_rows, table, write_result
    from laclip.storage import open_store

    store = open_store(str(tmp_path / "store"))
    for step in (100, 1000, 200):
        for task, metrics in (("zeroshot_classification", {"acc1": step / 2000}),
                              ("fewshot_knn", {"acc1": 0.5, "acc1_ci95": 0.01})):
            write_result(store, layout.eval_result("run-a", f"step_{step}", "demo-eval", task, "a1b2c3d4e5f6"),
                         {"dataset": "demo-eval", "task": task, "metrics": metrics,
                          "laclip": {"created": "2026-01-01T00:00:00.000+00:00"}})
    # Another setting made a second result of one (checkpoint, dataset, task) later: the table shows the
    # newest, and the older file stays.
    write_result(store, layout.eval_result("run-a", "step_1000", "demo-eval", "fewshot_knn", "0f0f0f0f0f0f"),
                 {"dataset": "demo-eval", "task": "fewshot_knn", "metrics": {"acc1": 0.75},
                  "laclip": {"created": "2026-01-02T00:00:00.000+00:00"}})
    rows = load_rows(store, "run-a")
    header, body = table(rows)
    assert header == ["run", "checkpoint", "demo-eval zero-shot", "demo-eval few-shot"]
    assert [line[1] for line in body] == ["step_100", "step_200", "step_1000"]  # by step, not by text
    assert body[0][2:] == ["5.0", "50.0 ±1.0"] and body[2][2:] == ["50.0", "75.0"]
    every = load_rows(store, "run-a", newest=False)
    assert len(every) == 7 and {r.result_id for r in every if r.checkpoint == "step_1000" and
                                r.task == "fewshot_knn"} == {"a1b2c3d4e5f6", "0f0f0f0f0f0f"}
    chart(rows, str(tmp_path / "curve.png"))
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_report_without_matplotlib_is_a_clear_error(tmp_path, monkeypatch):
    from laclip.errors import LaclipError
    from laclip.eval.results import write_result
    from laclip.storage import open_store

    store = open_store(str(tmp_path / "store"))
    write_result(store, layout.eval_result("run-a", "step_1", "demo-eval", "zeroshot_classification", "a1b2c3d4e5f6"),
                 {"dataset": "demo-eval", "task": "zeroshot_classification", "metrics": {"acc1": 0.5}})
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as in the base install: `import matplotlib` fails
    runner = CliRunner()
    env = {"LACLIP_ROOT": str(tmp_path / "store")}
    res = runner.invoke(app, ["eval", "report", "run-a", "--png", str(tmp_path / "c.png")], env=env)
    assert isinstance(res.exception, LaclipError) and "pass --no-png" in str(res.exception)
    assert runner.invoke(app, ["eval", "report", "run-a", "--no-png"], env=env).exit_code == 0


def test_unlabelled_samples_are_a_data_error_for_every_classification_task(ckpt_store):
    # Six samples per split without .cls: enough that few-shot would have taken -1 as a class.
    for split in ("train", "test"):
        rewrite_shard(ckpt_store, f"datasets/demo-eval/{split}/0.tar",
                      lambda name: name.endswith(".cls") and int(name[1:7]) < 6)
    cfg = EvalConfig.for_checkpoint("clip-run/step_1", root=root_of(ckpt_store), **FAST)
    for task in ("fewshot", "linear_probe", "zeroshot"):
        with pytest.raises(DataError, match=rf"demo-eval/test: 6 of 80 samples have no .cls label; {task} needs"):
            run_eval(cfg.model_copy(update={"tasks": [task]}))
    # Retrieval needs captions, not labels.
    assert run_eval(cfg.model_copy(update={"tasks": ["retrieval"]}))[0]["task"] == "zeroshot_retrieval"


def test_unlabelled_support_split(ckpt_store):
    rewrite_shard(ckpt_store, "datasets/demo-eval/train/0.tar", lambda name: name.endswith(".cls") and
                  int(name[1:7]) < 6)
    cfg = EvalConfig.for_checkpoint("clip-run/step_1", root=root_of(ckpt_store), tasks="linear_probe", **FAST)
    with pytest.raises(DataError, match=r"demo-eval/train: 6 of 80 samples have no .cls label; linear_probe"):
        run_eval(cfg)


def test_tasks_a_dataset_cannot_do_are_not_left_pending(ckpt_store, caplog):
    rewrite_shard(ckpt_store, "datasets/demo-eval/test/0.tar", lambda name: name.endswith(".txt"))
    cfg = EvalConfig.for_checkpoint("clip-run/step_1", root=root_of(ckpt_store), tasks="zeroshot,retrieval",
                                    **FAST)
    first = run_eval(cfg)
    assert [r["task"] for r in first] == ["zeroshot_classification"]
    assert "demo-eval: skipping retrieval: its test split has no .txt captions" in caplog.text
    # A re-run has nothing to do: it does not even load the checkpoint (blanked: loading it would fail).
    blank_keeping_version(ckpt_store, "checkpoints/clip-run/step_1.pt")
    caplog.clear()
    with caplog.at_level("INFO", logger="laclip.eval"):
        assert run_eval(cfg) == first
    assert "demo-eval zeroshot: a result for these settings exists" in caplog.text
    with pytest.raises(DataError, match="cannot be read by torch.load"):  # the check can fail: a new setting loads it
        run_eval(cfg.model_copy(update={"templates": "clip80"}))


def test_a_dataset_of_the_same_name_elsewhere(ckpt_store, tmp_path, caplog):
    """Results and features are kept by dataset folder name: another folder of that name must not
    read the first one's cached features, nor be given its results; it gets results of its own."""
    import shutil

    root = root_of(ckpt_store)
    cfg = EvalConfig.for_checkpoint("clip-run/step_1", root=root, tasks="zeroshot", **FAST)
    (mine,) = run_eval(cfg)
    other = tmp_path / "elsewhere" / "demo-eval"
    shutil.copytree(ckpt_store.local_path("datasets/demo-eval"), other)
    (other / "test" / "0.tar").write_bytes((other / "train" / "0.tar").read_bytes())  # other images
    moved = cfg.model_copy(update={"datasets": [str(other)], "tasks": ["retrieval"]})
    (record,) = run_eval(moved)
    assert record["laclip"]["images"] == 80 and record["laclip"]["dataset_url"] == str(other)
    assert "computing them again" in caplog.text  # the cache held the other folder's features
    import io

    import numpy as np

    with np.load(io.BytesIO(ckpt_store.read_bytes("evals/clip-run/step_1/features/demo-eval/test.npz"))) as z:
        assert json.loads(str(z["meta"]))["dataset"] == str(other)  # the cache now holds this folder's features
    # Zero-shot of the other folder: a result of its own beside the first folder's, never the first's.
    (theirs,) = run_eval(moved.model_copy(update={"tasks": ["zeroshot"]}))
    assert theirs["laclip"]["dataset_url"] == str(other) and theirs["laclip"]["images"] == 80
    assert theirs["laclip"]["result_id"] != mine["laclip"]["result_id"]
    assert theirs["laclip"]["identity"]["dataset"]["url"] == str(other)
    assert len(results(ckpt_store, "clip-run")["demo-eval", "zeroshot_classification"]) == 2
    assert run_eval(cfg) == [mine]  # the first folder's result stands as it was


@pytest.mark.parametrize("args, message", [
    ([], "error: one of the arguments --config --config-file is required"),
    (["--config", "{not json"], "[eval] error: --config is not JSON"),
    (["--config", "[1]"], "[eval] error: --config must be a JSON object"),
    (["--config", '{"run": 1}'], "[eval] error: invalid --set checkpoint: Field required (and 1 more problem)"),
    (["--config", '{"checkpoint": "/x/checkpoints/r/step_1", "tasks": "zeroshot,bogus"}'],
     "[eval] error: invalid --set tasks 'bogus': Input should be 'zeroshot', 'fewshot', 'linear_probe' or 'retrieval'"),
    (["--config-file", "/nonexistent/eval.json"], "[eval] error: cannot read config file /nonexistent/eval.json"),
    (["--config", '{"checkpoint": "/x/checkpoints/r/step_1"}', "--set", "nope=1"],
     "[eval] error: --set nope: no field 'nope' in the config"),
])
def test_entrypoint_without_a_valid_config(args, message, monkeypatch):
    for name in ("LACLIP_LOG_FORMAT", "JOB_COMPLETION_INDEX"):
        monkeypatch.delenv(name, raising=False)
    code, err = eval_entry(args)
    assert code == 3, err  # bad input is permanent: the Job does not retry it
    assert message in err and "Traceback" not in err
