"""Training data loader throughput, samples/s for one loader worker, vs open_clip_train's
webdataset pipeline (`open_clip_train.data.get_wds_dataset`) on the same shards, the same
image transform (64 px RandomResizedCrop) and tokenizer.

`python -m bench.train_loader [--runs 5] [--batches 48]`

Ours is measured twice: `--augment laclip` (each text drawn from the original and 4 rewrites,
joined by key from the rewrite parquets) and `--augment none`. Target: >= 1.0x open_clip_train.
A loader worker is one process on one core, so each pipeline runs in this process (DataLoader
num_workers=0, torch on 1 thread) and the clock is this process's CPU time, which other jobs on
a shared machine do not inflate much; wall-clock rates are printed beside. The clock starts
after the first batch (start-up is not loading throughput) and stops after `--batches` more.
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace

from bench._train_common import MODEL, demo_store, machine, require_peer_webdataset
from laclip import layout

BATCH = 64


def _time(loader, batches: int) -> tuple[float, float]:
    """(samples per CPU second, samples per wall second)."""
    it = iter(loader)
    next(it)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(batches):
        next(it)
    n = batches * BATCH
    return n / (time.process_time() - cpu), n / (time.perf_counter() - wall)


def ours(store, augment: str, batches: int) -> float:
    from torch.utils.data import DataLoader

    from laclip.data.registry import resolve_shards
    from laclip.train.data import TrainStream
    from laclip.train.model import image_geometry

    size, mean, std = image_geometry(MODEL)
    stream = TrainStream(store, resolve_shards(store, "demo"), dataset="demo", rewrites="bench", augment=augment,
                         texts_per_image=1, min_words=2, batch_size=BATCH, model=MODEL, image_size=size, mean=mean,
                         std=std, crop_scale=(0.9, 1.0), shuffle_buffer=1000, seed=0, rank=0, world_size=1, workers=1)
    return _time(DataLoader(stream, batch_size=None, num_workers=0), batches)


def peer(store, batches: int) -> float:
    import open_clip
    from open_clip_train.data import get_wds_dataset

    from laclip.train.model import image_geometry

    require_peer_webdataset()
    size, mean, std = image_geometry(MODEL)
    transform = open_clip.image_transform(size, is_train=True, mean=mean, std=std, aug_cfg={"scale": (0.9, 1.0)})
    folder = store.local_path(layout.dataset_folder("demo"))
    args = SimpleNamespace(train_data=f"{folder}/{{00000..00007}}.tar", train_num_samples=4096,
                           train_data_upsampling_factors=None, dataset_resampled=False, seed=0, batch_size=BATCH,
                           workers=0, world_size=1, val_data=None)
    data = get_wds_dataset(args, transform, is_train=True, epoch=0, tokenizer=open_clip.get_tokenizer(MODEL))
    return _time(data.dataloader, batches)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batches", type=int, default=48)  # 48 x 64 = 3072 of the 4096 samples
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    store = demo_store()
    results = {"laclip (augment laclip)": [], "laclip (augment none)": [], "open_clip_train": []}
    for _ in range(args.runs):  # interleaved, so that load from other processes hits all alike
        results["laclip (augment laclip)"].append(ours(store, "laclip", args.batches))
        results["laclip (augment none)"].append(ours(store, "none", args.batches))
        results["open_clip_train"].append(peer(store, args.batches))
    peer_median = statistics.median(c for c, _ in results["open_clip_train"])
    print(f"machine: {machine()}; one loader worker, batch {BATCH}, {args.batches} batches, {args.runs} runs")
    print("| loader | samples per CPU-second (median) | runs | wall samples/s (median) | ratio vs open_clip_train |")
    print("|---|---|---|---|---|")
    for name, values in results.items():
        med = statistics.median(c for c, _ in values)
        wall = statistics.median(w for _, w in values)
        print(f"| {name} | {med:.0f} | {', '.join(f'{c:.0f}' for c, _ in values)} | {wall:.0f} | "
              f"{med / peer_median:.2f}x |")


if __name__ == "__main__":
    main()
