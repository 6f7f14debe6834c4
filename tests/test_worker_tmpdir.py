"""DataLoader workers pass batches by file descriptor over a Unix socket under the temporary folder: a
folder too long for a socket path would drop every batch and leave the trainer waiting forever, so
laclip refuses it in one line before starting workers (laclip.procs.check_worker_tmpdir)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid

import pytest

from laclip.errors import UsageError
from laclip.procs import SOCKET_NAME, SOCKET_PATH_MAX, check_worker_tmpdir

ROOM = SOCKET_PATH_MAX - SOCKET_NAME


@pytest.fixture
def folder_of_length():
    made = []

    def make(n: int) -> str:
        base = f"/tmp/t{uuid.uuid4().hex[:8]}"
        path = base + "/" + "a" * (n - len(base) - 1)
        os.makedirs(path)
        made.append(base)
        assert len(path) == n
        return path

    yield make
    for base in made:
        shutil.rmtree(base, ignore_errors=True)


def test_the_bound_is_the_socket_paths(folder_of_length):
    """A folder of ROOM bytes leaves a listener path that binds; one byte more does not."""
    for n, binds in ((ROOM, True), (ROOM + 1, False)):
        folder = folder_of_length(n)
        os.mkdir(os.path.join(folder, "pymp-xxxxxxxx"))
        path = os.path.join(folder, "pymp-xxxxxxxx", "listener-xxxxxxxx")
        with socket.socket(socket.AF_UNIX) as s:
            if binds:
                s.bind(path)
            else:
                with pytest.raises(OSError, match="too long"):
                    s.bind(path)


def test_a_long_temporary_folder_is_refused_in_one_line(folder_of_length, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", folder_of_length(ROOM + 1))
    with pytest.raises(UsageError, match=f"bytes long: .* at most {ROOM} bytes long; set TMPDIR"):
        check_worker_tmpdir(1)
    check_worker_tmpdir(0)  # no workers, no socket
    monkeypatch.setattr(tempfile, "tempdir", folder_of_length(ROOM))
    check_worker_tmpdir(2)


LOADER = """
import torch
from torch.utils.data import DataLoader, IterableDataset
class D(IterableDataset):
    def __iter__(self):
        yield from (torch.zeros(8, 3, 16, 16) for _ in range(3))
print(sum(1 for _ in DataLoader(D(), batch_size=None, num_workers=1)))
"""


@pytest.mark.slow
def test_a_real_loader_delivers_at_the_longest_folder_allowed(folder_of_length):
    env = {**os.environ, "TMPDIR": folder_of_length(ROOM)}
    proc = subprocess.run([sys.executable, "-c", LOADER], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "3", proc.stderr[-2000:]
