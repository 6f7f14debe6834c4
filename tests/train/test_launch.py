"""What a training pod and `submit train --local` run: `python -m laclip.train.launch`, torchrun under
a launcher that keeps permanent errors permanent. Real processes throughout: the CLI's console
script, the launcher, torchrun and its workers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from laclip.data.registry import resolve_shards
from laclip.errors import EXIT_PERMANENT
from laclip.train.config import TrainConfig

from .train_helpers import write_rewrites

LACLIP = str(Path(sys.executable).with_name("laclip"))  # the console script beside this Python
pytestmark = pytest.mark.slow  # every test runs the launcher or the CLI as a process


def _env(**extra) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "250", **extra}


def _config(store, run, **kw) -> TrainConfig:
    values = dict(model="laclip-tiny", batch_size=16, workers=0, log_every=1, warmup_steps=1, shuffle_buffer=16,
                  tensorboard=False, steps=4, checkpoint_every=2)
    return TrainConfig(run=run, root=store.url, **{**values, **kw})


def _launch(cfg: TrainConfig, max_restarts: int = 3, timeout: float = 240) -> tuple[int, str, float]:
    """(exit code, output, seconds) of the launcher running one torchrun worker on cfg."""
    cmd = [sys.executable, "-m", "laclip.train.launch", "--standalone", "--nproc_per_node", "1",
           "--max-restarts", str(max_restarts), "-m", "laclip.train.main", "--config", cfg.model_dump_json()]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(LOGLEVEL="INFO"))
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start


def _running(marker: str) -> list[str]:
    """Command lines of live processes that mention `marker` (a run id)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next((ln for ln in (entry / "status").read_text().splitlines() if ln.startswith("State:")), "")
        except OSError:
            continue
        if marker in cmdline and "zombie" not in state:
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def _gone(marker: str, within_s: float = 30) -> list[str]:
    deadline = time.monotonic() + within_s
    while (left := _running(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def test_a_permanent_error_in_a_worker_ends_the_run_without_restarts(demo_copy):
    """Every shard unreadable: only the trainer's loader finds out, after torchrun started. The
    worker's DataError is permanent, so the launcher ends torchrun at once and exits EXIT_PERMANENT
    (which the Volcano Job treats as final) instead of letting torchrun run 3 more attempts."""
    for shard in resolve_shards(demo_copy, "demo"):
        demo_copy.write_bytes(shard.tar, b"not a tar")  # the parquets stay: the dataset checks out
    cfg = _config(demo_copy, "bad-data-run", rewrites=None, augment="none")
    rc, out, seconds = _launch(cfg)
    assert rc == EXIT_PERMANENT, out[-4000:]
    assert out.count("found no usable sample in epoch 0 of dataset 'demo'") == 1, out[-4000:]  # one attempt
    assert out.count("start dataset=demo") == 1, out[-4000:]
    assert "Traceback" not in out, out[-4000:]
    assert seconds < 120, seconds  # one attempt's start-up, not four
    assert not _gone("bad-data-run"), "torchrun or a worker outlived the launcher"
    assert not list(demo_copy.list("checkpoints/bad-data-run/step_"))


def test_an_error_that_may_pass_is_left_to_torchrun_to_retry(demo_copy):
    """A failure that is not permanent (here a loss that turns NaN: LaclipError, exit 1) is
    torchrun's to retry, and once its restarts run out the launcher exits with torchrun's code."""
    cfg = _config(demo_copy, "nan-run", rewrites=None, lr=1e3, checkpoint_every=10)
    rc, out, _ = _launch(cfg, max_restarts=1)
    assert rc == 1, out[-4000:]
    # the first attempt and one restart (lr at its bound, 1e3: the loss turns NaN within a few steps)
    assert len(re.findall(r"error: loss is nan at step \d+", out)) == 2, out[-4000:]
    assert not _gone("nan-run")


def test_the_launcher_checks_the_inputs_before_torchrun_starts(demo_copy):
    """A typo'd rewrite id or a set made from other captions: one line and EXIT_PERMANENT, and no
    worker ever starts."""
    write_rewrites(demo_copy, mismatch="all")
    for rewrites, message in (("nosuchid", "rewrites 'nosuchid' of dataset 'demo'"),
                              ("rw1", "rewrites 'rw1' were made from other captions than dataset 'demo' holds now")):
        rc, out, seconds = _launch(_config(demo_copy, "checked-run", rewrites=rewrites), timeout=60)
        assert rc == EXIT_PERMANENT, out
        errors = [line for line in out.splitlines() if "error" in line.lower()]
        assert len(errors) == 1 and message in errors[0], out
        assert "start dataset" not in out and "torch.distributed" not in out and "Traceback" not in out, out
        assert seconds < 30, seconds


def _cli(*args: str, root: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([LACLIP, "--root", root, *args], capture_output=True, text=True, timeout=timeout,
                          env=_env())


def test_local_submit_with_an_unknown_rewrite_id_is_one_line(demo_copy):
    """`laclip submit train --local --rewrites nosuchid`: refused before torchrun starts, within
    seconds, with one line that names the rewrite id (and the sets there are), no traceback."""
    write_rewrites(demo_copy, rewrite_id="real-set")
    start = time.monotonic()
    proc = _cli("submit", "train", "--local", "--rewrites", "nosuchid", root=demo_copy.url)  # timeout: 20 s
    assert time.monotonic() - start < 20
    assert proc.returncode != 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and "'nosuchid'" in lines[0] and "real-set" in lines[0], lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not demo_copy.exists("checkpoints") and not demo_copy.exists("leases")  # nothing started


def test_local_submit_with_an_empty_rewrite_id_is_refused(demo_copy):
    """`--rewrites "$UNSET"` must not silently train plain CLIP."""
    write_rewrites(demo_copy)
    proc = _cli("submit", "train", "--local", "--rewrites", "", root=demo_copy.url)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "invalid --rewrites '': is empty" in lines[0], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not demo_copy.exists("checkpoints")
