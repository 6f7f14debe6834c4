"""Does --accum-freq train like the large batch? The demo preset (laclip-tiny on the 8 x 512 demo
shapes, 360 steps, lr 2e-3, fp32, CPU) at batch 128 without accumulation and at batch 32 with
--accum-freq 4 (the same 128 samples and loss per step), and at batch 128 with another seed (the
run-to-run noise to compare the gap with). Prints the loss curves (each point the mean loss of the
20 steps before it, as the trainer logs it) and the gaps.

`python -m bench.accum_curve [--steps 360] [--log-every 20]`

The demo's image tower is a ResNet with BatchNorm, which normalises each sub-batch by its own
statistics: the accumulated run is the large batch's up to that (a ViT's would be exact,
tests/train/test_accum.py). Not a timing benchmark: the three trainings run at the same time, each its
own process, so their seconds only say how long the whole took.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from bench._train_common import demo_store, machine

RUNS = (("batch 128", dict(batch_size=128, accum_freq=1, seed=0)),
        ("batch 32 x accum 4", dict(batch_size=32, accum_freq=4, seed=0)),
        ("batch 128, seed 1", dict(batch_size=128, accum_freq=1, seed=1)))


def start(store, steps: int, log_every: int, **kw) -> subprocess.Popen:
    from laclip.train.config import TrainConfig

    cfg = TrainConfig(preset="demo", run=f"accum-{time.time_ns()}", root=store.url, steps=steps, log_every=log_every,
                      checkpoint_every=10**6, tensorboard=False, **kw)
    env = {**os.environ, "LACLIP_LOG_FORMAT": "json"}
    return subprocess.Popen([sys.executable, "-m", "laclip.train.main", "--config", cfg.model_dump_json()], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def curve(proc: subprocess.Popen) -> dict[int, float]:
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"training failed:\n{out[-2000:]}\n{err[-2000:]}")
    losses = {}
    for line in out.splitlines():
        if line.startswith("{") and '"event": "train"' in line:
            record = json.loads(line)
            losses[record["step"]] = record["loss"]
    return losses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=360)
    ap.add_argument("--log-every", type=int, default=20)
    args = ap.parse_args()
    store = demo_store()
    t0 = time.perf_counter()
    procs = {name: start(store, args.steps, args.log_every, **kw) for name, kw in RUNS}
    curves = {name: curve(proc) for name, proc in procs.items()}
    seconds = time.perf_counter() - t0
    load = os.getloadavg()
    steps = sorted(curves[RUNS[0][0]])
    base, accum, seed = (curves[n] for n, _ in RUNS)
    gap = [abs(accum[s] - base[s]) for s in steps]
    noise = [abs(seed[s] - base[s]) for s in steps]
    late = [s for s in steps if s > args.steps // 2]
    print(f"machine: {machine()}, load {load[0]:.1f} (15 min {load[2]:.1f}); demo preset, {args.steps} steps, "
          f"loss = mean of the {args.log_every} steps before")
    print("| step | " + " | ".join(n for n, _ in RUNS) + " |")
    print("|---|" + "---|" * len(RUNS))
    for s in steps:
        print(f"| {s} | " + " | ".join(f"{curves[n][s]:.4f}" for n, _ in RUNS) + " |")
    half = len(late) or 1
    print(f"mean |accum - batch 128| {statistics.mean(gap):.4f} (second half {statistics.mean(gap[-half:]):.4f}); "
          f"mean |seed 1 - seed 0| {statistics.mean(noise):.4f} (second half {statistics.mean(noise[-half:]):.4f})")
    print(f"the three trainings at once: {seconds:.0f} s")
    print(json.dumps({"curves": curves, "seconds": seconds}))


if __name__ == "__main__":
    main()
