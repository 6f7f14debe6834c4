"""CPU training steps/s, laclip's trainer vs `python -m open_clip_train.main` (the trainer in the
open_clip_torch wheel), same tiny model (laclip-tiny), batch 64, fp32, one loader worker, the
same shards, the same crop (RandomResizedCrop scale 0.9-1.0), AdamW, lr 2e-3, wd 0.1.

`python -m bench.train_steps [--data real|demo] [--runs 3] [--short 16] [--long 64]`

--data real (default): the 2 shards shaped like an img2dataset download (bench/_real_shards.py:
2 x 10,000 samples, 256 px JPEGs at quality 95), decoded and cropped to the model's 64 px;
--data demo: the 8 x 512 demo shards (64 px JPEGs).

Each trainer runs as its own process twice, for --short and --long steps; the per-step cost is
(long - short) / (long - short steps), which cancels start-up (imports, model creation, first
batch). Measured both in wall seconds and in CPU seconds of the process tree (getrusage of
children: the shared 2-core machine inflates wall time, CPU time much less).
Target: laclip >= 1.0x open_clip_train steps/s. laclip runs with --augment laclip and 4
rewrites per caption; open_clip_train reads only the .txt captions. open_clip_train runs unmodified:
laclip-tiny reaches it as an open_clip `local-dir:` folder (bench._train_common.peer_model).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from bench._train_common import MODEL, demo_store, machine, peer_model, require_peer_webdataset
from laclip import layout

BATCH = 64


def _run(cmd: list[str], env: dict) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def data(name: str, per_shard: int = 10_000):
    """(store, dataset, tar brace pattern)"""
    if name == "demo":
        return demo_store(), "demo", "{00000..00007}"
    from bench._real_shards import DATASET, real_store

    return real_store(per_shard=per_shard), DATASET, "{00000..00001}"


def ours(store, dataset: str, steps: int, tag: str) -> list[str]:
    from laclip.train.config import TrainConfig

    cfg = TrainConfig(run=f"bench-{tag}-{steps}-{time.time_ns()}", root=store.url, dataset=dataset, rewrites="bench",
                      model=MODEL, batch_size=BATCH, steps=steps, lr=2e-3, wd=0.1, warmup_steps=10, workers=1,
                      crop_scale=(0.9, 1.0), precision="fp32", checkpoint_every=10_000, log_every=1000,
                      tensorboard=False, shuffle_buffer=1000)
    return [sys.executable, "-m", "laclip.train.main", "--config", cfg.model_dump_json()]


def peer(store, dataset: str, tars: str, steps: int, logs: str) -> list[str]:
    folder = store.local_path(layout.dataset_folder(dataset))
    return [sys.executable, "-m", "open_clip_train.main", "--train-data", f"{folder}/{tars}.tar",
            "--train-num-samples", str(steps * BATCH), "--dataset-type", "webdataset", "--batch-size", str(BATCH),
            "--model", peer_model(), "--epochs", "1", "--workers", "1", "--lr", "2e-3", "--wd", "0.1", "--warmup", "10",
            "--precision", "fp32", "--save-frequency", "0", "--logs", logs, "--name", f"peer-{steps}-{time.time_ns()}",
            "--log-every-n-steps", "1000", "--report-to", "", "--seed", "0"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--short", type=int, default=16)
    parser.add_argument("--long", type=int, default=64)
    parser.add_argument("--data", choices=("real", "demo"), default="real")
    parser.add_argument("--per-shard", type=int, default=10_000, help="samples per real-shaped shard")
    args = parser.parse_args()
    require_peer_webdataset()
    store, dataset, tars = data(args.data, args.per_shard)
    env = {**os.environ, "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "LACLIP_LOG_FORMAT": "json"}
    logs = tempfile.mkdtemp(prefix="laclip-bench-peer-")
    per_step = {"laclip": [], "open_clip_train": []}
    load = []
    for _ in range(args.runs):  # interleaved so that other load on the machine hits both alike
        for name in per_step:
            load.append(os.getloadavg()[0])
            make = ((lambda n: ours(store, dataset, n, "s")) if name == "laclip" else
                    (lambda n: peer(store, dataset, tars, n, logs)))
            w1, c1 = _run(make(args.short), env)
            w2, c2 = _run(make(args.long), env)
            steps = args.long - args.short
            per_step[name].append(((w2 - w1) / steps, (c2 - c1) / steps))
    print(f"machine: {machine()}; load {min(load):.1f}-{max(load):.1f}; data {args.data} ({dataset}); {MODEL}, "
          f"batch {BATCH}, fp32, 1 loader worker; per-step cost from {args.long} minus {args.short} steps; "
          f"{args.runs} runs each")
    print("| trainer | steps/s (wall, median) | CPU-s per step (median) | runs (steps/s) "
          "| ratio vs open_clip_train (wall / CPU) |")
    print("|---|---|---|---|---|")
    peer_wall = statistics.median(w for w, _ in per_step["open_clip_train"])
    peer_cpu = statistics.median(c for _, c in per_step["open_clip_train"])
    for name, values in per_step.items():
        wall = statistics.median(w for w, _ in values)
        cpu = statistics.median(c for _, c in values)
        print(f"| {name} | {1 / wall:.2f} | {cpu:.3f} | {', '.join(f'{1 / w:.2f}' for w, _ in values)} | "
              f"{peer_wall / wall:.2f}x / {peer_cpu / cpu:.2f}x |")
    print(json.dumps(per_step))


if __name__ == "__main__":
    main()
