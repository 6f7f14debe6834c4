"""A training run that asks for an eval Job on each checkpoint: real training on gs:// (the
fake-gcs-server emulator) and the real kubernetes client against kmock's API emulator."""

from __future__ import annotations

import laclip.train.model  # noqa: F401  (registers laclip-tiny with open_clip)
from laclip.data.registry import resolve_shards
from laclip.storage import open_store
from laclip.train.config import TrainConfig
from laclip.train.main import main
from tests.ops.conftest import JOBS, cluster  # noqa: F401  (the emulated API server fixture)

from .train_helpers import write_rewrites


def _bucket_with_demo(demo_store, gcs_bucket):
    store = open_store(gcs_bucket)
    for shard in resolve_shards(demo_store, "demo")[:2]:
        for path in (shard.tar, shard.parquet):
            store.write_bytes(path, demo_store.read_bytes(path))
    write_rewrites(store)
    return store


def _config(gcs_bucket, **extra) -> TrainConfig:
    values = dict(run="hooked", root=gcs_bucket, model="laclip-tiny", rewrites="rw1", batch_size=16, steps=4,
                  checkpoint_every=2, keep_last=2, workers=0, shuffle_buffer=16, warmup_steps=1, tensorboard=False)
    return TrainConfig(**{**values, **extra})


def test_each_checkpoint_gets_an_eval_job(demo_store, gcs_bucket, cluster, monkeypatch):  # noqa: F811
    # the training pod carries the eval image the submitting machine resolved (jobs/train.py)
    monkeypatch.setenv("LACLIP_EVAL_IMAGE", "europe-docker.pkg.dev/team/laclip/eval:0.1.0")
    _bucket_with_demo(demo_store, gcs_bucket)
    cfg = _config(gcs_bucket, eval_datasets=["demo-eval"])
    assert main(["--config", cfg.model_dump_json()]) == 0
    jobs = {name: obj for (res, ns, name), obj in cluster.emu.objects.items() if res == JOBS and ns == "laclip"}
    assert sorted(jobs) == ["eval-hooked-step-2", "eval-hooked-step-4"]
    job = jobs["eval-hooked-step-4"]
    assert job["metadata"]["annotations"]["laclip.dev/checkpoint-url"] == f"{gcs_bucket}/checkpoints/hooked/step_4.pt"
    assert job["metadata"]["labels"]["laclip.dev/run"] == "hooked"
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "europe-docker.pkg.dev/team/laclip/eval:0.1.0"


def test_training_pods_carry_the_eval_image_only_when_asked():
    from laclip_jobs.train import render

    def env(cfg):
        [job] = render(cfg, "gs://bkt/laclip")
        return {e["name"]: e.get("value") for e in job["spec"]["tasks"][0]["template"]["spec"]["containers"][0]["env"]}

    cfg = TrainConfig(run="r1", dataset="cc12m")
    assert "LACLIP_EVAL_IMAGE" not in env(cfg)
    eval_image = env(cfg.model_copy(update={"eval_datasets": ["imagenet1k"]}))["LACLIP_EVAL_IMAGE"]
    assert eval_image == "us-docker.pkg.dev/test-project/laclip/eval:0.1.0"  # tests/conftest.py's registry


def test_a_refused_request_does_not_stop_training(demo_store, gcs_bucket, tmp_path, monkeypatch, capsys):
    from kubernetes.config import kube_config

    missing = str(tmp_path / "no-kubeconfig")
    monkeypatch.setenv("KUBECONFIG", missing)
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", missing)
    store = _bucket_with_demo(demo_store, gcs_bucket)
    cfg = _config(gcs_bucket, eval_datasets=["demo-eval"], steps=2)
    assert main(["--config", cfg.model_dump_json()]) == 0
    assert store.exists("checkpoints/hooked/step_2.pt")
    assert "could not request an eval Job for" in capsys.readouterr().err
