"""The eval Job as rendered, checked against the strict Kubernetes 1.33 schema, and the CLI's --dry-run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

from laclip.cluster import REQUEST_ANNOTATION
from laclip.config import ClusterOptions
from laclip.errors import UsageError
from laclip.eval.config import EvalConfig
from laclip_jobs.eval import render

CKPT = "gs://bucket/checkpoints/run/step_1000"


def valid(objs):
    for obj in objs:
        kubernetes_validate.validate(obj, "1.33", strict=True)
    return objs


def test_checkpoint_references():
    cfg = EvalConfig.for_checkpoint("gs://bkt/team/checkpoints/cc12m-laclip/step_1000.pt")
    assert (cfg.root, cfg.checkpoint_root) == ("gs://bkt/team", "gs://bkt/team")
    assert (cfg.checkpoint_path, cfg.run, cfg.checkpoint_name) == ("checkpoints/cc12m-laclip/step_1000.pt",
                                                                   "cc12m-laclip", "step_1000")
    assert cfg.out_dir == "evals/cc12m-laclip/step_1000"
    rel = EvalConfig.for_checkpoint("myrun/step_5", root="/data/store")
    assert (rel.checkpoint_root, rel.checkpoint_path, rel.run) == ("/data/store", "checkpoints/myrun/step_5", "myrun")
    other = EvalConfig.for_checkpoint(CKPT, root="gs://results")  # results elsewhere than the checkpoint
    assert other.root == "gs://results" and other.checkpoint_url == CKPT
    loose = EvalConfig.for_checkpoint("/tmp/models/run7/final.pt")
    assert (loose.checkpoint_root, loose.checkpoint_path, loose.run) == ("/tmp/models/run7", "final.pt", "run7")
    # `checkpoint` is one field, normalised to the absolute reference; root and run are filled from it
    assert (cfg.checkpoint, cfg.checkpoint_url) == ("gs://bkt/team/checkpoints/cc12m-laclip/step_1000.pt",) * 2
    assert rel.checkpoint == "/data/store/checkpoints/myrun/step_5" and (rel.root, rel.run) == ("/data/store", "myrun")
    assert EvalConfig.for_checkpoint(CKPT, run="mine").out_dir == "evals/mine/step_1000"  # --run names the folder
    # the pod reads back exactly this config from its JSON (the checkpoint already absolute)
    assert EvalConfig.model_validate_json(rel.model_dump_json()) == rel
    for ref in ("gs:///checkpoints/run/step_1", "gs://", "gs:///"):  # 'gs://' read as the local path /gs:
        with pytest.raises(ValidationError, match="names no bucket"):
            EvalConfig.for_checkpoint(ref)
    for splits in ({"train_split": "test"}, {"val_split": "test"}):  # supports or the probe would see test images
        with pytest.raises(ValueError, match="test split 'test' is also the train or validation split"):
            EvalConfig.for_checkpoint(CKPT, **splits)
    for ref in ("gs://bkt", "gs://bkt/"):  # a bucket alone said 'names no bucket'
        with pytest.raises(ValidationError, match="names a bucket but no checkpoint"):
            EvalConfig.for_checkpoint(ref)
    assert EvalConfig.for_checkpoint(CKPT, tasks="zs,knn,lp").tasks == ["zeroshot", "fewshot", "linear_probe"]
    with pytest.raises(ValueError, match="tasks"):
        EvalConfig.for_checkpoint(CKPT, tasks="zeroshot,captioning")


def test_single_dataset_job():
    cfg = EvalConfig.for_checkpoint(CKPT, datasets="imagenet1k")
    (job,) = valid(render(cfg))
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert job["metadata"]["name"] == "eval-run-step-1000" and "completionMode" not in spec
    assert spec["completions"] == 1 and spec["backoffLimit"] == 2
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert labels["app.kubernetes.io/component"] == "eval" and labels["laclip.dev/run"] == "run"
        assert labels["laclip.dev/dataset"] == "imagenet1k" and labels["laclip.dev/checkpoint"] == "step-1000"
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "laclip.eval.main"]
    assert container["args"][0] == "--config"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"]["cloud.google.com/gke-accelerator"] == "nvidia-tesla-a100"
    assert pod["restartPolicy"] == "Never" and pod["securityContext"]["runAsNonRoot"] is True
    # The pod's config is the same typed config, less the cluster options.
    back = EvalConfig.model_validate_json(container["args"][1])
    assert back.model_dump(exclude={"cluster"}) == cfg.model_dump(exclude={"cluster"})
    assert {"name": "LACLIP_ROOT", "value": "gs://bucket"} in container["env"]
    assert (back.checkpoint, back.root, back.run) == (CKPT, "gs://bucket", "run")
    # what the Job asks for, so that creating it twice is harmless and another request is refused
    assert re.fullmatch(r"[0-9a-f]{16}", job["metadata"]["annotations"][REQUEST_ANNOTATION])
    again = render(EvalConfig.for_checkpoint(CKPT, datasets="imagenet1k"))[0]
    assert again["metadata"]["annotations"][REQUEST_ANNOTATION] == job["metadata"]["annotations"][REQUEST_ANNOTATION]
    other = render(EvalConfig.for_checkpoint(CKPT, datasets="imagenet1k", tasks="zeroshot"))[0]
    assert other["metadata"]["annotations"][REQUEST_ANNOTATION] != job["metadata"]["annotations"][REQUEST_ANNOTATION]


def test_indexed_job_over_datasets_with_kueue_and_spot():
    cluster = ClusterOptions(queue="a100-queue", spot=True, accelerator="nvidia-a100-80gb")
    cfg = EvalConfig.for_checkpoint(CKPT, datasets="imagenet1k,cifar10,demo-eval", cluster=cluster)
    (job,) = valid(render(cfg))
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 3
    assert spec["backoffLimitPerIndex"] == 2 and spec["suspend"] is True
    assert spec["backoffLimit"] == 3 * 3  # never ends the Job before each index used its own retries
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "a100-queue"
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "Ignore" and rules[1]["action"] == "FailIndex"
    pod = spec["template"]["spec"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-a100-80gb",
                                   "cloud.google.com/gke-spot": "true"}


def test_long_names_are_shortened_and_bad_ones_refused():
    cfg = EvalConfig.for_checkpoint("gs://b/checkpoints/" + "a-very-long-training-run-name-" * 2 + "x/step_123456")
    name = cfg.job_name()
    assert len(name) <= 63 and name.startswith("eval-a-very-long")
    assert cfg.job_name() == name  # stable: the same checkpoint maps to the same Job
    # An Indexed Job's pods are named <job>-<index>, which the API server requires to be a DNS label.
    many = cfg.model_copy(update={"datasets": [f"d{i}" for i in range(12)]})
    (job,) = valid(render(many))
    assert job["spec"]["completionMode"] == "Indexed"
    assert len(f"{job['metadata']['name']}-11") <= 63 and job["metadata"]["name"].startswith("eval-a-very-long")
    # A run folder that cannot label the Job is refused when the config is made, naming --run.
    with pytest.raises(ValidationError, match="run name 'Bad Run!' must be .*pass --run NAME"):
        EvalConfig.for_checkpoint("gs://b/checkpoints/Bad Run!/step_1")
    with pytest.raises(UsageError, match="run id"):  # a valid run name that is no label value
        render(EvalConfig.for_checkpoint("gs://b/checkpoints/run_/step_1"))


@pytest.mark.slow
def test_dry_run_prints_a_valid_job_and_contacts_nothing(tmp_path):
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "missing"), "LACLIP_ROOT": "",
           "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "missing.json"), "NO_PROXY": "", "HTTPS_PROXY": "http://0.0.0.0:9"}
    proc = subprocess.run([sys.executable, "-m", "laclip_cli.main", "submit", "eval", "--checkpoint", CKPT,
                           "--datasets", "imagenet1k,demo-eval", "--dry-run"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    objs = valid(list(yaml.safe_load_all(proc.stdout)))
    assert [o["kind"] for o in objs] == ["Job"]
    assert objs[0]["metadata"]["annotations"]["laclip.dev/checkpoint-url"] == CKPT
    assert "import torch" not in proc.stderr
    # the `laclip plan eval` figure (one pod per dataset; ImageNet's train and val from the suite files,
    # demo-eval in no suite), on stderr so stdout stays YAML
    assert "estimate: eval datasets on 2 GPU(s): 0.4 GPU-hours" in proc.stderr


def test_dry_run_bad_flags_fail_cleanly():
    from typer.testing import CliRunner

    from laclip_cli.main import app

    result = CliRunner().invoke(app, ["submit", "eval", "--checkpoint", CKPT, "--tasks", "zeroshot,bogus",
                                      "--dry-run"])
    # the flag, the value given and why: one line (laclip.config.explain)
    assert isinstance(result.exception, UsageError)
    assert str(result.exception) == ("invalid --tasks 'bogus': Input should be 'zeroshot', 'fewshot', 'linear_probe' "
                                     "or 'retrieval'")
    empty = CliRunner().invoke(app, ["submit", "eval", "--checkpoint", CKPT, "--datasets", ",", "--dry-run"])
    # one readable line naming the flag, not pydantic's report with its documentation link
    assert isinstance(empty.exception, UsageError) and str(empty.exception).startswith("invalid --datasets: ")
    assert "errors.pydantic.dev" not in str(empty.exception)


def test_a_job_on_a_local_folder_is_refused(tmp_path):
    from typer.testing import CliRunner

    from laclip_cli.main import app

    args = ["--root", str(tmp_path), "submit", "eval", "--checkpoint", "run/step_1"]
    result = CliRunner().invoke(app, args, env={"KUBECONFIG": str(tmp_path / "missing")})
    assert isinstance(result.exception, UsageError) and "pods cannot read the local folder" in str(result.exception)
    printed = CliRunner().invoke(app, [*args, "--dry-run"])
    assert printed.exit_code == 0 and "is a local folder" in printed.stderr


GOLDEN = Path(__file__).parent / "golden" / "eval-job.yaml"


def test_render_matches_golden():
    cluster = ClusterOptions(image="us-docker.pkg.dev/p/laclip/eval:0.1.0", queue="team-a", spot=True)
    cfg = EvalConfig.for_checkpoint("gs://bkt/laclip/checkpoints/cc12m-laclip/step_35000",
                                    datasets="imagenet1k,cifar10", model="ViT-B-16", cluster=cluster)
    (job,) = valid(render(cfg))
    if os.environ.get("LACLIP_UPDATE_GOLDEN"):  # regenerate on purpose, then review the diff
        GOLDEN.write_text(yaml.safe_dump(job, sort_keys=False))
    assert job == yaml.safe_load(GOLDEN.read_text())
