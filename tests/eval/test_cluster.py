"""Creating the eval Job through the real kubernetes client, against kmock's API emulator."""

from __future__ import annotations

import asyncio
import threading

import kmock
import pytest

from laclip.errors import LaclipError
from laclip.eval.config import EvalConfig
from laclip_jobs.eval import job_name, render_eval_job, submit_eval_for_checkpoint

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
