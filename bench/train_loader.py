"""Training data loader throughput, samples per CPU-second of one loader worker, vs open_clip_train's
webdataset pipeline (`open_clip_train.data.get_wds_dataset`) on the same shards, the same crop
(open_clip's RandomResizedCrop, bicubic) and tokenizer.

`python -m bench.train_loader [--data real|demo] [--runs 5] [--batches 48] [--per-shard 10000]`

--data real (default): one shard shaped like an img2dataset download (bench/_real_shards.py: 10,000
samples, 256 px JPEGs at quality 95) cropped to 224 px, scale 0.5-1 (the paper's recipe).
--data demo: the 8 x 512 demo shards (64 px) cropped to 64 px, scale 0.9-1.

Ours is measured three times: `--augment laclip` (each text drawn from the original and 4 rewrites,
joined by key from the rewrite parquets), `--augment none`, and `--augment laclip` with the batch
converted to float and normalised on the CPU inside the timed loop. laclip's loader hands the trainer
uint8 crops, which it normalises on its device (a GPU in training; laclip.train.step.ImageNormalizer);
open_clip_train's converts and normalises each sample in the worker. The third row is laclip doing
that work on the CPU too, at batch level: what a CPU-only trainer pays. Target: >= 1.2x.

A loader worker is one process on one core, so each pipeline runs in this process (DataLoader
num_workers=0, torch on 1 thread) and the clock is this process's CPU time, which other jobs on a
shared machine do not inflate much; wall-clock rates are printed beside. The clock starts after the
first batch (start-up is not loading throughput) and stops after `--batches` more; runs alternate
between the pipelines, so load from other processes hits them alike.
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace

from bench._train_common import MODEL, demo_store, machine, require_peer_webdataset
from laclip import layout

BATCH = 64


def setting(data: str, per_shard: int) -> dict:
    if data == "demo":
        from laclip.train.model import image_geometry

        size, mean, std = image_geometry(MODEL)
        return dict(store=demo_store(), dataset="demo", tars="{00000..00007}", samples=4096, size=size, mean=mean,
                    std=std, scale=(0.9, 1.0), what="8 demo shards x 512, 64 px JPEGs, 64 px crops scale 0.9-1")
    import open_clip

    from bench._real_shards import DATASET, describe, real_store

    store = real_store(per_shard=per_shard)
    return dict(store=store, dataset=DATASET, tars="00000", samples=per_shard, size=224,
                mean=open_clip.OPENAI_DATASET_MEAN, std=open_clip.OPENAI_DATASET_STD, scale=(0.5, 1.0),
                what=f"the first of {describe(store)}; 224 px crops scale 0.5-1")


def _time(loader, batches: int, after=None) -> tuple[float, float]:
    """(samples per CPU second, samples per wall second)."""
    it = iter(loader)
    next(it)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(batches):
        out = next(it)
        if after is not None:
            after(out)
    n = batches * BATCH
    return n / (time.process_time() - cpu), n / (time.perf_counter() - wall)


def ours(s: dict, augment: str, batches: int, normalise: bool = False) -> tuple[float, float]:
    from torch.utils.data import DataLoader

    from laclip.data.registry import resolve_shards
    from laclip.train.step import ImageNormalizer
    from laclip.train.data import StreamSpec, TrainStream

    import torch

    shards = resolve_shards(s["store"], s["dataset"])[:1 if s["tars"] == "00000" else None]  # the peer's shards
    spec = StreamSpec(dataset=s["dataset"], rewrites="bench", augment=augment, texts_per_image=1, min_words=2,
                      batch_size=BATCH, model=MODEL, image_size=s["size"], mean=s["mean"], std=s["std"],
                      crop_scale=s["scale"], shuffle_buffer=1000, seed=0, workers=1)
    stream = TrainStream(s["store"], shards, spec)
    norm = ImageNormalizer(s["mean"], s["std"], torch.device("cpu")) if normalise else None
    return _time(DataLoader(stream, batch_size=None, num_workers=0), batches,
                 (lambda out: norm(out[0])) if norm else None)


def peer(s: dict, batches: int) -> tuple[float, float]:
    import open_clip
    from open_clip_train.data import get_wds_dataset

    require_peer_webdataset()
    transform = open_clip.image_transform(s["size"], is_train=True, mean=s["mean"], std=s["std"],
                                          aug_cfg={"scale": s["scale"]})
    folder = s["store"].local_path(layout.dataset_folder(s["dataset"]))
    args = SimpleNamespace(train_data=f"{folder}/{s['tars']}.tar", train_num_samples=s["samples"],
                           train_data_upsampling_factors=None, dataset_resampled=False, seed=0, batch_size=BATCH,
                           workers=0, world_size=1, val_data=None)
    data = get_wds_dataset(args, transform, is_train=True, epoch=0, tokenizer=open_clip.get_tokenizer(MODEL))
    return _time(data.dataloader, batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=("real", "demo"), default="real")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batches", type=int, default=48)  # 48 x 64 = 3072 samples
    parser.add_argument("--per-shard", type=int, default=10_000, help="samples of the real-shaped shard")
    args = parser.parse_args()
    import os

    import torch

    torch.set_num_threads(1)
    s = setting(args.data, args.per_shard)
    if (args.batches + 1) * BATCH > s["samples"]:
        raise SystemExit(f"--batches {args.batches} needs more than the {s['samples']} samples of the data")
    results = {"laclip (augment laclip)": [], "laclip (augment none)": [],
               "laclip (augment laclip) + float normalise on CPU": [], "open_clip_train": []}
    load = []
    for _ in range(args.runs):  # interleaved, so that load from other processes hits all alike
        load.append(os.getloadavg()[0])
        results["laclip (augment laclip)"].append(ours(s, "laclip", args.batches))
        results["laclip (augment none)"].append(ours(s, "none", args.batches))
        results["laclip (augment laclip) + float normalise on CPU"].append(ours(s, "laclip", args.batches, True))
        results["open_clip_train"].append(peer(s, args.batches))
    peer_median = statistics.median(c for c, _ in results["open_clip_train"])
    print(f"machine: {machine()}; load {min(load):.1f}-{max(load):.1f}; data: {s['what']}")
    print(f"one loader worker, batch {BATCH}, {args.batches} batches timed, {args.runs} runs")
    print("| loader | samples per CPU-second (median) | runs | wall samples/s (median) | ratio vs open_clip_train |")
    print("|---|---|---|---|---|")
    for name, values in results.items():
        med = statistics.median(c for c, _ in values)
        wall = statistics.median(w for _, w in values)
        print(f"| {name} | {med:.0f} | {', '.join(f'{c:.0f}' for c, _ in values)} | {wall:.0f} | "
              f"{med / peer_median:.2f}x |")


if __name__ == "__main__":
    main()
