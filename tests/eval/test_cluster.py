"""Creating the eval Job through the real kubernetes client (laclip.cluster.create), against kmock's
API emulator: from `laclip submit eval`, and from a training run that copies its eval Job template
for each checkpoint (laclip.followup.for_checkpoint, laclip.train.eval_hook.request_eval)."""

from __future__ import annotations

import asyncio
import threading

import kmock
import pytest

from laclip import cluster
from laclip.cluster import REQUEST_ANNOTATION, ClusterError
from laclip.config import ClusterOptions
from laclip.errors import LaclipError
from laclip.eval.config import EvalConfig
from laclip.followup import config_text, for_checkpoint
from laclip_jobs.eval import render

JOBS = kmock.resource("batch", "v1", "jobs")


def config_of(job: dict) -> EvalConfig:
    """The EvalConfig an eval Job's pods read."""
    return EvalConfig.model_validate_json(config_text(job))


class Api:
    """kmock's KubernetesEmulator served from a background event loop."""

    def __init__(self):
        ready = threading.Event()

        async def serve():
            self.stop = asyncio.Event()
            self.loop = asyncio.get_running_loop()
            async with kmock.KubernetesEmulator() as emu, kmock.Server(emu) as server:
                emu.resources[JOBS] = {}
                self.emu, self.url = emu, str(server.url).rstrip("/")
                ready.set()
                await self.stop.wait()

        self.thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
        self.thread.start()
        assert ready.wait(20), "kmock did not start"

    def client(self):
        from kubernetes import client

        conf = client.Configuration()
        conf.host = self.url
        return client.ApiClient(conf)

    def close(self):
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)


@pytest.fixture
def api():
    server = Api()
    yield server
    server.close()


CKPT = "gs://bucket/checkpoints/cc12m-laclip/step_2000"
NAME = "eval-cc12m-laclip-step-2000"


def train_config(**kw):
    """A cluster training run that asks for evaluations, with the eval Job template the CLI renders
    into its config at submit time (laclip_jobs.train.eval_template)."""
    from laclip.train.config import TrainConfig
    from laclip_jobs.train import eval_template

    cfg = TrainConfig(preset="demo", run="cc12m-laclip", root="gs://bucket", **kw)
    return cfg.model_copy(update={"eval_job": eval_template(cfg, cfg.root)})


def eval_job(**options) -> dict:
    return render(EvalConfig.for_checkpoint(CKPT, **options))[0]


def test_training_hook_creates_the_job_once(api):
    template = train_config(eval_datasets=["imagenet1k", "demo-eval"]).eval_job
    job = for_checkpoint(template, CKPT)
    assert job["metadata"]["name"] == NAME and template["metadata"]["name"] == "eval-cc12m-laclip-step-0"
    assert config_of(template).checkpoint == "gs://bucket/checkpoints/cc12m-laclip/step_0.pt"
    assert config_of(job).checkpoint == CKPT and config_of(job).datasets == ["imagenet1k", "demo-eval"]
    # The copy is exactly what the renderer makes for that checkpoint with the run's eval options
    # (the same request annotation included), so a copy and `laclip submit eval` agree.
    fresh = render(EvalConfig(checkpoint=CKPT, datasets=["imagenet1k", "demo-eval"],
                              cluster=ClusterOptions(namespace="laclip", spot=False)))[0]
    assert job == fresh
    assert cluster.create([job], api_client=api.client()) == [("Job", NAME, "created")]
    stored = api.emu.objects[JOBS, "laclip", NAME]
    assert stored["spec"]["completionMode"] == "Indexed"
    assert stored["metadata"]["labels"]["laclip.dev/run"] == "cc12m-laclip"
    assert stored["metadata"]["annotations"][REQUEST_ANNOTATION] == job["metadata"]["annotations"][REQUEST_ANNOTATION]
    # A second request for the same checkpoint is not an error and makes no second Job.
    again = for_checkpoint(template, CKPT)
    assert cluster.create([again], api_client=api.client()) == [("Job", NAME, "same")]
    assert [k for k in api.emu.objects if k[0] == JOBS] == [(JOBS, "laclip", NAME)]
    # The template is not changed by a copy: the next checkpoint gets its own Job.
    nxt = for_checkpoint(template, CKPT.replace("step_2000", "step_3000"))
    assert cluster.create([nxt], api_client=api.client()) == [("Job", "eval-cc12m-laclip-step-3000", "created")]


def test_the_training_pod_asks_through_its_kubeconfig(api, tmp_path, monkeypatch, caplog):
    """laclip.train.eval_hook.request_eval: what rank 0 calls after each checkpoint lands."""
    from laclip.train.eval_hook import request_eval

    point(api, tmp_path, monkeypatch)
    cfg = train_config(eval_datasets=["demo-eval"])
    assert request_eval(cfg, CKPT) == NAME
    assert request_eval(cfg, CKPT) == NAME  # asking twice is harmless
    assert config_of(api.emu.objects[JOBS, "laclip", NAME]).datasets == ["demo-eval"]
    # a checkpoint no pod could read, or a run without eval datasets: no Job, and training goes on
    assert request_eval(cfg, "/local/checkpoints/cc12m-laclip/step_1") is None
    assert request_eval(train_config(), CKPT.replace("2000", "4000")) is None
    # a refused request is logged, never raised (evaluation is a side job)
    other = train_config(eval_datasets=["imagenet1k"])
    assert request_eval(other, CKPT) is None
    assert f"could not request an eval Job for {CKPT}" in caplog.text and "asks for something else" in caplog.text
    assert [k[2] for k in api.emu.objects if k[0] == JOBS] == [NAME]


def test_another_request_for_the_same_checkpoint_is_refused(api):
    first = eval_job(datasets="imagenet1k", tasks="zeroshot")
    cluster.create([first], api_client=api.client())
    # Same Job name (run + checkpoint): reusing it would silently evaluate the first request.
    refused = (r"Job laclip/eval-cc12m-laclip-step-2000 already exists and asks for something else: delete it first "
               r"\(`kubectl delete job -n laclip eval-cc12m-laclip-step-2000`; its outputs in the store stay\)")
    for other in (dict(datasets="demo-eval", tasks="zeroshot"), dict(datasets="imagenet1k", tasks="zeroshot,fewshot"),
                  dict(datasets="imagenet1k", tasks="zeroshot", seed=1)):  # any other setting: another spec
        with pytest.raises(ClusterError, match=refused):
            cluster.create([eval_job(**other)], api_client=api.client())
    # Datasets in another order are another request too: index i of the Job evaluates datasets[i].
    cluster.create([eval_job(datasets="imagenet1k,demo-eval", tasks="zeroshot",
                             run="two")], api_client=api.client())
    with pytest.raises(ClusterError, match="already exists and asks for something else"):
        cluster.create([eval_job(datasets="demo-eval,imagenet1k", tasks="zeroshot", run="two")],
                       api_client=api.client())
    stored = api.emu.objects[JOBS, "laclip", NAME]
    assert stored["metadata"]["annotations"][REQUEST_ANNOTATION] == first["metadata"]["annotations"][REQUEST_ANNOTATION]


def test_a_create_only_account_keeps_asking_twice_harmless(api):
    """The training pods' Role may create Jobs but not read them: a 409 then leaves the Job as it is."""
    cluster.create([eval_job(datasets="imagenet1k")], api_client=api.client())
    api.emu["get", JOBS] << 403
    job = eval_job(datasets="demo-eval")
    assert cluster.create([job], api_client=api.client()) == [("Job", NAME, "unchecked")]


def point(api, tmp_path, monkeypatch) -> None:
    from tests.ops.conftest import point_kubeconfig

    point_kubeconfig(api, tmp_path, monkeypatch)


def test_cli_says_whether_it_created_the_job(api, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from laclip_cli.main import app

    point(api, tmp_path, monkeypatch)
    runner = CliRunner()
    args = ["submit", "eval", "--checkpoint", CKPT, "--datasets", "demo-eval", "--tasks", "zeroshot"]
    env = {"LACLIP_ROOT": ""}
    first = runner.invoke(app, args, env=env)
    assert first.exit_code == 0, first.output
    assert f"created Job laclip/{NAME}" in first.output
    again = runner.invoke(app, args, env=env)
    assert again.exit_code == 0, again.output
    assert f"Job laclip/{NAME} already exists (the same request): not created again" in again.stderr
    assert "created Job" not in again.output
    other = runner.invoke(app, args[:-1] + ["fewshot"], env=env)
    assert other.exit_code != 0 and isinstance(other.exception, ClusterError)
    assert f"Job laclip/{NAME} already exists and asks for something else" in str(other.exception)


def test_wait_reports_completion_and_failure(api):
    from laclip_cli.stages.eval import wait

    cfg = EvalConfig.for_checkpoint(CKPT)
    job = render(cfg)[0]
    name = cfg.job_name()
    api.emu.objects[JOBS, "laclip", name] = {**job, "status": {"succeeded": 1, "conditions": [
        {"type": "Complete", "status": "True"}]}}
    wait(name, "laclip", timeout=30, poll=0.1, api_client=api.client())
    api.emu.objects[JOBS, "laclip", name] = {**job, "status": {"failed": 3, "conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "too many retries"}]}}
    with pytest.raises(LaclipError, match="failed: BackoffLimitExceeded"):
        wait(name, "laclip", timeout=30, poll=0.1, api_client=api.client())
    # The laclip-user Role grants `get` on jobs, not on the jobs/status subresource.
    assert all(r.subresource is None for r in api.emu if r.resource is not None)
    with pytest.raises(LaclipError, match="cannot read Job laclip/eval-gone: 404"):
        wait("eval-gone", "laclip", timeout=30, poll=0.1, api_client=api.client())
