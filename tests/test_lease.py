"""One owner per training run: the lease on a folder and on gs://, and `submit train --local` ending
its whole process tree on SIGHUP and when the CLI itself is killed, so that the README's "run
the same command again" never puts two trainers on one run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from laclip.errors import LeaseHeld
from laclip.lease import Lease
from laclip.storage import open_store

LACLIP = str(Path(sys.executable).parent / "laclip")


@pytest.fixture(params=["folder", "gcs"])
def store(request, tmp_path):
    if request.param == "folder":
        return open_store(str(tmp_path / "root"))
    return open_store(request.getfixturevalue("gcs_bucket") + "/laclip")


def test_a_second_owner_is_refused_while_the_first_is_alive(store):
    first = Lease(store, "r1", "submit-a", timeout_s=60).acquire()
    with pytest.raises(LeaseHeld, match=r"run 'r1' is being trained by pid \d+ on .*alive \d+s ago"):
        Lease(store, "r1", "submit-b", timeout_s=60).acquire()
    # the same submission restarting (a pod restarted by its Job, torchrun's elastic restart) takes it
    again = Lease(store, "r1", "submit-a", timeout_s=60).acquire()
    assert again.seq == first.seq + 1
    with pytest.raises(LeaseHeld, match="taken over"):
        first.check()  # the older holder learns it lost the run and writes nothing more
    again.release()
    third = Lease(store, "r1", "submit-c", timeout_s=60).acquire()  # released: free for anyone
    third.check()


def test_a_stale_lease_is_taken_over_naming_the_old_holder(store, caplog):
    old = Lease(store, "r2", "submit-a", timeout_s=5).acquire()
    # the holder stopped refreshing long ago (its last refresh is older than the timeout)
    alive = json.loads(store.read_text(old._path(old.seq, "alive")))
    alive["refreshed"] -= 60
    store.write_text(old._path(old.seq, "alive"), json.dumps(alive))
    with caplog.at_level("WARNING", logger="laclip.lease"):
        Lease(store, "r2", "submit-b", timeout_s=5).acquire()
    assert "took over run 'r2' from pid" in caplog.text and "not refreshed for" in caplog.text


def test_racing_takers_get_one_lease(store):
    won, lost = [], []

    def take(i):
        try:
            won.append(Lease(store, "r3", f"submit-{i}", timeout_s=60).acquire())
        except LeaseHeld:
            lost.append(i)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(lost) == 5


def test_a_lease_of_a_dead_process_on_this_host_is_free_at_once(tmp_path):
    store = open_store(str(tmp_path))
    proc = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True)  # the pid of a shell now gone
    lease = Lease(store, "r4", "submit-a", timeout_s=3600).acquire()
    record = json.loads(store.read_text(lease._path(lease.seq, "json")))
    record["pid"] = int(proc.stdout)  # a process that has exited
    store.write_text(lease._path(lease.seq, "json"), json.dumps(record))
    Lease(store, "r4", "submit-b", timeout_s=3600).acquire()


# -- the local runner's process tree -----------------------------------------------------------
def _processes_of(marker: str) -> list[int]:
    """Processes whose command line holds `marker` (the run id is in every trainer's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmd:
                found.append(int(entry.name))
    return found


def _start_training(root: Path, run: str, steps: int) -> subprocess.Popen:
    env = {**os.environ, "LACLIP_ROOT": str(root)}
    return subprocess.Popen([LACLIP, "submit", "train", "--local", "--run", run, "--steps", str(steps),
                             "--checkpoint-every", "5", "--workers", "0", "--batch-size", "16"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_for(predicate, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _gone(marker: str) -> bool:
    return not _processes_of(marker)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", ["SIGHUP", "SIGKILL"])
def test_the_local_trainer_ends_with_the_cli(demo_copy, how):
    root = Path(demo_copy.url)
    run = f"owner-{how.lower()}"
    cli = _start_training(root, run, steps=100_000)
    lease_dir = root / "leases" / run
    _wait_for(lambda: lease_dir.is_dir() and any(lease_dir.glob("*.alive")), what="the trainer to take its lease")
    trainers = [p for p in _processes_of(run) if p != cli.pid]
    assert trainers, "no trainer process found"
    os.kill(cli.pid, getattr(signal, how))  # a dropped ssh session, or the CLI killed outright
    cli.wait(60)
    _wait_for(lambda: _gone(run), timeout=60, what=f"every process of {run} to end after {how}")
    # the same command again takes the run over (its holder is gone) and finishes it
    again = subprocess.run([LACLIP, "submit", "train", "--local", "--run", run, "--steps", "3", "--workers", "0",
                            "--batch-size", "16"], env={**os.environ, "LACLIP_ROOT": str(root)},
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _gone(run)


@pytest.mark.slow
def test_a_second_live_trainer_on_the_same_run_refuses(demo_copy):
    root = Path(demo_copy.url)
    run = "owner-twice"
    first = _start_training(root, run, steps=100_000)
    try:
        lease_dir = root / "leases" / run
        _wait_for(lambda: lease_dir.is_dir() and any(lease_dir.glob("*.alive")), what="the first trainer's lease")
        second = subprocess.run([LACLIP, "submit", "train", "--local", "--run", run, "--steps", "3", "--workers",
                                 "0"], env={**os.environ, "LACLIP_ROOT": str(root)}, capture_output=True,
                                text=True, timeout=300)
        assert second.returncode != 0
        assert f"run '{run}' is being trained by pid" in second.stdout + second.stderr
        assert "Traceback" not in second.stdout + second.stderr
        assert first.poll() is None  # the first one trains on, untouched
    finally:
        os.killpg(first.pid, signal.SIGTERM)
        first.wait(60)
    _wait_for(lambda: _gone(run), timeout=60, what="the first trainer to end")
