"""Training end to end: the entrypoint, resume, bad input, elastic torchrun under the launcher,
`submit train --local` (the AppDef's own command)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import open_clip
import pytest
import torch

import laclip.train.model  # noqa: F401  (registers laclip-tiny with open_clip)
from laclip.errors import EXIT_PERMANENT, DataError, UsageError
from laclip.train import checkpoint as ckpt
from laclip.train.config import TrainConfig, preset
from laclip.train.loop import plan_schedule
from laclip.train.main import main
from laclip_jobs.train import ELASTIC_ENV

from .train_helpers import write_rewrites

TINY = dict(model="laclip-tiny", batch_size=16, workers=1, log_every=2, warmup_steps=2, shuffle_buffer=32,
            tensorboard=False, rewrites="rw1")


def config(store, run, **kw) -> TrainConfig:
    return TrainConfig(run=run, root=store.url, **{**TINY, **kw})


@pytest.mark.slow
def test_train_checkpoints_resumes_and_guards_its_config(demo_copy, capsys):
    write_rewrites(demo_copy)
    cfg = config(demo_copy, "r1", steps=6, checkpoint_every=3, tensorboard=True)
    assert main(["--config", cfg.model_dump_json()]) == 0
    assert [s for s, _ in ckpt.list_steps(demo_copy, "r1")] == [3, 6]
    state = ckpt.load(demo_copy, "checkpoints/r1/step_6.pt")
    assert state["step"] == 6 and state["config"]["model"] == "laclip-tiny" and state["warmup_steps"] == 2
    assert state["data"]["positions"]["0"][1] == 6 * 16  # one worker: 96 samples consumed in epoch 0
    assert list(demo_copy.local_path("checkpoints/r1/tensorboard").glob("events.out.tfevents.*"))
    # a longer run with the same id continues from step 6 to the 8 steps now asked for, and says so
    assert main(["--config", cfg.model_copy(update={"steps": 8}).model_dump_json()]) == 0
    err = capsys.readouterr().err
    assert "run length changed (steps: 6 -> 8, epochs: 35.0 -> 35.0) from 6 to 8 steps" in err
    assert "resumed from" in err and "step_6.pt at step 6 of 8" in err
    assert [s for s, _ in ckpt.list_steps(demo_copy, "r1")] == [3, 6, 8]
    # fewer steps than the run has already taken is refused, as final (no retry can help)
    assert main(["--config", cfg.model_copy(update={"steps": 5}).model_dump_json()]) == EXIT_PERMANENT
    assert "run 'r1' is at step 8, past the 5 steps asked for" in capsys.readouterr().err
    # resuming with another model is refused, naming both
    assert main(["--config", cfg.model_copy(update={"model": "ViT-B-32"}).model_dump_json()]) == EXIT_PERMANENT
    assert "model: checkpoint has 'laclip-tiny', this run asks for 'ViT-B-32'" in capsys.readouterr().err
    # every file the run wrote is readable by the pod's other users and colleagues (not mkstemp's 0600)
    for path in (demo_copy.local_path("checkpoints/r1/step_8.pt"), demo_copy.local_path("checkpoints/r1/config.json")):
        assert path.stat().st_mode & 0o044 == 0o044, oct(path.stat().st_mode)


@pytest.mark.slow
def test_resume_skips_a_truncated_checkpoint(demo_copy, capsys):
    write_rewrites(demo_copy)
    cfg = config(demo_copy, "r2", steps=4, checkpoint_every=2, rewrites=None, augment="none")
    assert main(["--config", cfg.model_dump_json()]) == 0
    last = demo_copy.local_path("checkpoints/r2/step_4.pt")
    last.write_bytes(last.read_bytes()[:1000])
    assert main(["--config", cfg.model_dump_json()]) == 0
    err = capsys.readouterr().err
    assert "skipping unreadable checkpoint" in err and "step_2.pt at step 2" in err
    torch.load(last, weights_only=True)  # rewritten whole by the resumed run


@pytest.mark.slow
def test_resume_none_or_a_path_applies_only_until_the_run_has_checkpoints(demo_copy, capsys):
    plain = dict(checkpoint_every=2, rewrites=None, augment="none")
    assert main(["--config", config(demo_copy, "src", steps=4, **plain).model_dump_json()]) == 0
    dst = config(demo_copy, "dst", steps=6, resume="checkpoints/src/step_2.pt", **plain)
    assert main(["--config", dst.model_dump_json()]) == 0
    assert "src/step_2.pt at step 2 of 6" in capsys.readouterr().err
    # a restart passes the same config: it continues from dst's newest, not from src's step 2 or step 0
    for resume in (dst.resume, "none"):
        assert main(["--config", dst.model_copy(update={"resume": resume}).model_dump_json()]) == 0
        err = capsys.readouterr().err
        assert f"continuing from the newest, not --resume {resume}" in err and "dst/step_6.pt at step 6 of 6" in err


@pytest.mark.slow
def test_loader_randomness_is_not_replayed_on_resume(demo_copy, monkeypatch):
    """The random crops draw from torch's global generator (workers' seeds too, with workers):
    a resumed run must not crop its new samples as step 0 cropped the first ones."""
    from laclip.train.data import TrainStream

    draws = []
    setup = TrainStream._setup
    monkeypatch.setattr(TrainStream, "_setup", lambda self: (draws.append(torch.rand(4).tolist()), setup(self)))
    cfg = config(demo_copy, "rng", steps=2, checkpoint_every=1, workers=0, rewrites=None, augment="none")
    assert main(["--config", cfg.model_dump_json()]) == 0
    assert main(["--config", cfg.model_copy(update={"steps": 3}).model_dump_json()]) == 0
    assert len(draws) == 2 and draws[0] != draws[1]


@pytest.mark.slow
def test_resume_with_another_data_order_starts_the_next_epoch(demo_copy):
    """A position is a count into the order the seed and shuffle buffer decide: under another
    order it would skip samples never trained on and repeat others. (Another seed is another run: it
    continues from a checkpoint through --resume, since the run itself refuses a change of its recipe.)"""
    cfg = config(demo_copy, "order", steps=2, checkpoint_every=1, workers=0, rewrites=None, augment="none")
    assert main(["--config", cfg.model_dump_json()]) == 0
    assert main(["--config", cfg.model_copy(update={"steps": 3, "seed": 1}).model_dump_json()]) == EXIT_PERMANENT
    other = cfg.model_copy(update={"run": "order-seed-1", "steps": 3, "seed": 1, "resume": "order/step_2"})
    assert main(["--config", other.model_dump_json()]) == 0
    assert ckpt.load(demo_copy, "checkpoints/order-seed-1/step_3.pt")["data"]["positions"] == {"0": [1, 16]}


def test_schedule_caps_warmup_and_keeps_it_when_the_world_size_changes():
    cfg = preset("cc12m", run="x")  # 1 warm-up epoch of 35, 128 per GPU
    assert plan_schedule(cfg, None, 1_000_000, 8) == (34180, 977)
    state = {"config": cfg.model_dump(mode="json"), "step": 500, "total_steps": 34180, "warmup_steps": 977}
    assert plan_schedule(cfg, state, 1_000_000, 4) == (34180, 977)  # not 1954, re-planned for 4 GPUs
    old = {k: v for k, v in state.items() if k != "warmup_steps"}  # written before warm-up was stored
    assert plan_schedule(cfg, old, 1_000_000, 4) == (34180, 1954)
    # --steps 1000 on 10M samples: 9766 warm-up steps would never reach the decay
    assert plan_schedule(cfg.model_copy(update={"steps": 1000}), None, 10_000_000, 8) == (1000, 1000)


@pytest.mark.parametrize("change, message", [
    ({"model": "ViT-Nope-1"}, "unknown model 'ViT-Nope-1'"),
    ({"rewrites": "missing"}, "rewrites 'missing' of dataset 'demo'"),
    ({"dataset": "cc3m"}, "dataset 'cc3m' has no shards"),
])
def test_bad_input_fails_fast_with_a_clear_message(demo_copy, capsys, change, message):
    """Each is permanent: the entrypoint exits EXIT_PERMANENT, which every rendered Job treats as final."""
    write_rewrites(demo_copy)
    assert main(["--config", config(demo_copy, "r3", steps=2, **change).model_dump_json()]) == EXIT_PERMANENT
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err
    assert not demo_copy.exists("checkpoints/r3/config.json")  # refused before the run began


def test_rewrites_made_from_other_captions_are_refused_before_training(demo_copy, capsys):
    """A dataset downloaded again from a changed URL list gives the old keys to other images: a
    rewrite set whose recorded captions disagree with the shards' is refused, naming the rate."""
    from laclip.train.inputs import check_inputs

    differ = len(write_rewrites(demo_copy, mismatch="all"))
    assert differ > 500  # of 512 (a few neighbours share a caption)
    cfg = config(demo_copy, "moved", steps=2)
    rate = f"{differ:,} of 512 rows checked differ ({100 * differ / 512:.1f}%, more than --max-rewrite-mismatch 1%"
    with pytest.raises(DataError, match=re.escape(rate)):
        check_inputs(cfg)
    assert main(["--config", cfg.model_dump_json()]) == EXIT_PERMANENT
    captured = capsys.readouterr()
    assert f"rewrites 'rw1' were made from other captions than dataset 'demo' holds now: {rate}" in captured.err
    assert "start" not in captured.out and not demo_copy.exists("checkpoints/moved/config.json")
    assert not list(demo_copy.list("leases/"))  # not even the run's lease was taken


@pytest.mark.slow
def test_a_few_rewrites_made_from_other_captions_train_on_the_original(demo_copy, capsys):
    """Under --max-rewrite-mismatch (1%) the run trains; those samples use their own caption and
    are counted in the run's summary."""
    mismatched = write_rewrites(demo_copy, mismatch=1)
    assert len(mismatched) == 4  # 4 of 512 rows: 0.8%
    cfg = config(demo_copy, "few", steps=8, batch_size=64, checkpoint_every=8)  # one epoch: each sample once
    assert main(["--config", cfg.model_dump_json()]) == 0
    captured = capsys.readouterr()
    assert "rewrite_caption_mismatches=4" in captured.out  # the `done` event
    assert demo_copy.list("leases/few/")  # (the refused run below takes none)
    assert "trained on originals: {'rewrite_caption_mismatches': 4}" in captured.err
    # the threshold is the run's to set: at 0 the same set is refused
    strict = cfg.model_copy(update={"run": "strict", "max_rewrite_mismatch": 0.0})
    assert main(["--config", strict.model_dump_json()]) == EXIT_PERMANENT
    assert "4 of 512 rows checked differ (0.8%, more than --max-rewrite-mismatch 0%" in capsys.readouterr().err


@pytest.mark.slow
def test_loader_worker_error_reads_as_its_own_message(demo_copy, capsys):
    from laclip.data.registry import resolve_shards

    for shard in resolve_shards(demo_copy, "demo"):
        demo_copy.write_bytes(shard.tar, b"not a tar")
    cfg = config(demo_copy, "r4", steps=2, rewrites=None, augment="none", workers=1)
    assert main(["--config", cfg.model_dump_json()]) == EXIT_PERMANENT  # bad data: no retry can help
    err = capsys.readouterr().err
    assert "error: loader worker 0 found no usable sample in epoch 0 of dataset 'demo'" in err
    assert "Traceback" not in err and "Caught DataError" not in err


def test_missing_config_file_is_a_clear_error(tmp_path, capsys):
    assert main(["--config-file", str(tmp_path / "missing.json")]) == EXIT_PERMANENT
    assert f"error: cannot read config file {tmp_path}/missing.json: No such file or directory" in \
        capsys.readouterr().err
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00")  # not UTF-8 (it raised AttributeError)
    assert main(["--config-file", str(tmp_path / "binary.json")]) == EXIT_PERMANENT
    assert "error: cannot read config file" in capsys.readouterr().err
    # no config at all, or one that is not JSON: argparse's usage error, as final as the others
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == EXIT_PERMANENT
    assert main(["--config", "{not json"]) == EXIT_PERMANENT
    assert "error: --config is not JSON" in capsys.readouterr().err


@pytest.mark.slow
def test_config_file_and_set_build_the_same_config(demo_copy, tmp_path):
    """The one entrypoint convention: --config-file (what local runners pass) and --set FIELD=VALUE."""
    write_rewrites(demo_copy)
    cfg = config(demo_copy, "viafile", steps=3, checkpoint_every=10)
    (tmp_path / "cfg.json").write_text(cfg.model_dump_json())
    assert main(["--config-file", str(tmp_path / "cfg.json"), "--set", "steps=2"]) == 0
    assert [s for s, _ in ckpt.list_steps(demo_copy, "viafile")] == [2]
    assert ckpt.load(demo_copy, "checkpoints/viafile/step_2.pt")["config"]["steps"] == 2


@pytest.mark.slow
def test_multitext_training_runs(demo_copy):
    write_rewrites(demo_copy)
    cfg = config(demo_copy, "mt", steps=3, checkpoint_every=3, loss="multitext", texts_per_image=3)
    assert main(["--config", cfg.model_dump_json()]) == 0
    path = demo_copy.local_path("checkpoints/mt/step_3.pt")
    open_clip.create_model_and_transforms("laclip-tiny", pretrained=str(path))


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _tree(pid: int) -> list[int]:
    """pid's descendants, deepest first."""
    out = []
    for child in _children(pid):
        out += [*_tree(child), child]
    return out


@pytest.mark.slow
def test_elastic_restart_resumes_from_last_checkpoint(demo_copy, tmp_path):
    """Real torchrun under the pods' launcher, 2 gloo processes; SIGKILL one after a checkpoint:
    a crash is no permanent error, so torchrun restarts the group, which resumes from the newest
    checkpoint and ends at the planned step."""
    write_rewrites(demo_copy)
    total = 40
    # one owner token for the whole submission, as the CLI sets it: the restarted rank 0 may take the lease
    cfg = config(demo_copy, "elastic", steps=total, checkpoint_every=10, keep_last=10, log_every=5,
                 owner="elastic-submission")
    log = open(tmp_path / "torchrun.log", "w")
    # LACLIP_DIST_TIMEOUT_S: a survivor stuck in a collective with the killed peer errors out
    # (and torchrun restarts the group) instead of waiting out the 30-minute default;
    # ELASTIC_ENV as in the rendered pods: a fresh store per restart
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "LOGLEVEL": "INFO",
           "LACLIP_DIST_TIMEOUT_S": "20", **ELASTIC_ENV}
    proc = subprocess.Popen([sys.executable, "-m", "laclip.train.launch", "--standalone", "--nproc_per_node", "2",
                             "--max-restarts", "5", "-m", "laclip.train.main", "--config", cfg.model_dump_json()],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 90
        while not ckpt.list_steps(demo_copy, "elastic"):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "torchrun.log").read_text()
            time.sleep(0.05)
        steps_at_kill = [s for s, _ in ckpt.list_steps(demo_copy, "elastic")]
        [torchrun] = _children(proc.pid)
        workers = _children(torchrun)
        assert len(workers) == 2, workers
        os.kill(workers[1], signal.SIGKILL)
        try:
            rc = proc.wait(timeout=240)  # ~40 s on an idle 2-core machine; generous for a loaded one
        except subprocess.TimeoutExpired:
            pytest.fail("torchrun did not finish in 240 s:\n" + (tmp_path / "torchrun.log").read_text()[-6000:])
    finally:  # never leave torchrun's workers behind (they run in sessions of their own)
        for pid in [*_tree(proc.pid), proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
    out = (tmp_path / "torchrun.log").read_text()
    assert rc == 0, out
    assert total not in steps_at_kill
    # both ranks of the restarted group resume (a restart attempt can itself fail at gloo's
    # connect under heavy load; torchrun then tries again, which is what --max-restarts is for)
    resumed = [int(line.split(" at step ")[1].split()[0]) for line in out.splitlines() if "resumed from" in line]
    assert len(resumed) >= 2 and len(resumed) % 2 == 0, out
    assert all(max(steps_at_kill) <= step < total for step in resumed), (steps_at_kill, resumed)
    steps = [s for s, _ in ckpt.list_steps(demo_copy, "elastic")]
    assert steps[-1] == total and steps == sorted(set(steps))
    for step, path in ckpt.list_steps(demo_copy, "elastic"):  # every checkpoint whole and open_clip-loadable
        state = torch.load(demo_copy.local_path(path), weights_only=True)
        assert state["step"] == step and state["data"]["workers_total"] == 2
        # each rank's worker has read 16 samples a step, 256 an epoch, resumed or not (a resumed
        # rank's start positions of the other rank's workers must not overwrite theirs)
        epoch, consumed = divmod(step * 16 - 1, 256)
        assert state["data"]["positions"] == {"0": [epoch, consumed + 1], "1": [epoch, consumed + 1]}, step
        open_clip.create_model_and_transforms("laclip-tiny", pretrained=str(demo_copy.local_path(path)))
    assert '"run": "elastic"' in demo_copy.read_text("checkpoints/elastic/config.json")


@pytest.mark.slow
def test_train_here_runs_the_app_defs_command(demo_copy, tmp_path, monkeypatch):
    """`submit train --local`: the AppDef's own command (the launcher running torchrun) in a process
    group this process owns, output line by line, no TorchX scheduler and no log folder left behind."""
    from laclip_cli.stages.train import train_here

    write_rewrites(demo_copy)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    cfg = TrainConfig(preset="demo", run="local-1", root=demo_copy.url, procs_per_node=1, rewrites="rw1", steps=4,
                      batch_size=16, workers=0)
    lines: list[str] = []
    folder = train_here(cfg, echo=lines.append)
    assert folder == demo_copy.url_of("checkpoints/local-1")
    state = ckpt.load(demo_copy, "checkpoints/local-1/step_4.pt")
    assert state["config"]["rewrites"] == "rw1" and state["step"] == 4
    assert json.loads(demo_copy.read_text("checkpoints/local-1/config.json"))["model"] == "laclip-tiny"
    assert any(line.startswith("step 4/4") for line in lines), lines  # the trainer's own output, not a log file
    assert list(cwd.iterdir()) == []  # no torchx log folder
    # a run that ends on a permanent error found by the trainer (fewer steps than it has taken) says so
    lines.clear()
    with pytest.raises(UsageError, match=r"training run local-1 failed \(exit 3\)"):
        train_here(cfg.model_copy(update={"steps": 2}), echo=lines.append)
    assert sum("run 'local-1' is at step 4, past the 2 steps asked for" in line for line in lines) == 1
    # another recipe (resuming with another model) is refused here, before torchrun starts
    lines.clear()
    with pytest.raises(UsageError, match="model: checkpoint has 'laclip-tiny', this run asks for 'ViT-B-32'"):
        train_here(cfg.model_copy(update={"model": "ViT-B-32"}), echo=lines.append)
    assert lines == []
