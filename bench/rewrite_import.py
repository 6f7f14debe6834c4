"""Import throughput and peak memory: `laclip rewrites import` on a generated release.

`python -m bench.rewrite_import [--rows 1000000] [--runs 3] [--kept 0.65]`

A release of `--rows` rows in the paper's format (a CSV of image path and caption, four
line-aligned rewrite files) and a dataset holding `--kept` of its captions (CC12M has lost well over
a third of its images), in shards of 10,000 samples (img2dataset's default; the import reads only
the parquets). 2 % of the release rows repeat another row's caption with other rewrites; 1 % of the
samples have a caption the release lacks. Captions
are 6-24 words from a 20,000-word vocabulary (about 100 characters), rewrites a little longer.
Each run is the stage's own entrypoint (`python -m laclip.rewrite_import.main`) in a fresh process
into a fresh rewrite id; the peak memory is that process's maximum resident set size.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

from bench._train_common import machine
from laclip import layout

SOURCES = ("chatgpt", "bard", "mscoco", "human")
PER_SHARD = 10_000


def generate(folder: str, rows: int, kept: float, seed: int = 0) -> dict:
    """The release files and a store with the dataset (made once per folder)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    done = os.path.join(folder, "done.json")
    if os.path.exists(done):
        return json.load(open(done))
    rng = random.Random(seed)
    vocab = [f"w{i:05d}"[: rng.randint(3, 8)] + str(i) for i in range(20_000)]
    captions = []
    for i in range(rows):
        if i and rng.random() < 0.02:
            captions.append(captions[rng.randrange(len(captions))])  # a repeated caption, its own rewrites
        else:
            captions.append(" ".join(rng.choices(vocab, k=rng.randint(6, 24))))
    release = os.path.join(folder, "release")
    os.makedirs(release, exist_ok=True)
    files = {"original": os.path.join(release, "bench_original.csv")}
    with open(files["original"], "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])
        for i, c in enumerate(captions):
            w.writerow([f"bench/{i:09d}.jpg", c])
    for s in SOURCES:
        files[s] = os.path.join(release, f"bench_{s}.txt")
        with open(files[s], "w", encoding="utf-8") as f:
            for i, c in enumerate(captions):
                f.write(f"a {s} style picture showing {c} in rewrite {i}\n")
    root = os.path.join(folder, "store")
    shard_dir = os.path.join(root, layout.dataset_folder("bench"))
    os.makedirs(shard_dir, exist_ok=True)
    mine = [c for c in captions if rng.random() < kept]
    for i in range(0, len(mine), 100):  # 1 % of the samples have a caption the release lacks
        mine[i] = "not released " + mine[i]
    empty_tar = io.BytesIO()
    tarfile.open(fileobj=empty_tar, mode="w").close()
    for n, start in enumerate(range(0, len(mine), PER_SHARD)):
        part = mine[start:start + PER_SHARD]
        table = pa.table({"key": [f"{n:05d}{i:04d}" for i in range(len(part))], "caption": part,
                          "status": ["success"] * len(part)})
        pq.write_table(table, os.path.join(shard_dir, f"{n:05d}.parquet"))
        with open(os.path.join(shard_dir, f"{n:05d}.tar"), "wb") as f:
            f.write(empty_tar.getvalue())
    info = {"files": files, "root": root, "rows": rows, "samples": len(mine)}
    json.dump(info, open(done, "w"))
    return info


def run_once(info: dict, rid: str, work: str) -> tuple[float, float, float, dict]:
    """(wall seconds, CPU seconds, peak RSS MiB, totals) of one import in its own process."""
    from laclip.rewrite_import.config import ImportConfig

    cfg = ImportConfig(dataset="bench", root=info["root"], original=info["files"]["original"], rewrite_id=rid,
                       sources={s: info["files"][s] for s in SOURCES}, work_dir=work)
    config = os.path.join(work, f"{rid}.json")
    with open(config, "w") as f:
        f.write(cfg.model_dump_json())
    script = ("import resource, sys, runpy; sys.argv = ['main', '--config-file', sys.argv[1]];"
              "code = 0\ntry:\n runpy.run_module('laclip.rewrite_import.main', run_name='__main__')\n"
              "except SystemExit as e:\n code = e.code\n"
              "u = resource.getrusage(resource.RUSAGE_SELF)\n"
              "print('MAXRSS', u.ru_maxrss, u.ru_utime + u.ru_stime, flush=True); sys.exit(code)")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", script, config], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"import failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    _, rss_kib, cpu = next(line.split() for line in proc.stdout.splitlines() if line.startswith("MAXRSS"))
    from laclip import layout
    from laclip.storage import open_store

    totals = json.loads(open_store(info["root"]).read_text(layout.rewrite_summary("bench", rid)))
    return wall, float(cpu), int(rss_kib) / 1024, totals


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--kept", type=float, default=0.65)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--folder", default=None)
    args = ap.parse_args()
    folder = args.folder or os.path.join(tempfile.gettempdir(), f"laclip-bench-import-{args.rows}")
    os.makedirs(folder, exist_ok=True)
    t0 = time.perf_counter()
    info = generate(folder, args.rows, args.kept)
    made = time.perf_counter() - t0
    work = tempfile.mkdtemp(prefix="laclip-bench-import-work-")
    walls, cpus, peaks, totals = [], [], [], {}
    for i in range(args.runs):
        wall, cpu, peak, totals = run_once(info, f"bench-{time.time_ns()}-{i}", work)
        walls.append(wall)
        cpus.append(cpu)
        peaks.append(peak)
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    load = os.getloadavg()[0]
    print(f"machine: {machine()}, load {load:.1f}; release {info['rows']:,} rows x 5 files, dataset "
          f"{info['samples']:,} samples in {-(-info['samples'] // PER_SHARD)} shards (generated in {made:.0f}s)")
    print(f"matched {totals['matched']:,}, missing {totals['missing']:,}, ambiguous {totals['ambiguous']:,}, "
          f"phases {totals.get('seconds')}")
    print("| what | release rows/s, wall (median) | rows per CPU-second (median) | samples/s, wall | runs, wall s "
          "| peak RSS (MiB, max) |")
    print("|---|---|---|---|---|---|")
    print(f"| rewrite import | {info['rows'] / wall:,.0f} | {info['rows'] / cpu:,.0f} | {info['samples'] / wall:,.0f} "
          f"| {', '.join(f'{w:.1f}' for w in walls)} | {max(peaks):,.0f} |")


if __name__ == "__main__":
    main()
