"""Benchmark suites: laclip-paper and datacomp as data files, expanded by `--datasets` into one Indexed
Job whose dataset names are CLIP_benchmark's webdataset names, each dataset with its protocol's tasks;
suites compose with plain names; `laclip plan` counts their images."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from laclip.errors import UsageError
from laclip.eval import suites
from laclip.eval.config import EvalConfig
from laclip.plan import estimate
from laclip_cli.main import app

CKPT = "gs://b/checkpoints/r/step_1"
# CLIP_benchmark's webdataset names (its benchmark/webdatasets.txt, plus food101, which the list lacks
# but the hub has: clip-benchmark/wds_food101, train 75.8k and test 25.3k images); their hub copies are
# clip-benchmark/wds_<name with '/' made '-'>.
CLIP_BENCHMARK_WDS = {"food101",
    "mscoco_captions", "flickr8k", "flickr30k", "imagenet1k", "imagenetv2", "imagenet_sketch", "imagenet-a",
    "imagenet-r", "imagenet-o", "objectnet", "fer2013", "voc2007", "sun397", "cars", "fgvc_aircraft", "mnist",
    "stl10", "gtsrb", "country211", "renderedsst2", "vtab/caltech101", "vtab/cifar10", "vtab/cifar100",
    "vtab/clevr_count_all", "vtab/clevr_closest_object_distance", "vtab/diabetic_retinopathy", "vtab/dmlab",
    "vtab/dsprites_label_orientation", "vtab/dsprites_label_x_position", "vtab/dsprites_label_y_position",
    "vtab/dtd", "vtab/eurosat", "vtab/kitti_closest_vehicle_distance", "vtab/flowers", "vtab/pets", "vtab/pcam",
    "vtab/resisc45", "vtab/smallnorb_label_azimuth", "vtab/smallnorb_label_elevation", "vtab/svhn"}
PAPER_TITLES = ["Food-101", "CIFAR-10", "CIFAR-100", "CUB", "SUN397", "Cars", "Aircraft", "DTD", "Pets",
                "Caltech-101", "Flowers", "STL-10", "EuroSAT", "RESISC45", "GTSRB"]


def dry_run(*args: str) -> dict:
    res = CliRunner().invoke(app, ["--root", "gs://b", "submit", "eval", "--checkpoint", CKPT, *args, "--dry-run"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    (job,) = [d for d in yaml.safe_load_all(res.stdout[res.stdout.index("apiVersion"):]) if d]
    kubernetes_validate.validate(job, "1.33", strict=True)
    return job


def pod_config(job: dict) -> dict:
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    return json.loads(args[args.index("--config") + 1])


def test_the_paper_suite_renders_one_job_of_16_indexes_named_as_clip_benchmark_names_them():
    job = dry_run("--datasets", "laclip-paper")
    spec = job["spec"]
    assert (spec["completions"], spec["completionMode"]) == (16, "Indexed")
    assert spec["backoffLimitPerIndex"] >= 1 and spec["backoffLimit"] >= 16 * spec["backoffLimitPerIndex"]
    assert {"action": "FailIndex", "onExitCodes": {"containerName": "eval", "operator": "In", "values": [3]}} in \
        spec["podFailurePolicy"]["rules"]
    cfg = pod_config(job)
    suite = suites.load("laclip-paper")
    assert cfg["datasets"] == [d.name for d in suite.datasets]  # pod i evaluates datasets[i]
    for entry in suite.datasets:
        if entry.wds is None:
            assert entry.name == "cub" and entry.hub is None  # CLIP_benchmark has no CUB
            continue
        wds = entry.wds.removeprefix("wds/")
        assert wds in CLIP_BENCHMARK_WDS
        assert entry.hub == "clip-benchmark/wds_" + wds.replace("/", "-")
        assert entry.name == wds.replace("/", "-").replace("_", "-")
    assert job["metadata"]["labels"]["laclip.dev/dataset"] == "laclip-paper"
    assert job["metadata"]["annotations"]["laclip.dev/suites"] == "laclip-paper"
    # the paper's protocol: few-shot on the 15 downstream sets, not on ImageNet
    assert cfg["dataset_tasks"]["imagenet1k"] == ["zeroshot", "linear_probe"]
    assert all(cfg["dataset_tasks"][d] == ["zeroshot", "fewshot", "linear_probe"] for d in cfg["datasets"][1:])
    assert [d.title for d in suite.datasets if d.group == "downstream"] == PAPER_TITLES
    assert suite.table[15:] == ["@average", "imagenet1k"] and suite.average == ["downstream"]
    assert {"paper", "datasets", "protocol"} <= set(suite.source) and "2305.20088" in suite.source["paper"]


def test_datacomp_is_its_38_tasks_in_one_job():
    suite = suites.load("datacomp")
    assert len(suite.datasets) == 38 and "2304.14108" in suite.source["paper"]
    assert len({d.task for d in suite.datasets}) == 38 and suite.dataset("imagenet1k").task == "imagenet1k"
    assert {d.name for d in suite.datasets if d.tasks == ["retrieval"]} == {"flickr30k", "mscoco-captions"}
    assert suite.dataset("vtab-pets").metric == "mean_per_class_recall"
    job = dry_run("--datasets", "datacomp", "--parallelism", "8")
    assert (job["spec"]["completions"], job["spec"]["parallelism"]) == (37, 8)  # WinoGAViL: no laclip task
    assert "winogavil" not in pod_config(job)["datasets"]


def test_suites_compose_with_plain_names_and_tasks():
    cfg = EvalConfig.for_checkpoint(CKPT, datasets="laclip-paper,my-set,food101")
    assert len(cfg.datasets) == 17 and cfg.datasets[-1] == "my-set"  # food101 once, where the suite puts it
    assert cfg.tasks_for("my-set") == ["zeroshot", "fewshot", "linear_probe", "retrieval"]
    assert cfg.tasks_for("food101") == ["zeroshot", "fewshot", "linear_probe"]
    few = EvalConfig.for_checkpoint(CKPT, datasets="laclip-paper", tasks="fewshot")
    assert "imagenet1k" not in few.datasets and len(few.datasets) == 15
    with pytest.raises(ValueError, match="runs on none of the datasets of laclip-paper"):
        EvalConfig.for_checkpoint(CKPT, datasets="laclip-paper", tasks="retrieval")
    again = EvalConfig.model_validate_json(cfg.model_dump_json())  # what the pod reads back
    assert again == cfg and again.suites == ["laclip-paper"]


def test_a_suite_of_ones_own(tmp_path, monkeypatch, ckpt_store):
    """$LACLIP_SUITES adds suite files; the worker runs each dataset's tasks only, and leaves out a suite's
    linear probe where a set has no train split."""
    from laclip.eval.worker import plan

    (tmp_path / "mine.json").write_text(json.dumps({
        "name": "mine", "title": "demo", "source": {"paper": "none"}, "data": "synth", "images_source": "synth",
        "datasets": [{"name": "demo-eval", "title": "Demo", "tasks": ["zeroshot", "linear_probe"],
                      "images": {"test": 80, "train": 80}}]}))
    monkeypatch.setenv("LACLIP_SUITES", str(tmp_path))
    assert "mine" in suites.names()
    root = str(ckpt_store.local_path(""))
    cfg = EvalConfig.for_checkpoint("clip-run/step_1", root=root, datasets="mine")
    assert [p.task for p in plan(cfg, ckpt_store)] == ["zeroshot", "linear_probe"]
    for path in ckpt_store.list("datasets/demo-eval/train/"):
        ckpt_store.delete(path)
    assert [p.task for p in plan(cfg, ckpt_store)] == ["zeroshot"]
    (tmp_path / "broken.json").write_text(json.dumps({
        "name": "broken", "title": "x", "source": {}, "data": "x", "images_source": "x",
        "datasets": [{"name": "a-set", "title": "A", "tasks": ["captioning"]}]}))
    with pytest.raises(UsageError, match=r"suite file .*broken.json: datasets.0.tasks: .*unknown task 'captioning'"):
        suites.load("broken")
    (tmp_path / "misnamed.json").write_text((tmp_path / "mine.json").read_text())
    with pytest.raises(UsageError, match="calls itself 'mine': name the file mine.json"):
        suites.load("misnamed")


def test_plan_counts_a_suites_images():
    est = estimate("eval", "laclip-paper", 16)
    images = sum(d.images["test"] + (d.images.get("train") or 0) for d in suites.load("laclip-paper").datasets)
    assert est.work == images and est.work > 1_281_167
    # one pod per dataset: 16 GPUs wait for the ImageNet pod (train + val), 1 GPU does it all in turn
    imagenet_hours = (1_281_167 + 50_000) / est.throughput.per_gpu_per_s / 3600
    assert est.wall_hours == pytest.approx(imagenet_hours)
    assert estimate("eval", "laclip-paper", 1).wall_hours == pytest.approx(est.gpu_hours)
    assert any("sun397: no published size of its train split" in n for n in est.notes)
    comp = estimate("eval", "datacomp", 8)  # zero-shot and retrieval: test splits only
    assert comp.work == sum(d.images["test"] for d in suites.load("datacomp").datasets if d.tasks)
    res = CliRunner().invoke(app, ["plan", "eval", "--dataset", "laclip-paper", "--gpus", "16", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["work"] == images
