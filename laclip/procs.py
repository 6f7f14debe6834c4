"""Child processes that never outlive their parent: the local runners' workers and torchrun, and
torchrun under the training launcher in a pod.

Each child starts in a process group of its own (so one signal reaches it and everything it
started) with a parent-death signal (Linux prctl PR_SET_PDEATHSIG): when the parent dies, even
by SIGKILL, the child gets SIGTERM. `Group` ends every child it started on SIGHUP, SIGTERM and
SIGINT and when its block is left, so a dropped ssh session or a Ctrl-C leaves nothing running.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import threading

PR_SET_PDEATHSIG = 1
PYTHON_ENV = {"PYTHONSAFEPATH": "1"}  # `python -m` must not import a ./laclip/ from the current folder
# A DataLoader worker hands its tensors over by file descriptor, through a Unix socket that multiprocessing
# binds at <temp dir>/pymp-XXXXXXXX/listener-XXXXXXXX. A path over 107 bytes fails to bind in the worker's
# queue thread: the batch is dropped with a traceback and the trainer waits for it forever.
SOCKET_PATH_MAX = 107
SOCKET_NAME = len("/pymp-xxxxxxxx/listener-xxxxxxxx")


def die_with_parent(parent: int | None = None) -> None:
    """Ask the kernel to send this process SIGTERM when its parent ends (Linux; elsewhere nothing)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if parent is not None and os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def check_worker_tmpdir(workers: int) -> None:
    """Refuse, in one line, to start DataLoader workers whose batches could not reach this process."""
    if not workers:
        return
    import torch.multiprocessing

    if torch.multiprocessing.get_sharing_strategy() != "file_descriptor":
        return
    from laclip.errors import UsageError

    tmp = tempfile.gettempdir()
    room = SOCKET_PATH_MAX - SOCKET_NAME
    if len(os.fsencode(tmp)) > room:
        raise UsageError(f"the temporary folder {tmp} is {len(os.fsencode(tmp))} bytes long: data loader workers "
                         f"pass batches through a socket under it, which needs it at most {room} bytes long; "
                         "set TMPDIR to a shorter folder (or --workers 0)")


def start(cmd: list[str], **popen) -> subprocess.Popen:
    """Popen in a new session (its own process group) that dies with this process."""
    parent = os.getpid()
    return subprocess.Popen(cmd, start_new_session=True, preexec_fn=lambda: die_with_parent(parent), **popen)


def stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM to the child's whole group, SIGKILL after `grace_s`; returns once it is gone."""
    if proc.poll() is not None:
        _kill_group(proc.pid, signal.SIGKILL)  # the leader is gone; make sure its group is too
        return
    _kill_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        pass
    _kill_group(proc.pid, signal.SIGKILL)
    proc.wait()


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL the child's group at once (its own children die with it: they set die_with_parent)."""
    _kill_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Interrupted(Exception):
    """A stop signal arrived; `signum` is which one."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Group:
    """Children started through `start` that all end with the block:

        with Group() as group:
            proc = group.start([...])
            ...
    SIGHUP, SIGTERM and SIGINT raise Interrupted in the main thread (the block's exit then stops
    every child); the previous handlers come back when the block is left."""

    SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)

    def __init__(self, grace_s: float = 10.0):
        self.grace_s = grace_s
        self.children: list[subprocess.Popen] = []
        self._previous: dict = {}

    def start(self, cmd: list[str], **popen) -> subprocess.Popen:
        proc = start(cmd, **popen)
        self.children.append(proc)
        return proc

    def _raise(self, signum, _frame):
        raise Interrupted(signum)

    def __enter__(self) -> "Group":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._raise)
        return self

    def __exit__(self, *exc) -> None:
        for sig in self.SIGNALS:  # a second signal while stopping must not interrupt the stopping
            if sig in self._previous:
                signal.signal(sig, signal.SIG_IGN)
        try:
            for proc in self.children:
                stop(proc, self.grace_s)
        finally:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
