"""The Indexed Job: strict Kubernetes 1.33 schema, the fields the issue asks for, dry-run and create."""

from __future__ import annotations

import json
import os
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from laclip.config import ClusterOptions
from laclip.errors import UsageError
from laclip.rewrite.config import RewriteConfig
from laclip_cli.main import app
from laclip_jobs.rewrite import render

runner = CliRunner()
GOLDEN = Path(__file__).parent / "golden" / "cc12m-job.yaml"
RUN = "rewrite-cc12m-1122-0412-a3f9"


def golden_config(**submit) -> RewriteConfig:
    """The config as submit hands it to the renderer: run id, store root and shard count set."""
    cluster = ClusterOptions(image="us-docker.pkg.dev/p/laclip/rewrite:0.1.0", spot=True, queue="team-a",
                             accelerator="nvidia-a100-80gb", gpus=2)
    fields = {"run": RUN, "root": "gs://bkt/laclip", "num_shards": 1201, **submit}
    return RewriteConfig(dataset="cc12m", model="gs://bkt/models/llama-7b", tensor_parallel=2, shards_per_pod=2,
                         cluster=cluster, **fields).check().for_cluster()


def test_render_matches_golden_and_schema():
    (job,) = render(golden_config())
    kubernetes_validate.validate(job, "1.33", strict=True)
    if os.environ.get("LACLIP_UPDATE_GOLDEN"):  # regenerate on purpose, then review the diff
        GOLDEN.write_text(yaml.safe_dump(job, sort_keys=False))
    assert job == yaml.safe_load(GOLDEN.read_text())


def test_job_fields():
    (job,) = render(golden_config())
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == 601  # ceil(1201 / 2)
    assert spec["parallelism"] == 64 and spec["backoffLimitPerIndex"] == 3 and spec["maxFailedIndexes"] == 6
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    assert rules[1]["action"] == "FailIndex" and rules[1]["onExitCodes"]["values"] == [3]
    assert pod["restartPolicy"] == "Never" and spec["ttlSecondsAfterFinished"] > 0 and spec["suspend"] is True
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-a100-80gb",
                                   "cloud.google.com/gke-spot": "true"}
    assert {t["key"] for t in pod["tolerations"]} == {"nvidia.com/gpu", "cloud.google.com/gke-spot"}
    (c,) = pod["containers"]
    assert c["command"] == ["python", "-m", "laclip.rewrite.main"] and c["args"][0] == "--config"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod["serviceAccountName"] == "laclip-runner" and pod["securityContext"]["runAsNonRoot"] is True
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}} in pod["volumes"]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert job["spec"]["template"]["metadata"]["labels"]["laclip.dev/run"] == RUN
    # The model arrives through the gcsfuse CSI driver, and the pod's config points at the mount.
    assert job["spec"]["template"]["metadata"]["annotations"] == {"gke-gcsfuse/volumes": "true"}
    vol = [v for v in pod["volumes"] if v["name"] == "model"][0]["csi"]
    assert vol["volumeAttributes"] == {"bucketName": "bkt", "mountOptions": "implicit-dirs,only-dir=models/llama-7b"}
    worker = RewriteConfig.model_validate_json(c["args"][1])
    assert worker.model == "/models/llama-7b" and worker.num_shards == 1201 and worker.tensor_parallel == 2
    assert worker.root == "gs://bkt/laclip" and worker.shards_per_pod == 2 and worker.run is None
    assert worker.rewrite_id == golden_config().resolved_rewrite_id() == job["metadata"]["annotations"][
        "laclip.dev/rewrite-id"]
    # The pod's run record names the bucket path, not the mount point, so two models are never mixed.
    assert worker.output_fingerprint() == golden_config().output_fingerprint()


def test_bad_names_fail_before_rendering():
    with pytest.raises(UsageError, match="RFC 1123"):
        render(golden_config(run="Rewrite_CC12M", root="gs://b", num_shards=3))
    cfg = golden_config(root="gs://b", num_shards=3)
    cfg.cluster.queue = "Team A"
    with pytest.raises(UsageError, match="Kueue"):
        render(cfg)


@pytest.mark.parametrize("missing", ["run", "root", "num_shards"])
def test_render_needs_what_submit_sets(missing):
    with pytest.raises(UsageError, match="needs the run id, the store root and the shard count"):
        render(golden_config(**{missing: None}))


@pytest.mark.parametrize("extra, message", [
    (["--num-shards", "1200", "--max-failed-indexes", "5000"], "--max-failed-indexes 5000 is more than the Job's 1200"),
    (["--num-shards", "99999999999999999999"], "raise --shards-per-pod"),
])
def test_index_counts_the_api_server_refuses_are_refused_here(extra, message):
    result = runner.invoke(app, ["--root", "gs://bkt/laclip", "submit", "rewrite", "--dataset", "cc12m", *extra,
                                 "--dry-run"])
    assert isinstance(result.exception, UsageError) and message in str(result.exception), result.output
    ok = runner.invoke(app, ["--root", "gs://bkt/laclip", "submit", "rewrite", "--dataset", "cc12m", "--num-shards",
                             "200000", "--shards-per-pod", "2", "--max-failed-indexes", "100000", "--dry-run"])
    (job,) = [d for d in yaml.safe_load_all(ok.stdout[ok.stdout.index("apiVersion"):]) if d]
    assert job["spec"]["completions"] == job["spec"]["maxFailedIndexes"] == 100_000


@pytest.mark.parametrize("extra, message", [
    (["--endpoint", "http://vllm:8000/v1"], "--endpoint is for --engine openai; the vllm engine would ignore it"),
    (["--workers", "2"], "--workers sets the processes of a --local run"),
])
def test_flags_that_would_be_ignored_are_refused(extra, message):
    result = runner.invoke(app, ["--root", "gs://bkt/laclip", "submit", "rewrite", "--dataset", "cc12m", *extra,
                                 "--dry-run"])
    assert isinstance(result.exception, UsageError) and message in str(result.exception), result.output


def test_dry_run_cc12m_passes_the_strict_schema(tmp_path):
    result = runner.invoke(app, ["--root", "gs://bkt/laclip", "submit", "rewrite", "--dataset", "cc12m", "--dry-run"])
    assert result.exit_code == 0, result.output
    (job,) = list(yaml.safe_load_all(result.stdout))
    kubernetes_validate.validate(job, "1.33", strict=True)
    assert job["spec"]["completions"] == 1200
    assert "estimate: rewrite cc12m on 64 GPU(s)" in result.stderr
    assert json.loads(job["spec"]["template"]["spec"]["containers"][0]["args"][1])["engine"] == "vllm"
    flags = ["--spot", "--queue", "lq", "--gpus-per-pod", "4", "--accelerator", "nvidia-a100-80gb",
             "--parallelism", "8", "--shards-per-pod", "3", "--sources", "coco,human", "--model", "/weights/llama"]
    result = runner.invoke(app, ["--root", "gs://bkt/laclip", "submit", "rewrite", "--dataset", "cc12m",
                                 "--dry-run", *flags])
    assert result.exit_code == 0, result.output
    (job,) = list(yaml.safe_load_all(result.stdout))
    kubernetes_validate.validate(job, "1.33", strict=True)
    assert job["spec"]["completions"] == 400 and job["spec"]["parallelism"] == 8
    assert "volumes" not in job["spec"]["template"]["metadata"].get("annotations", {})
    worker = json.loads(job["spec"]["template"]["spec"]["containers"][0]["args"][1])
    assert worker["model"] == "/weights/llama" and worker["sources"] == ["coco", "human"]
    # The pod's config carries the store root and the tensor parallel size of its GPUs.
    assert worker["root"] == "gs://bkt/laclip" and worker["tensor_parallel"] == 4 and worker["shards_per_pod"] == 3
    assert "run" not in worker and "cluster" not in worker
    assert job["metadata"]["annotations"]["laclip.dev/request"]


def test_dry_run_embeds_user_meta_pairs(tmp_path):
    """The pod cannot read the laptop's file: its pairs travel inside the config."""
    pairs = tmp_path / "alt.txt"
    pairs.write_text("a cat => a small cat resting\na dog => a dog at play\na car => a parked car\n")
    result = runner.invoke(app, ["--root", "gs://bkt/x", "submit", "rewrite", "--dataset", "cc12m", "--dry-run",
                                 "--meta-pairs", f"alt={pairs}", "--sources", "alt,coco"])
    assert result.exit_code == 0, result.output
    (job,) = list(yaml.safe_load_all(result.stdout))
    worker = json.loads(job["spec"]["template"]["spec"]["containers"][0]["args"][1])
    assert worker["meta_pairs"]["alt"][1] == ["a dog", "a dog at play"] and worker["sources"] == ["alt", "coco"]


@pytest.mark.parametrize("args, message", [
    (["--engine", "llama"],
     "invalid --engine 'llama': Input should be 'vllm', 'hf', 'eda', 'backtranslate', 'openai' or 'null'"),
    (["--sources", "chatgpt,gpt4"], "unknown meta-pair source 'gpt4'"),
    (["--queue", "Not Valid"], "Kueue LocalQueue"),
    (["--dataset", "Bad_Name"], "invalid dataset name 'Bad_Name'"),
    (["--memory", "64GB"], "invalid --memory: '64GB' is not a Kubernetes quantity"),
    (["--model", "gs://"], "--model 'gs://' names no bucket"),  # rendered a gcsfuse volume with bucketName ''
    (["--engine", "eda", "--model", "llama-7b"], "does nothing with the eda engine"),  # was silently ignored
    (["--set", "shards_per_pod=0"], "invalid --set shards_per_pod 0: Input should be greater than or equal to 1"),
    (["--shards-per-pod", "0"], "invalid --shards-per-pod 0: Input should be greater than or equal to 1"),
    (["--set", "no_such_field=1"], "--set no_such_field: no field 'no_such_field'"),
])
def test_dry_run_errors_are_usage_errors(args, message):
    base = ["--root", "gs://bkt/x", "submit", "rewrite", "--dry-run"]
    if "--dataset" not in args:
        base += ["--dataset", "cc12m"]
    result = runner.invoke(app, base + args)
    assert isinstance(result.exception, UsageError) and message in str(result.exception), result.exception


@pytest.mark.parametrize("model, message", [
    # gcsfuse reads ',' and '=' in only-dir= as more mount options: this one would mount as uid 0, mode 777
    ("gs://bucket/m,uid=0,file-mode=777,only-dir=", "gcsfuse reads ',' and '=' as mount options"),
    ("gs://bkt/models/a=b", "gcsfuse reads ',' and '=' as mount options"),
    ("gs://bkt/models/llama 7b", "gcsfuse reads ',' and '=' as mount options"),
    ("gs://bkt/models/../secrets", "gcsfuse reads ',' and '=' as mount options"),
    ("gs://Bad_Bucket/models/llama-7b", "'Bad_Bucket' is not a bucket name"),
    ("gs://ab/models/llama-7b", "'ab' is not a bucket name"),
    ("gs://bkt,uid=0/models/llama-7b", "'bkt,uid=0' is not a bucket name"),
])
def test_dry_run_refuses_a_model_path_gcsfuse_would_misread(model, message):
    result = runner.invoke(app, ["--root", "gs://bkt/laclip", "submit", "rewrite", "--dataset", "cc12m", "--dry-run",
                                 "--model", model])
    assert result.exit_code != 0 and result.stdout == ""  # no YAML
    exc = result.exception
    assert isinstance(exc, UsageError) and message in str(exc), exc
    assert str(exc).startswith(f"--model {model!r}") and "\n" not in str(exc)  # one line, naming the flag
    # A plain folder in a valid bucket still mounts as the pod's model.
    ok = runner.invoke(app, ["--root", "gs://bkt/laclip", "submit", "rewrite", "--dataset", "cc12m", "--dry-run",
                             "--model", "gs://bkt/models/llama_7b-v1.5+q@2~x"])
    assert ok.exit_code == 0, ok.output
    (job,) = list(yaml.safe_load_all(ok.stdout))
    vol = [v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == "model"][0]["csi"]
    assert vol["volumeAttributes"]["mountOptions"] == "implicit-dirs,only-dir=models/llama_7b-v1.5+q@2~x"


def test_create_through_the_kubernetes_client(monkeypatch, tmp_path):
    from tests.ops.conftest import JOBS, Emulator, point_kubeconfig

    emu = Emulator()
    try:
        point_kubeconfig(emu, tmp_path, monkeypatch)
        result = runner.invoke(app, ["--root", "gs://bkt/laclip", "submit", "rewrite", "--dataset", "cc12m",
                                     "--num-shards", "10"], env={"COLUMNS": "250"})
        assert result.exit_code == 0, result.output
        (name,) = emu.names(JOBS)
        assert name.startswith("rewrite-cc12m-") and name in result.output
        assert f"kubectl get jobs,pods -n laclip -l laclip.dev/run={name}" in result.output
    finally:
        emu.close()


@pytest.mark.slow
def test_a_mount_option_in_the_model_path_is_one_error_line():
    """`laclip` itself (its error printer): one line on stderr, the usage exit code, no YAML."""
    import subprocess
    import sys

    model = "gs://bucket/m,uid=0,file-mode=777,only-dir="
    result = subprocess.run([sys.executable, "-m", "laclip_cli.main", "--root", "gs://bkt/laclip", "submit", "rewrite",
                             "--dataset", "cc12m", "--dry-run", "--model", model],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "80"})
    assert result.returncode == 2 and result.stdout == "", result.stdout
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: --model {model!r}: the folder in the bucket may hold") and "mount options" in line


def test_cluster_submit_refuses_a_local_root(tmp_path):
    result = runner.invoke(app, ["--root", str(tmp_path), "submit", "rewrite", "--dataset", "cc12m"])
    assert isinstance(result.exception, UsageError) and "gs://" in str(result.exception)


def test_cluster_submit_refuses_a_local_root_holding_the_dataset(demo_copy):
    result = runner.invoke(app, ["--root", str(demo_copy.root), "submit", "rewrite", "--dataset", "demo"])
    assert isinstance(result.exception, UsageError), result.exception
    assert f"pods cannot read the local folder {demo_copy.root}: pass --root gs://" in str(result.exception)
