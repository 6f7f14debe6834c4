"""Rendering: TorchX dist.ddp -> Volcano Job, GKE patches, k8s 1.33 strict schema; the CLI."""

from __future__ import annotations

import json
import shlex

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from laclip.config import ClusterOptions
from laclip.errors import DataError, UsageError
from laclip.errors import EXIT_PERMANENT
from laclip.train.config import SPOT_JOB_RETRIES, TrainConfig, preset
from laclip_cli.main import app
from laclip_jobs.train import pod_templates, render

RUN = "train-laclip-cc12m-1122-0412-a3f9"


def cc12m(root="gs://bucket/laclip", **cluster):
    return preset("cc12m", run=RUN, rewrites="rw1", nodes="2:8", root=root, scheduler="volcano",
                  cluster=ClusterOptions(gpus=8, **cluster))


LAUNCH = ["python", "-m", "laclip.train.launch"]


def torchrun_args(pod) -> list[str]:
    """The pod's command line: torchrun's arguments under the launcher (laclip.train.launch)."""
    command = pod["spec"]["containers"][0]["command"]
    assert command[:2] == ["bash", "-c"]
    args = shlex.split(command[2].replace("${", "").replace(":=localhost}", ""))
    assert args[:3] == LAUNCH, args[:6]
    return args


def test_volcano_job_shape_and_gke_patches():
    (job,) = render(cc12m(spot=True, queue="research"))
    assert job["apiVersion"] == "batch.volcano.sh/v1alpha1" and job["kind"] == "Job"
    assert job["metadata"]["name"] == RUN and job["spec"]["queue"] == "research"
    assert job["metadata"]["annotations"]["laclip.dev/request"]  # stamped: a resubmit can tell "the same"
    tasks = job["spec"]["tasks"]
    assert len(tasks) == 8 and [t["minAvailable"] for t in tasks] == [1, 1] + [0] * 6  # elastic 2..8
    for task in tasks:
        # Volcano takes the first matching policy: a permanent exit ends the Job before any restart rule
        assert task["policies"][0] == {"exitCode": EXIT_PERMANENT, "action": "TerminateJob"}
        assert {"event": "PodFailed", "action": "RestartJob"} in task["policies"][1:]
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
        assert "torchrun" not in args and args[args.index("--nnodes") + 1] == "2:8"
        assert args[args.index("--nproc_per_node") + 1] == "8" and args[args.index("--max-restarts") + 1] == "3"
        assert args[args.index("--rdzv_id") + 1] == RUN
        assert args[args.index("--config") - 2:args.index("--config")] == ["-m", "laclip.train.main"]
        # the entrypoint gets the very same config
        cfg = TrainConfig.model_validate_json(args[args.index("--config") + 1])
        assert cfg.model_dump() == cc12m(spot=True, queue="research").model_dump()
        assert cfg.root == "gs://bucket/laclip" and cfg.eval_job is None
        env = {e["name"]: e["value"] for e in c["env"]}
        assert env["LACLIP_ROOT"] == "gs://bucket/laclip" and env["LACLIP_LOG_FORMAT"] == "json"


def test_volcano_retry_budget_survives_spot_preemptions():
    """Volcano counts a preemption (pod evicted or failed) like a crash; on Spot the default budget
    is larger, and --max-job-retries sets it for the Job and every task."""
    def budget(job):
        assert {t["maxRetry"] for t in job["spec"]["tasks"]} == {job["spec"]["maxRetry"]}
        return job["spec"]["maxRetry"]

    assert budget(render(cc12m("gs://b"))[0]) == 3  # on-demand: --max-restarts
    assert budget(render(cc12m("gs://b", spot=True))[0]) == SPOT_JOB_RETRIES > 3
    explicit = cc12m("gs://b", spot=True).model_copy(update={"max_job_retries": 5})
    assert budget(render(explicit)[0]) == 5
    result = CliRunner().invoke(app, ["--root", "gs://bucket/x", "submit", "train", "--dataset", "cc12m",
                                      "--rewrites", "X", "--spot", "--max-job-retries", "7", "--scheduler", "volcano",
                                      "--dry-run"])
    assert result.exit_code == 0, result.output
    assert budget(yaml.safe_load(result.stdout)) == 7


def test_render_is_deterministic():
    assert render(cc12m("gs://b")) == render(cc12m("gs://b"))


def test_render_needs_the_store_root_in_the_config():
    with pytest.raises(UsageError, match="needs the store root"):
        render(cc12m(root=None))


def test_cli_dry_run_renders_torchrun_nnodes(tmp_path):
    result = CliRunner().invoke(app, ["--root", "gs://bucket/x", "submit", "train", "--dataset", "cc12m",
                                      "--rewrites", "X", "--model", "ViT-B-16", "--nodes", "2:8", "--scheduler",
                                      "volcano", "--eval-datasets", "imagenet1k, demo-eval", "--dry-run"])
    assert result.exit_code == 0, result.output
    (job,) = list(yaml.safe_load_all(result.stdout))
    assert job["kind"] == "Job"
    args = torchrun_args(pod_templates(job)[0])
    assert args[args.index("--nnodes") + 1] == "2:8"
    cfg = json.loads(args[args.index("--config") + 1])
    assert cfg["model"] == "ViT-B-16" and cfg["rewrites"] == "X" and cfg["dataset"] == "cc12m"
    assert cfg["eval_datasets"] == ["imagenet1k", "demo-eval"] and cfg["root"] == "gs://bucket/x"
    assert cfg["owner"]  # one lease owner token per submission, shared by its restarts
    # the eval Job the run copies per checkpoint, rendered now: the eval image, the run's first checkpoint
    template = cfg["eval_job"]
    assert template["apiVersion"] == "batch/v1" and template["kind"] == "Job"
    [container] = template["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "us-docker.pkg.dev/test-project/laclip/eval:0.1.0"  # tests/conftest.py's registry
    eval_cfg = json.loads(container["args"][container["args"].index("--config") + 1])
    assert eval_cfg["checkpoint"] == f"gs://bucket/x/checkpoints/{cfg['run']}/step_0.pt"
    assert eval_cfg["datasets"] == ["imagenet1k", "demo-eval"]
    for pod in pod_templates(job):
        kubernetes_validate.validate(pod, "1.33", strict=True)
    # the cost at the largest size (8 nodes x 8 A100s), on stderr so stdout stays YAML
    assert "estimate: train cc12m on 64 GPU(s)" in result.stderr and "GPU-hours" in result.stderr


BAD_FLAGS = [
    (["--model", "ViT-Q-99"], "unknown model 'ViT-Q-99'"),
    (["--nodes", "4:2"], "--nodes '4:2' must be N or MIN:MAX"),
    (["--nodes", "2:257", "--scheduler", "volcano"], "--nodes 2:257: at most 256 nodes"),  # 1e20 tasks: a hang
    (["--nodes", "2:8"], "--nodes 2:8 is elastic, and a JobSet runs a fixed gang"),
    (["--nproc", "4"], "--nproc sets the processes of a --local run"),  # was ignored
    (["--run", "Bad_Name"], "not a valid Kubernetes name"),
    (["--loss", "multitext"], "texts-per-image of at least 2"),
    (["--local-loss"], "--local-loss needs --gather-with-grad"),
    (["--queue", "Team A"], "not a valid Kubernetes name"),  # went into the Volcano Job unchecked
    (["--preset", "imagenet"], "unknown training preset 'imagenet'"),
    (["--memory", "64GB"], "invalid --memory: '64GB' is not a Kubernetes quantity such as 64Gi"),
    (["--cpu", "lots"], "invalid --cpu: 'lots' is not a Kubernetes quantity such as 8 or 500m"),
    (["--rewrites", ""], "invalid --rewrites '': is empty"),  # `--rewrites "$UNSET"` must not train plain CLIP
    (["--set", "nosuch=1"], "--set nosuch: no field 'nosuch'"),
]


@pytest.mark.parametrize("argv, message", BAD_FLAGS)
def test_cli_rejects_bad_flags_with_a_clear_message(argv, message):
    from laclip_cli.main import main  # noqa: F401  (the console script maps LaclipError to exit codes)

    result = CliRunner().invoke(app, ["submit", "train", "--dataset", "cc12m", *argv, "--dry-run"])
    assert result.exit_code != 0
    assert isinstance(result.exception, UsageError) and message in str(result.exception)


# refused by the renderer, after the store checks
RENDER_TIME = (["--nodes", "2:257", "--scheduler", "volcano"], ["--nodes", "2:8"], ["--queue", "Team A"])


@pytest.mark.parametrize("argv, message", [(a, m) for a, m in BAD_FLAGS if a not in RENDER_TIME])
def test_cluster_submit_rejects_bad_flags_before_contacting_anything(argv, message, tmp_path, monkeypatch):
    """Without --dry-run the same flags end the submit before the store or a cluster is contacted."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    result = CliRunner().invoke(app, ["--root", "gs://no-such-bucket-laclip/x", "submit", "train",
                                      "--dataset", "cc12m", *argv])
    assert result.exit_code != 0
    assert isinstance(result.exception, UsageError) and message in str(result.exception)


def _build(values: dict, sets=(), local=False, nproc=None):
    from laclip_cli.stage import Context
    from laclip_cli.stages.train import STAGE

    ctx = Context(root="gs://bkt/laclip", local=local, dry_run=not local, kube_context=None,
                  options={"nproc": nproc})
    return STAGE.build(STAGE, values, list(sets), ctx)


def test_presets_size_pods_unless_told_otherwise():
    """The CLI's config: the dataset's preset (else cc12m's), its pod size under the flags given."""
    demo = _build({"preset": "demo", "run": "d1"})
    assert (demo.cluster.gpus, demo.cluster.cpu, demo.model, demo.dataset) == (0, "2", "laclip-tiny", "demo")
    assert demo.root == "gs://bkt/laclip" and demo.run == "d1"
    assert _build({"preset": "demo", "run": "d2", "cluster": {"cpu": "6"}}).cluster.cpu == "6"
    assert _build({"preset": "demo", "run": "d3"}, sets=["cluster.cpu=7"]).cluster.cpu == "7"
    big = _build({"dataset": "cc12m", "run": "c1", "cluster": {"gpus": 8}, "lr": 5e-4})
    assert (big.preset, big.cluster.gpus, big.model, big.lr, big.wd, big.epochs) == ("cc12m", 8, "ViT-B-16", 5e-4,
                                                                                     0.5, 35)
    cc3m = _build({"dataset": "cc3m", "run": "c3"})
    assert (cc3m.preset, cc3m.cluster.gpus, cc3m.nproc()) == ("cc3m", 8, 8)
    laion = _build({"dataset": "laion400m", "run": "l1"})
    assert laion.model == "ViT-B-32" and laion.local_loss and laion.gather_with_grad
    other = _build({"dataset": "mydata"})  # no preset of its own: the paper's CC12M recipe, a fresh run id
    assert other.preset == "cc12m" and other.dataset == "mydata" and other.run.startswith("train-clip-mydata-")
    assert _build({"dataset": "mydata", "rewrites": "r"}).run.startswith("train-laclip-mydata-")
    # every submission gets its own lease owner token; --nproc sets the processes of a --local run
    assert _build({"run": "a"}).owner != _build({"run": "a"}).owner
    assert _build({"preset": "demo", "run": "d4"}, local=True, nproc=2).procs_per_node == 2


def _bucket_with_cc12m(demo_store, gcs_bucket):
    """A bucket (fake-gcs-server) whose cc12m holds two demo shards and rewrite set X: the store
    checks a cluster submit makes before anything is created."""
    from laclip.data.registry import resolve_shards
    from laclip.storage import open_store

    from .train_helpers import write_rewrites

    store = open_store(gcs_bucket)
    for shard in resolve_shards(demo_store, "demo")[:2]:
        for path in (shard.tar, shard.parquet):
            store.write_bytes(path.replace("datasets/demo/", "datasets/cc12m/"), demo_store.read_bytes(path))
    write_rewrites(store, dataset="cc12m", rewrite_id="X")
    return store


def test_cluster_submit_checks_the_store_first(demo_store, gcs_bucket, tmp_path, monkeypatch):
    """A typo'd --rewrites or a missing dataset ends the submit with one line, before any pod starts."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    _bucket_with_cc12m(demo_store, gcs_bucket)
    base = ["--root", gcs_bucket, "submit", "train", "--run", RUN]
    result = CliRunner().invoke(app, [*base, "--dataset", "cc12m", "--rewrites", "nosuchid"])
    assert isinstance(result.exception, DataError), result.output
    assert "rewrites 'nosuchid' of dataset 'cc12m'" in str(result.exception) and "X" in str(result.exception)
    result = CliRunner().invoke(app, [*base, "--dataset", "cc3m"])
    assert isinstance(result.exception, DataError) and "dataset 'cc3m' has no shards" in str(result.exception)


def test_create_through_the_kubernetes_client(demo_store, gcs_bucket, tmp_path, monkeypatch):
    """The Volcano Job is created through the real client (kmock's API emulator); a second submit
    with the same run id, the very same request again and a cluster without Volcano end in
    one-line messages."""
    from laclip.cluster import ClusterError
    from tests.ops.conftest import VOLCANO, Emulator, point_kubeconfig

    _bucket_with_cc12m(demo_store, gcs_bucket)
    args = ["--root", gcs_bucket, "submit", "train", "--dataset", "cc12m", "--rewrites", "X",
            "--nodes", "2:4", "--scheduler", "volcano", "--run", RUN]
    for volcano in (True, False):
        emu = Emulator(volcano=volcano)
        try:
            point_kubeconfig(emu, tmp_path, monkeypatch)
            result = CliRunner().invoke(app, args, env={"COLUMNS": "250"})
            if not volcano:
                assert isinstance(result.exception, ClusterError), result.output
                assert "the cluster does not serve jobs.batch.volcano.sh (or namespace 'laclip' is missing)" in \
                    str(result.exception)
                continue
            assert result.exit_code == 0, result.output
            assert emu.names(VOLCANO) == {RUN} and f"created Volcano Job laclip/{RUN}" in result.output
            (job,) = [o for (res, _, name), o in emu.emu.objects.items() if res == VOLCANO]
            assert len(job["spec"]["tasks"]) == 4 and job["metadata"]["labels"]["laclip.dev/run"] == RUN
            # another submission (its own owner token) with the run id of a Job that exists is refused
            again = CliRunner().invoke(app, args)
            assert isinstance(again.exception, ClusterError)
            assert f"{RUN} already exists and asks for something else" in str(again.exception)
            assert "pick another --run" in str(again.exception)
            # the very same request again (a retried submit) leaves the Job as it is
            same = [*args, "--set", "owner=retried"]
            first = CliRunner().invoke(app, [*same[:-2], "--run", "train-same-request", *same[-2:]])
            assert first.exit_code == 0, first.output
            second = CliRunner().invoke(app, [*same[:-2], "--run", "train-same-request", *same[-2:]],
                                        env={"COLUMNS": "250"})
            assert second.exit_code == 0, second.output
            assert "already exists (the same request): not created again" in second.stderr
            assert emu.names(VOLCANO) == {RUN, "train-same-request"}
        finally:
            emu.close()


def test_cluster_submit_refuses_a_local_root(tmp_path):
    result = CliRunner().invoke(app, ["--root", str(tmp_path), "submit", "train", "--dataset", "cc12m"])
    assert isinstance(result.exception, UsageError) and "pods cannot read the local folder" in str(result.exception)
    printed = CliRunner().invoke(app, ["--root", str(tmp_path), "submit", "train", "--dataset", "cc12m", "--dry-run"])
    assert printed.exit_code == 0 and "is a local folder" in printed.stderr
