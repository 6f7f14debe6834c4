"""Streaming training data: webdataset shards (local or gs://) joined with their rewrites by key.

Every process reads a disjoint set of shard *slices*; a slice is a shard, or 1/n of one when
there are fewer shards than loader workers in the whole job. Each loader worker yields whole
batches and an infinite stream (epoch after epoch, each with its own shard order), so every
rank can always take the same number of steps. Images are decoded after the shuffle buffer,
so resuming skips already-trained samples by reading their bytes without decoding them.

Bad input is counted, never fatal and never silent: broken images (undecodable, or above the
pixel limit: laclip.data.images), unreadable shards, repeated keys (a key twice in one tar, or
in a later shard than the first that holds it: `duplicate_keys`, the copies skipped), data
shards without a readable rewrite parquet, keys without a rewrite row, and rows whose rewrites
were made from another caption than the sample's (all three trained on the original caption).
The rule for bad dataset parquets and rows is laclip.data.shards's.
Rewrites are read through the rewrite stage's own reader (laclip.rewrite.output.read_rewrites).
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from laclip.data.images import BadImage, decode_rgb, pixel_limit
from laclip.data.shards import Shard, iter_tar
from laclip.errors import DataError, NotFound
from laclip.rewrite.output import ShardRewrites, read_rewrites
from laclip.storage.base import Store

log = logging.getLogger("laclip.train")

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


def load_rewrites(store: Store, dataset: str, rewrite_id: str, shard: Shard) -> ShardRewrites | None:
    """The shard's rewrites, or None when it has none (its samples train on their originals)."""
    try:
        return read_rewrites(store, dataset, rewrite_id, shard.id)
    except NotFound:
        return None


def choose_texts(original: str, rewrites: list[str], rng: random.Random, n: int, min_words: int,
                 sources: tuple[str, ...] = (), probs: dict[str, float] | None = None) -> tuple[list[str], int]:
    """n texts drawn uniformly from {original, rewrite_1..K}, or, with `probs` (weights by source, the
    original as `caption`; `sources` names each rewrite's), by open_clip's weighted rule
    (laclip.rewrite.draw); a draw with fewer than `min_words` words falls back to the original (the
    reference code's rule). Returns the texts and how many draws fell back. With n > 1 (multi-text)
    draws are distinct while there are enough candidates."""
    pool = [original, *rewrites]
    if probs is not None:
        from laclip.rewrite.draw import ORIGINAL, weighted_order

        weights = [probs.get(ORIGINAL, 0.0), *(probs.get(s, 0.0) for s in sources)]
        order = weighted_order(pool, weights, rng)
        picks = order[:n]
        more = [(t, w) for t, w in zip(pool, weights) if w > 0]
        while len(picks) < n:  # more texts asked than the sample has: repeats, drawn by weight
            picks.append(rng.choices([t for t, _ in more], [w for _, w in more])[0] if more else original)
    else:
        picks = rng.sample(pool, n) if 1 < n <= len(pool) else [rng.choice(pool) for _ in range(n)]
    out, fell_back = [], 0
    for text in picks:
        if text is not original and len(text.split()) < min_words:
            text, fell_back = original, fell_back + 1
        out.append(text)
    return out, fell_back


@dataclass(frozen=True)
class Slice:
    shard: Shard
    part: int  # keep samples whose index in the shard % parts == part
    parts: int


def plan_slices(shards: list[Shard], total_workers: int) -> list[Slice]:
    parts = max(1, -(-total_workers // len(shards)))
    return [Slice(s, p, parts) for s in shards for p in range(parts)]


def epoch_slices(slices: list[Slice], seed: int, epoch: int, worker: int, total_workers: int) -> list[Slice]:
    order = list(slices)
    random.Random(f"slices-{seed}-{epoch}").shuffle(order)
    return order[worker::total_workers]


@dataclass(frozen=True)
class StreamSpec:
    """What a loader reads and how it draws: the data part of a training config (`of(cfg)`), in one typed
    object instead of a score of keyword arguments. Where a rank stands is the stream's own (rank, start)."""

    dataset: str
    rewrites: str | None
    augment: str
    texts_per_image: int
    min_words: int
    batch_size: int
    model: str
    image_size: int
    mean: tuple
    std: tuple
    crop_scale: tuple
    shuffle_buffer: int
    seed: int
    workers: int
    max_pixels: int | None = None
    text_probs: dict[str, float] | None = None  # the draw's weight per source (None: uniform)

    @classmethod
    def of(cls, cfg) -> "StreamSpec":
        """The spec of a TrainConfig (laclip.train.config), with its model's input geometry."""
        from laclip.train.model import image_geometry

        size, mean, std = image_geometry(cfg.model)
        return cls(cfg.dataset, cfg.rewrites, cfg.augment, cfg.texts_per_image, cfg.min_words, cfg.batch_size,
                   cfg.model, size, tuple(mean), tuple(std), tuple(cfg.crop_scale), cfg.shuffle_buffer, cfg.seed,
                   cfg.workers, cfg.max_image_pixels, cfg.text_probs)


class TrainStream(IterableDataset):
    """Yields (images [B,H,W,3] uint8, texts [B*M, ctx], info) batches forever.

    Images are the random crops as bytes, not yet normalised: the trainer converts and normalises
    the whole batch on its device (laclip.train.step.ImageNormalizer, `normalize` here on CPU).

    info = {"worker": global worker id, "epoch": e, "consumed": raw samples consumed in epoch e
    by that worker up to and including this batch, "keys": the batch's sample keys,
    "stats": Counter of new events}.
    `start` maps global worker id -> (epoch, consumed) to resume from.
    """

    def __init__(self, store: Store, shards: list[Shard], spec: StreamSpec, *, rank: int = 0, world_size: int = 1,
                 start: dict[int, tuple[int, int]] | None = None, skip_keys: dict[str, set[str]] | None = None):
        if not shards:
            raise DataError(f"dataset {spec.dataset!r} has no shards to train on")
        self.store, self.shards, self.spec = store, shards, spec
        self.dataset, self.rewrites, self.augment = spec.dataset, spec.rewrites, spec.augment
        self.m, self.min_words, self.batch_size, self.model = spec.texts_per_image, spec.min_words, spec.batch_size, \
            spec.model
        self.text_probs = spec.text_probs
        self.shuffle_buffer, self.seed = spec.shuffle_buffer, spec.seed
        self.image_size, self.mean, self.std, self.crop_scale = spec.image_size, spec.mean, spec.std, spec.crop_scale
        self.rank, self.world_size, self.workers = rank, world_size, max(1, spec.workers)
        self.total_workers = world_size * self.workers
        self.slices = plan_slices(shards, self.total_workers)
        self.start = start or {}
        self.max_pixels = pixel_limit(spec.image_size, spec.max_pixels)
        self.skip_keys = skip_keys or {}  # shard id -> keys an earlier shard holds (laclip.data.shards)

    # -- raw samples --------------------------------------------------------------------------
    def _raw(self, epoch: int, gw: int, stats: Counter) -> Iterator[tuple[dict, dict[str, list[str]] | None]]:
        for sl in epoch_slices(self.slices, self.seed, epoch, gw, self.total_workers):
            table = None
            if self.rewrites and self.augment == "laclip":
                why = "no rewrite parquet"
                try:
                    table = load_rewrites(self.store, self.dataset, self.rewrites, sl.shard)
                except DataError as exc:  # a broken parquet, or one without `key`
                    why = str(exc)
                if table is None:
                    stats["shards_without_rewrites"] += 1
                    log.warning("no rewrites for shard %s (%s): training on its original captions",
                                self.store.url_of(sl.shard.tar), why)
            seen: set[str] = set()  # over the whole tar: a repeat may fall in another slice's part
            elsewhere = self.skip_keys.get(sl.shard.id, ())
            try:
                for i, sample in enumerate(iter_tar(self.store, sl.shard.tar)):
                    key = sample["__key__"]
                    repeat = key in seen or key in elsewhere
                    seen.add(key)
                    if i % sl.parts != sl.part:
                        continue
                    if repeat:  # trained once: from its first occurrence
                        stats["duplicate_keys"] += 1
                        continue
                    yield sample, table
            except (NotFound, DataError) as exc:
                stats["unreadable_shards"] += 1
                log.warning("skipping the rest of shard: %s", exc)

    def _shuffled(self, epoch: int, gw: int, stats: Counter):
        rng = random.Random(f"buffer-{self.seed}-{epoch}-{gw}")
        buf = []
        for item in self._raw(epoch, gw, stats):
            if len(buf) < self.shuffle_buffer:
                buf.append(item)
                continue
            j = rng.randrange(len(buf))
            buf[j], item = item, buf[j]
            yield item
        rng.shuffle(buf)
        yield from buf

    # -- decoding -----------------------------------------------------------------------------
    def _setup(self):
        import open_clip

        from laclip.models import register

        register()  # laclip-tiny and the user's configs, in this process

        self.transform = pil_transform(self.image_size, self.mean, self.std, self.crop_scale)
        self.tokenizer = open_clip.get_tokenizer(self.model)

    def _decode(self, sample: dict, table, rng: random.Random, stats: Counter):
        key = sample["__key__"]
        ext = next((e for e in IMAGE_EXTS if e in sample), None)
        try:
            if ext is None:
                raise BadImage("undecodable", "no image")
            image = np.asarray(self.transform(decode_rgb(sample[ext], self.max_pixels)))
        except BadImage as exc:
            stats["broken_images"] += 1
            if exc.reason == "over_pixel_limit":
                stats["oversized_images"] += 1
            return None
        try:
            original = sample["txt"].decode("utf-8").strip() if "txt" in sample else ""
        except UnicodeDecodeError:
            original = ""
        if not original:
            stats["missing_captions"] += 1
            return None
        rewrites: list[str] = []
        sources: tuple[str, ...] = ()
        if table is not None:
            row = table.get(key)
            if row is None:
                stats["keys_without_rewrites"] += 1
            elif row[0].strip() != original:  # made from another caption: they describe another image
                stats["rewrite_caption_mismatches"] += 1
            else:
                rewrites, sources = row[1], table.origins.get(key, ())
        elif self.rewrites and self.augment == "laclip":
            stats["samples_without_rewrites"] += 1
        if self.augment == "none":
            texts, fell = [original] * self.m, 0
        else:
            texts, fell = choose_texts(original, rewrites, rng, self.m, self.min_words, sources, self.text_probs)
            stats["picked_rewrite"] += sum(t is not original for t in texts)
        stats["short_rewrite_fallbacks"] += fell
        return image, texts

    def __iter__(self):
        info = get_worker_info()
        wid = info.id if info else 0
        gw = self.rank * self.workers + wid
        if info is not None:
            torch.set_num_threads(1)  # a loader worker is one core; the trainer owns the others
        self._setup()
        epoch, skip = self.start.get(gw, (0, 0))
        stats: Counter = Counter()
        images, texts, keys = [], [], []  # a partial batch carries over into the next epoch
        while True:
            rng = random.Random(f"text-{self.seed}-{epoch}-{gw}-{skip}")
            consumed = usable = 0
            for sample, table in self._shuffled(epoch, gw, stats):
                consumed += 1
                if consumed <= skip:
                    continue
                out = self._decode(sample, table, rng, stats)
                if out is None:
                    continue
                usable += 1
                images.append(out[0])
                texts.extend(out[1])
                keys.append(sample["__key__"])
                if len(images) == self.batch_size:
                    stats["samples"] += len(images)
                    yield (torch.from_numpy(np.stack(images)), self.tokenizer(texts),
                           {"worker": gw, "epoch": epoch, "consumed": consumed, "keys": keys, "stats": dict(stats)})
                    stats.clear()  # the same Counter: _raw holds a reference to it
                    images, texts, keys = [], [], []
            if usable == 0 and skip == 0:  # else this worker would spin forever
                raise DataError(f"loader worker {gw} found no usable sample in epoch {epoch} of dataset "
                                f"{self.dataset!r} ({dict(stats) or 'its shards are empty'})")
            epoch, skip = epoch + 1, 0


def pil_transform(image_size: int, mean, std, crop_scale):
    """open_clip's training transform (RandomResizedCrop, bicubic) up to, not including, its
    per-sample float conversion and normalisation: PIL image in, PIL RGB crop out."""
    import open_clip
    from torchvision.transforms import Compose, Normalize, ToTensor

    full = open_clip.image_transform(image_size, is_train=True, mean=mean, std=std,
                                     aug_cfg={"scale": tuple(crop_scale)})
    ops = list(full.transforms)
    if not (len(ops) >= 3 and isinstance(ops[-1], Normalize) and isinstance(ops[-2], ToTensor)):
        raise RuntimeError(f"unexpected open_clip training transform: {full}")
    # the input is RGB already (convert-mode would only copy it)
    return Compose([op for op in ops[:-2] if type(op).__name__ != "MaybeConvertMode"])


def normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 [B,H,W,3] -> normalised float [B,3,H,W] on the tensor's device (the trainer does the
    same through laclip.train.step.ImageNormalizer)."""
    from laclip.train.step import ImageNormalizer

    return ImageNormalizer(mean, std, images.device)(images)


def count_samples(store: Store, shards: list[Shard], probe: int = 16,
                  unreadable: dict[str, str] | None = None) -> int:
    """Samples in the dataset from the parquets: all of them for small datasets, else an
    even sample of `probe` shards scaled up (reading 40k parquets at start-up is too slow).
    A parquet that cannot be read is left out (its reason goes into `unreadable`) and the count
    is scaled from the readable ones: the trainer reads the tars, not the parquets."""
    from laclip.data.shards import read_captions

    picks = shards if len(shards) <= probe else shards[:: max(1, len(shards) // probe)][:probe]
    counted, readable = 0, 0
    for shard in picks:
        try:
            counted += len(read_captions(store, shard))
            readable += 1
        except (DataError, NotFound) as exc:
            if unreadable is not None:
                unreadable[shard.id] = str(exc)
    if not readable:
        return 0
    return round(counted * len(shards) / readable)
