"""The rendered JobSet's pods, run as two local processes: the container's exact command and
environment taken from the JobSet, expanded as the kubelet expands them, with what Kubernetes adds
(JOB_COMPLETION_INDEX from the Indexed Job; pod 0's DNS name resolving to this machine). Two
"nodes" of one gloo process each meet at the c10d rendezvous the rendering names, train and
checkpoint: the rendering starts torchrun correctly."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from laclip.train import checkpoint as ckpt
from laclip.train.config import TrainConfig
from laclip_jobs.backends import jobset
from laclip_jobs.train import render

from .train_helpers import write_rewrites


def kubelet_expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's expansion of command and env values: `$(NAME)` becomes NAME's value when NAME
    is defined (else it stays as written), and `$$` becomes `$`."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


def pod_process(container: dict, index: int, rdzv_host_ip: str) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) of pod `index`'s container, as the kubelet would start it."""
    env: dict[str, str] = {}
    for var in container["env"]:  # each value may refer to the variables before it
        env[var["name"]] = kubelet_expand(var["value"], env)
    env["JOB_COMPLETION_INDEX"] = str(index)  # the Job controller adds it to Indexed Job pods
    # pod 0's DNS name (<jobset>-main-0-0.<subdomain>) is what every pod resolves to reach node 0;
    # here both "nodes" are this machine
    assert env[jobset.RANK0_ENV].endswith(".jobset-cpu") and env[jobset.RANK0_ENV].startswith("jobset-cpu-main-0-0")
    env[jobset.RANK0_ENV] = rdzv_host_ip
    argv = [kubelet_expand(arg, env) for arg in container["command"]]
    # the image's PATH finds its python; here it is this venv's
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), "/usr/bin", "/bin"])
    return argv, env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_the_jobsets_two_pods_meet_train_and_checkpoint(demo_copy, tmp_path):
    write_rewrites(demo_copy)
    cfg = TrainConfig(preset="demo", run="jobset-cpu", root=demo_copy.url, rewrites="rw1", owner="one-submission",
                      nodes="2", procs_per_node=1, batch_size=8, workers=0, steps=2, checkpoint_every=1, log_every=1,
                      warmup_steps=1, shuffle_buffer=16, tensorboard=False, rdzv_port=free_port())
    (js,) = render(cfg)
    assert js["spec"]["replicatedJobs"][0]["template"]["spec"]["completions"] == 2
    [container] = jobset.pod_templates(js)[0]["spec"]["containers"]
    logs, procs = [], []
    try:
        for index in (0, 1):
            argv, env = pod_process(container, index, "127.0.0.1")
            logs.append(open(tmp_path / f"pod-{index}.log", "w+"))
            procs.append(subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=logs[-1], stderr=subprocess.STDOUT,
                                          start_new_session=True))
        deadline = time.monotonic() + 240  # ~30 s on an idle 2-core machine; generous for a loaded one
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            if any(p.poll() not in (None, 0) for p in procs):  # one pod failed: the other would wait for it
                break
            time.sleep(0.2)
    finally:  # never leave a pod's torchrun or workers behind
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    out = ["".join(open(f.name).readlines()) for f in logs]
    for f in logs:
        f.close()
    assert [p.returncode for p in procs] == [0, 0], "\n----\n".join(o[-4000:] for o in out)
    assert any('"world_size": 2' in o for o in out), out[0][-3000:]
    steps = [s for s, _ in ckpt.list_steps(demo_copy, "jobset-cpu")]
    assert steps == [1, 2]
    state = torch.load(demo_copy.local_path(ckpt.list_steps(demo_copy, "jobset-cpu")[-1][1]), weights_only=True)
    assert state["step"] == 2 and state["data"]["workers_total"] == 2  # two ranks, one per "node"
