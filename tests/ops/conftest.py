"""A Kubernetes API for the ops tests: kmock's KubernetesEmulator on a local port, reached by
the real `kubernetes` client through a kubeconfig file, like a user's laptop reaches GKE."""

from __future__ import annotations

import asyncio
import threading

import kmock
import pytest
import yaml


JOBS = kmock.resource("batch", "v1", "jobs")
PODS = kmock.resource("", "v1", "pods")
EVENTS = kmock.resource("", "v1", "events")
CONFIGMAPS = kmock.resource("", "v1", "configmaps")
VOLCANO = kmock.resource("batch.volcano.sh", "v1alpha1", "jobs")
WORKLOADS = kmock.resource("kueue.x-k8s.io", "v1beta1", "workloads")
JOBSETS = kmock.resource("jobset.x-k8s.io", "v1alpha2", "jobsets")
PROVISIONING = kmock.resource("autoscaling.x-k8s.io", "v1", "provisioningrequests")
TRAINJOBS = kmock.resource("trainer.kubeflow.org", "v1alpha1", "trainjobs")


class Emulator:
    """The emulator served from a background event loop; tests add objects by (resource, name)."""

    def __init__(self, volcano: bool = True, kueue: bool = True, jobset: bool = True, trainer: bool = False):
        """Kubeflow Trainer is off by default: most clusters do not run it (its tests turn it on)."""
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.volcano, self.kueue, self.jobset, self.trainer = volcano, kueue, jobset, trainer
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError("kmock emulator did not start")

    async def _main(self):
        self._stop = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        async with kmock.KubernetesEmulator() as emu, kmock.Server(emu) as server:
            self.emu, self.url = emu, str(server.url).rstrip("/")
            # Resources a cluster serves even when it holds none of them.
            for res in [JOBS, PODS, EVENTS, CONFIGMAPS] + [VOLCANO] * self.volcano + [JOBSETS] * self.jobset \
                    + [WORKLOADS, PROVISIONING] * self.kueue + [TRAINJOBS] * self.trainer:
                emu.resources[res] = {}
            # without the CRD every request for it is a 404 (kmock would serve creates)
            for res in [VOLCANO] * (not self.volcano) + [JOBSETS] * (not self.jobset) \
                    + [TRAINJOBS] * (not self.trainer):
                emu[res] << 404
            # The log subresource: each pod's log names the pod, so a test sees which one was read.
            emu["get", PODS, kmock.subresource("log")] << (
                lambda request: f"step 1 of pod {request.name}\nstep 2 of pod {request.name}\n".encode())
            self._ready.set()
            await self._stop.wait()

    def add(self, res, obj: dict) -> dict:
        meta = obj["metadata"]
        self.emu.objects[res, meta.get("namespace", "laclip"), meta["name"]] = obj
        return obj

    def names(self, res, namespace: str = "laclip") -> set[str]:
        return {name for (r, ns, name), obj in list(self.emu.objects.items())
                if r == res and ns == namespace and not obj.deleted}

    def requests(self):
        return list(self.emu)

    def close(self):
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def point_kubeconfig(emu: Emulator, tmp_path, monkeypatch) -> None:
    """A kubeconfig at $KUBECONFIG whose current context is the emulator, like a user's laptop."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emu",
        "clusters": [{"name": "emu", "cluster": {"server": emu.url}}],
        "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "dev", "namespace": "laclip"}}],
        "users": [{"name": "dev", "user": {}}],
    }))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    # The kubernetes client reads $KUBECONFIG once, at import: code that calls load_kube_config()
    # with no file would otherwise reach the emulator of an earlier test.
    from kubernetes.config import kube_config

    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """An emulated API server and a kubeconfig that points at it ($KUBECONFIG)."""
    emu = Emulator()
    point_kubeconfig(emu, tmp_path, monkeypatch)
    yield emu
    emu.close()


@pytest.fixture
def trainer_cluster(tmp_path, monkeypatch):
    """An emulated API server that also serves Kubeflow Trainer's TrainJobs."""
    emu = Emulator(trainer=True)
    point_kubeconfig(emu, tmp_path, monkeypatch)
    yield emu
    emu.close()


@pytest.fixture
def bucket(demo_store, gcs_bucket):
    """A bucket (fake-gcs-server) holding the demo dataset: what a cluster submit checks first."""
    from laclip.storage import open_store

    store = open_store(gcs_bucket)
    for path in demo_store.list("datasets/demo/"):
        store.write_bytes(path, demo_store.read_bytes(path))
    return store
