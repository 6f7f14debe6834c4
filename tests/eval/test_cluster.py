"""Creating the eval Job through the real kubernetes client, against kmock's API emulator."""

from __future__ import annotations

import asyncio
import threading

import kmock
import pytest
import yaml

from laclip.errors import LaclipError
from laclip.eval.config import EvalConfig
from laclip_jobs.eval import create_job, job_name, render_eval_job, submit_eval_for_checkpoint

JOBS = kmock.resource("batch", "v1", "jobs")


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


def test_training_hook_creates_the_job_once(api):
    name = submit_eval_for_checkpoint(CKPT, datasets=["imagenet1k", "demo-eval"], api_client=api.client())
    assert name == "eval-cc12m-laclip-step-2000"
    stored = api.emu.objects[JOBS, "laclip", name]
    assert stored["spec"]["completionMode"] == "Indexed"
    assert stored["metadata"]["labels"]["laclip.dev/run"] == "cc12m-laclip"
    # A second request for the same checkpoint is not an error and makes no second Job.
    assert submit_eval_for_checkpoint(CKPT, datasets=["imagenet1k", "demo-eval"], api_client=api.client()) == name
    assert [k for k in api.emu.objects if k[0] == JOBS] == [(JOBS, "laclip", name)]
    # The same datasets in another order are the same request.
    assert submit_eval_for_checkpoint(CKPT, datasets=["demo-eval", "imagenet1k"], api_client=api.client()) == name


def test_another_request_for_the_same_checkpoint_is_refused(api):
    submit_eval_for_checkpoint(CKPT, datasets=["imagenet1k"], tasks="zeroshot", api_client=api.client())
    # Same Job name (run + checkpoint): reusing it would silently evaluate the first request.
    with pytest.raises(LaclipError, match=r"Job laclip/eval-cc12m-laclip-step-2000 already evaluates this checkpoint "
                                          r"with datasets imagenet1k, not demo-eval: delete it first "
                                          r"\(`kubectl delete job -n laclip eval-cc12m-laclip-step-2000`"):
        submit_eval_for_checkpoint(CKPT, datasets=["demo-eval"], tasks="zeroshot", api_client=api.client())
    with pytest.raises(LaclipError, match="with tasks zeroshot, not zeroshot,fewshot"):
        submit_eval_for_checkpoint(CKPT, datasets=["imagenet1k"], tasks="zeroshot,fewshot", api_client=api.client())


def test_a_create_only_account_keeps_asking_twice_harmless(api):
    """The training pods' Role may create Jobs but not read them: a 409 then leaves the Job as it is."""
    submit_eval_for_checkpoint(CKPT, datasets=["imagenet1k"], api_client=api.client())
    api.emu["get", JOBS] << 403
    job = render_eval_job(EvalConfig.for_checkpoint(CKPT, datasets="demo-eval"))[0]
    assert create_job(job, api.client()) == ("eval-cc12m-laclip-step-2000", "unchecked")


def test_cli_says_whether_it_created_the_job(api, tmp_path):
    from typer.testing import CliRunner

    from laclip_cli.main import app

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
        "clusters": [{"name": "kmock", "cluster": {"server": api.url}}],
        "users": [{"name": "kmock", "user": {"token": "t"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock"}}]}))
    runner = CliRunner()
    args = ["submit", "eval", "--checkpoint", CKPT, "--datasets", "demo-eval", "--tasks", "zeroshot"]
    env = {"KUBECONFIG": str(kubeconfig), "LACLIP_ROOT": ""}
    first = runner.invoke(app, args, env=env)
    assert first.exit_code == 0, first.output
    assert "created Job laclip/eval-cc12m-laclip-step-2000" in first.output
    again = runner.invoke(app, args, env=env)
    assert again.exit_code == 0, again.output
    assert "Job laclip/eval-cc12m-laclip-step-2000 already exists (same request): not created again" in again.output
    assert "created Job" not in again.output
    other = runner.invoke(app, args[:-1] + ["fewshot"], env=env)
    assert other.exit_code != 0 and "already evaluates this checkpoint with tasks zeroshot" in str(other.exception)


def test_wait_reports_completion_and_failure(api):
    from laclip_cli.submit_eval import _wait

    cfg = EvalConfig.for_checkpoint(CKPT)
    job = render_eval_job(cfg)[0]
    name = job_name(cfg)
    api.emu.objects[JOBS, "laclip", name] = {**job, "status": {"succeeded": 1, "conditions": [
        {"type": "Complete", "status": "True"}]}}
    _wait(name, "laclip", timeout=30, poll=0.1, api_client=api.client())
    api.emu.objects[JOBS, "laclip", name] = {**job, "status": {"failed": 3, "conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "too many retries"}]}}
    with pytest.raises(LaclipError, match="failed: BackoffLimitExceeded"):
        _wait(name, "laclip", timeout=30, poll=0.1, api_client=api.client())
    # The laclip-user Role grants `get` on jobs, not on the jobs/status subresource.
    assert all(r.subresource is None for r in api.emu if r.resource is not None)
    with pytest.raises(LaclipError, match="cannot read Job laclip/eval-gone: 404"):
        _wait("eval-gone", "laclip", timeout=30, poll=0.1, api_client=api.client())
