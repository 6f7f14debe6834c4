"""Fixtures shared by every stage's tests.

`demo_store` is a session-wide local store holding the demo dataset (built once, read-only
for tests: copy it with `demo_copy` before writing). `gcs_emulator` starts the real
fake-gcs-server binary and points google-cloud-storage at it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from laclip.data.synth import synth_demo
from laclip.storage import open_store


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
