"""A training run that asks for an eval Job on each checkpoint: real training on gs:// (the
fake-gcs-server emulator) and the real kubernetes client against kmock's API emulator. The
eval Job is rendered at submit time into the training config (laclip_jobs.train.eval_template);
rank 0 copies it per checkpoint."""

from __future__ import annotations

import json
import shlex

import pytest

import laclip.train.model  # noqa: F401  (registers laclip-tiny with open_clip)
from laclip.data.registry import resolve_shards
from laclip.storage import open_store
from laclip.train.config import TrainConfig
from laclip.train.main import main
from laclip_jobs.train import eval_template, pod_templates, render
from tests.ops.conftest import JOBS, cluster  # noqa: F401  (the emulated API server fixture)

from .train_helpers import write_rewrites


def _bucket_with_demo(demo_store, gcs_bucket):
    store = open_store(gcs_bucket)
    for shard in resolve_shards(demo_store, "demo")[:2]:
        for path in (shard.tar, shard.parquet):
            store.write_bytes(path, demo_store.read_bytes(path))
    write_rewrites(store)
    return store


def _config(root, **extra) -> TrainConfig:
    values = dict(run="hooked", root=root, model="laclip-tiny", rewrites="rw1", batch_size=16, steps=4,
                  checkpoint_every=2, keep_last=2, workers=0, shuffle_buffer=16, warmup_steps=1, tensorboard=False)
    return TrainConfig(**{**values, **extra})


def _container(job: dict) -> dict:
    [container] = job["spec"]["template"]["spec"]["containers"]
    return container


def _pod_config(cfg: TrainConfig) -> tuple[str, dict]:
    """(the TrainConfig JSON the training pods' entrypoint gets, the pod's environment)."""
    [job] = render(cfg)  # a JobSet: its one pod template
    [container] = pod_templates(job)[0]["spec"]["containers"]
    args = shlex.split(container["command"][2].replace("${", "").replace(":=localhost}", ""))
    text = args[args.index("--config") + 1]
    assert "$" not in text  # else the kubelet's $$ -> $ pass would change it
    return text, {e["name"]: e.get("value") for e in container["env"]}


@pytest.mark.slow
def test_each_checkpoint_gets_an_eval_job(demo_store, gcs_bucket, cluster, monkeypatch):  # noqa: F811
    # the eval image is the one the submitting machine resolved, inside the rendered eval Job
    monkeypatch.setenv("LACLIP_REGISTRY", "europe-docker.pkg.dev/team/laclip")
    _bucket_with_demo(demo_store, gcs_bucket)
    config_json, _ = _pod_config(_config(gcs_bucket, eval_datasets=["demo-eval"]))
    monkeypatch.setenv("LACLIP_REGISTRY", "us-docker.pkg.dev/somewhere-else/laclip")  # the pod resolves nothing
    assert main(["--config", config_json]) == 0
    jobs = {name: obj for (res, ns, name), obj in cluster.emu.objects.items() if res == JOBS and ns == "laclip"}
    assert sorted(jobs) == ["eval-hooked-step-2", "eval-hooked-step-4"]
    for step in (2, 4):
        job = jobs[f"eval-hooked-step-{step}"]
        url = f"{gcs_bucket}/checkpoints/hooked/step_{step}.pt"
        assert job["metadata"]["annotations"]["laclip.dev/checkpoint-url"] == url
        assert job["metadata"]["labels"]["laclip.dev/run"] == "hooked"
        container = _container(job)
        assert container["image"] == "europe-docker.pkg.dev/team/laclip/eval:0.1.0"
        eval_cfg = json.loads(container["args"][container["args"].index("--config") + 1])
        assert eval_cfg["checkpoint"] == url and eval_cfg["datasets"] == ["demo-eval"]


def test_training_pods_carry_the_eval_job_only_when_asked():
    cfg = TrainConfig(run="r1", dataset="cc12m", root="gs://bkt/laclip")
    plain, env = _pod_config(cfg)
    assert TrainConfig.model_validate_json(plain).eval_job is None
    asked, env = _pod_config(cfg.model_copy(update={"eval_datasets": ["imagenet1k"]}))
    assert "LACLIP_EVAL_IMAGE" not in env  # the eval image is inside the eval Job template
    template = TrainConfig.model_validate_json(asked).eval_job
    assert template == eval_template(cfg.model_copy(update={"eval_datasets": ["imagenet1k"]}), "gs://bkt/laclip")
    assert _container(template)["image"] == "us-docker.pkg.dev/test-project/laclip/eval:0.1.0"  # conftest's registry
    eval_cfg = json.loads(_container(template)["args"][_container(template)["args"].index("--config") + 1])
    assert eval_cfg["checkpoint"] == "gs://bkt/laclip/checkpoints/r1/step_0.pt"
    assert eval_cfg["datasets"] == ["imagenet1k"]


@pytest.mark.slow
def test_a_refused_request_does_not_stop_training(demo_store, gcs_bucket, tmp_path, monkeypatch, capsys):
    from kubernetes.config import kube_config

    missing = str(tmp_path / "no-kubeconfig")
    monkeypatch.setenv("KUBECONFIG", missing)
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", missing)
    store = _bucket_with_demo(demo_store, gcs_bucket)
    cfg = _config(gcs_bucket, eval_datasets=["demo-eval"], steps=2)
    cfg = cfg.model_copy(update={"eval_job": eval_template(cfg, gcs_bucket)})
    assert main(["--config", cfg.model_dump_json()]) == 0
    assert store.exists("checkpoints/hooked/step_2.pt")
    assert f"could not request an eval Job for {gcs_bucket}/checkpoints/hooked/step_2.pt" in capsys.readouterr().err


@pytest.mark.slow
def test_a_local_checkpoint_gets_a_hint_instead_of_an_eval_job(demo_copy, capsys):
    """No pod can read a local folder: eval datasets on a local run end in a hint, and training goes on."""
    write_rewrites(demo_copy)
    cfg = _config(demo_copy.url, eval_datasets=["demo-eval"], steps=2)
    assert main(["--config", cfg.model_dump_json()]) == 0
    assert demo_copy.exists("checkpoints/hooked/step_2.pt")
    err = capsys.readouterr().err
    assert "is not in a bucket, so no pod could read it: run `laclip submit eval --local --checkpoint" in err
