"""Rendering: TorchX dist.ddp -> Volcano Job, GKE patches, k8s 1.33 strict schema; the CLI."""

from __future__ import annotations

import json
import shlex

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from laclip.config import ClusterOptions
from laclip.errors import UsageError
from laclip.train.config import SPOT_JOB_RETRIES, parse_config, preset
from laclip_cli.main import app
from laclip_jobs.train import pod_templates, render

RUN = "train-laclip-cc12m-1122-0412-a3f9"


def cc12m(**cluster):
    return preset("cc12m", run=RUN, rewrites="rw1", nodes="2:8",
                  cluster=ClusterOptions(gpus=8, **cluster))


def torchrun_args(pod) -> list[str]:
    command = pod["spec"]["containers"][0]["command"]
    assert command[:2] == ["bash", "-c"]
    return shlex.split(command[2].replace("${", "").replace(":=localhost}", ""))


def test_volcano_job_shape_and_gke_patches():
    (job,) = render(cc12m(spot=True, queue="research"), "gs://bucket/laclip")
    assert job["apiVersion"] == "batch.volcano.sh/v1alpha1" and job["kind"] == "Job"
    assert job["metadata"]["name"] == RUN and job["spec"]["queue"] == "research"
    tasks = job["spec"]["tasks"]
    assert len(tasks) == 8 and [t["minAvailable"] for t in tasks] == [1, 1] + [0] * 6  # elastic 2..8
    for pod in pod_templates(job):
        kubernetes_validate.validate(pod, "1.33", strict=True)
        spec, (c,) = pod["spec"], pod["spec"]["containers"]
        assert pod["metadata"]["labels"]["laclip.dev/run"] == RUN
        assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "train"
        assert spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100",
                                        "cloud.google.com/gke-spot": "true"}
        assert {t["key"] for t in spec["tolerations"]} == {"nvidia.com/gpu", "cloud.google.com/gke-spot"}
        assert spec["serviceAccountName"] == "laclip-runner" and spec["securityContext"]["runAsNonRoot"]
        assert c["securityContext"]["readOnlyRootFilesystem"] and c["resources"]["limits"]["nvidia.com/gpu"] == "8"
        shm = [v for v in spec["volumes"] if v["name"] == "dshm"]
        assert shm == [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}]
        args = torchrun_args(pod)
        assert args[0] == "torchrun" and args[args.index("--nnodes") + 1] == "2:8"
        assert args[args.index("--nproc_per_node") + 1] == "8" and args[args.index("--max-restarts") + 1] == "3"
        assert args[args.index("--rdzv_id") + 1] == RUN
        cfg = parse_config(args[args.index("--config") + 1])  # the entrypoint gets the very same config
        assert cfg.model_dump() == cc12m(spot=True, queue="research").model_copy(
            update={"root": "gs://bucket/laclip"}).model_dump()
        env = {e["name"]: e["value"] for e in c["env"]}
        assert env["LACLIP_ROOT"] == "gs://bucket/laclip" and env["LACLIP_LOG_FORMAT"] == "json"


def test_volcano_retry_budget_survives_spot_preemptions():
    """Volcano counts a preemption (pod evicted or failed) like a crash; on Spot the default budget
    is larger, and --max-job-retries sets it for the Job and every task."""
    def budget(job):
        assert {t["maxRetry"] for t in job["spec"]["tasks"]} == {job["spec"]["maxRetry"]}
        return job["spec"]["maxRetry"]

    assert budget(render(cc12m(), "gs://b")[0]) == 3  # on-demand: --max-restarts
    assert budget(render(cc12m(spot=True), "gs://b")[0]) == SPOT_JOB_RETRIES > 3
    explicit = cc12m(spot=True).model_copy(update={"max_job_retries": 5})
    assert budget(render(explicit, "gs://b")[0]) == 5
    result = CliRunner().invoke(app, ["--root", "gs://bucket/x", "submit", "train", "--dataset", "cc12m",
                                      "--rewrites", "X", "--spot", "--max-job-retries", "7", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert budget(yaml.safe_load(result.stdout)) == 7


def test_render_is_deterministic():
    assert render(cc12m(), "gs://b") == render(cc12m(), "gs://b")


def test_cli_dry_run_renders_torchrun_nnodes(tmp_path):
    result = CliRunner().invoke(app, ["--root", "gs://bucket/x", "submit", "train", "--dataset", "cc12m",
                                      "--rewrites", "X", "--model", "ViT-B-16", "--nodes", "2:8",
                                      "--eval-datasets", "imagenet1k, demo-eval", "--dry-run"])
    assert result.exit_code == 0, result.output
    (job,) = list(yaml.safe_load_all(result.stdout))
    assert job["kind"] == "Job"
    args = torchrun_args(pod_templates(job)[0])
    assert args[args.index("--nnodes") + 1] == "2:8"
    cfg = json.loads(args[args.index("--config") + 1])
    assert cfg["model"] == "ViT-B-16" and cfg["rewrites"] == "X" and cfg["dataset"] == "cc12m"
    assert cfg["eval_datasets"] == ["imagenet1k", "demo-eval"]
    for pod in pod_templates(job):
        kubernetes_validate.validate(pod, "1.33", strict=True)
    # the cost at the largest size (8 nodes x 8 A100s), on stderr so stdout stays YAML
    assert "estimate: train cc12m on 64 GPU(s)" in result.stderr and "GPU-hours" in result.stderr


@pytest.mark.parametrize("argv, message", [
    (["--model", "ViT-Q-99"], "unknown model 'ViT-Q-99'"),
    (["--nodes", "4:2"], "--nodes '4:2' must be N or MIN:MAX"),
    (["--nodes", "2:257"], "--nodes 2:257: at most 256 nodes"),  # 1e20 nodes rendered 1e20 tasks (a hang)
    (["--nproc", "4"], "--nproc sets the processes of a --local run"),  # was ignored
    (["--run", "Bad_Name"], "not a valid Kubernetes name"),
    (["--loss", "multitext"], "texts-per-image of at least 2"),
    (["--local-loss"], "--local-loss needs --gather-with-grad"),
    (["--queue", "Team A"], "not a valid Kubernetes name"),  # went into the Volcano Job unchecked
    (["--preset", "imagenet"], "unknown training preset 'imagenet'"),
    (["--memory", "64GB"], "'64GB' is not a Kubernetes quantity such as 64Gi"),
    (["--cpu", "lots"], "'lots' is not a Kubernetes quantity such as 8 or 500m"),
])
def test_cli_rejects_bad_flags_with_a_clear_message(argv, message):
    from laclip_cli.main import main  # noqa: F401  (the console script maps LaclipError to exit codes)

    result = CliRunner().invoke(app, ["submit", "train", "--dataset", "cc12m", *argv, "--dry-run"])
    assert result.exit_code != 0
    assert isinstance(result.exception, UsageError) and message in str(result.exception)


def test_presets_size_pods_unless_told_otherwise():
    from laclip_cli.submit_train import build_config

    demo = build_config("demo", None, "d1")
    assert (demo.cluster.gpus, demo.cluster.cpu, demo.model, demo.dataset) == (0, "2", "laclip-tiny", "demo")
    assert build_config("demo", None, "d2", cpu="6").cluster.cpu == "6"
    big = build_config("cc12m", None, "c1", gpus=8, lr=5e-4)
    assert (big.cluster.gpus, big.model, big.lr, big.wd, big.epochs) == (8, "ViT-B-16", 5e-4, 0.5, 35)
    assert (build_config("cc3m", None, "c3").cluster.gpus, build_config("cc3m", None, "c3").nproc()) == (8, 8)
    laion = build_config("laion400m", None, "l1")
    assert laion.model == "ViT-B-32" and laion.local_loss and laion.gather_with_grad


def test_create_through_the_kubernetes_client(tmp_path, monkeypatch):
    """The Volcano Job is created through the real client (kmock's API emulator); a second submit
    with the same run id and a cluster without Volcano end in one-line messages."""
    from tests.ops.conftest import VOLCANO, Emulator, point_kubeconfig

    args = ["--root", "gs://bkt/laclip", "submit", "train", "--dataset", "cc12m", "--rewrites", "X",
            "--nodes", "2:4", "--run", RUN]
    for volcano in (True, False):
        emu = Emulator(volcano=volcano)
        try:
            point_kubeconfig(emu, tmp_path, monkeypatch)
            result = CliRunner().invoke(app, args, env={"COLUMNS": "250"})
            if not volcano:
                assert "the batch.volcano.sh CRD or namespace 'laclip' is missing" in str(result.exception)
                continue
            assert result.exit_code == 0, result.output
            assert emu.names(VOLCANO) == {RUN} and f"created volcano job {RUN}" in result.output
            (job,) = [o for (res, _, name), o in emu.emu.objects.items() if res == VOLCANO]
            assert len(job["spec"]["tasks"]) == 4 and job["metadata"]["labels"]["laclip.dev/run"] == RUN
            again = CliRunner().invoke(app, args)
            assert "already exists in 'laclip': pick another --run" in str(again.exception)
        finally:
            emu.close()


def test_cluster_submit_refuses_a_local_root(tmp_path):
    result = CliRunner().invoke(app, ["--root", str(tmp_path), "submit", "train", "--dataset", "cc12m"])
    assert isinstance(result.exception, UsageError) and "pods cannot read the local folder" in str(result.exception)
    printed = CliRunner().invoke(app, ["--root", str(tmp_path), "submit", "train", "--dataset", "cc12m", "--dry-run"])
    assert printed.exit_code == 0 and "is a local folder" in printed.stderr
