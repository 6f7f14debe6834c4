"""Shards shaped like a real img2dataset download, for the loader and trainer benchmarks.

img2dataset's defaults: 256 x 256 JPEGs at quality 95, resize mode "border" (the photo is fitted
inside the square and padded black, so wide and tall photos carry bars), 10,000 samples per shard,
`key.jpg` + `key.txt` + `key.json` per sample and a parquet beside the tar. The pictures are
synthetic but photo-like where decoding cost comes from: smooth colour fields, hard-edged shapes
and sensor-like noise, about 24 KB each at quality 95 (`describe` prints the mean). Captions are
alt-text-like (3 to 30 words); the rewrite set `bench` holds 4 rewrites per caption, as the
rewrite stage lays them out. Built once per root and settings, in parallel, then reused.
"""

from __future__ import annotations

import io
import json
import os
import random
import tempfile

DATASET = "img256"
WORDS = ("a the two red blue green dog cat man woman child car bus house tree beach street park city running "
         "sitting standing holding next to near under on in with of at photo picture view old new small large "
         "wooden white black sunny snowy night morning table bike boat train market garden mountain river sky "
         "people group close up portrait illustration vector background stock image interior modern vintage").split()
ASPECTS = (1.0, 4 / 3, 3 / 2, 16 / 9, 3 / 4, 2 / 3, 1.0, 4 / 3, 5 / 4, 2.0)


def caption(rng: random.Random) -> str:
    n = rng.choice((3, 5, 7, 9, 11, 14, 18, 24, 30))
    return " ".join(rng.choice(WORDS) for _ in range(n))


def photo(seed: str, size: int = 256, quality: int = 95) -> tuple[bytes, int, int]:
    """(JPEG bytes, original width, original height) of one synthetic photo, fitted as img2dataset's
    border mode fits it."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    nrng = np.random.default_rng(rng.getrandbits(64))
    ar = rng.choice(ASPECTS)
    w, h = (size, round(size / ar)) if ar >= 1 else (round(size * ar), size)
    base = nrng.integers(0, 256, (rng.randint(2, 6), rng.randint(2, 6), 3), dtype=np.uint8)
    im = Image.fromarray(base).resize((w, h), Image.BICUBIC)
    draw = ImageDraw.Draw(im)
    for _ in range(rng.randint(3, 12)):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(5, size / 3)
        fill = tuple(rng.randrange(256) for _ in range(3))
        box = (x - r, y - r * rng.uniform(0.3, 1.5), x + r, y + r)
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    noise = nrng.normal(0, rng.uniform(4, 12), (h, w, 1)) + nrng.normal(0, 3, (h, w, 3))
    im = Image.fromarray(np.clip(np.asarray(im, dtype=np.float32) + noise, 0, 255).astype(np.uint8))
    if (w, h) != (size, size):
        canvas = Image.new("RGB", (size, size))
        canvas.paste(im, ((size - w) // 2, (size - h) // 2))
        im = canvas
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    scale = rng.choice((1.5, 2, 3, 4))  # the photo before img2dataset resized it
    return buf.getvalue(), round(w * scale), round(h * scale)


def _sample(args) -> dict:
    shard, j, size = args
    rng = random.Random(f"caption:{shard}:{j}")
    key = f"{shard:05d}{j:04d}"
    jpg, ow, oh = photo(f"photo:{shard}:{j}", size)
    text = caption(rng)
    meta = {"url": f"https://images.example.com/{rng.getrandbits(48):x}.jpg", "error_message": None,
            "width": size, "height": size, "original_width": ow, "original_height": oh, "exif": "{}",
            "sha256": f"{rng.getrandbits(256):064x}"}
    return {"key": key, "caption": text, "jpg": jpg, "width": size, "height": size, "json": meta}


def real_store(root: str | None = None, shards: int = 2, per_shard: int = 10_000, size: int = 256,
               processes: int | None = None):
    """A store holding dataset `img256` (`shards` x `per_shard`) and its rewrite set `bench`."""
    import multiprocessing

    import pyarrow as pa
    import pyarrow.parquet as pq

    from laclip import layout
    from laclip.data.shards import read_captions, write_shard
    from laclip.data.registry import resolve_shards
    from laclip.storage import open_store

    root = root or os.path.join(tempfile.gettempdir(), f"laclip-bench-real-{shards}x{per_shard}-{size}")
    store = open_store(root)
    folder = layout.dataset_folder(DATASET)
    settings = {"shards": shards, "per_shard": per_shard, "size": size, "version": 1}
    marker = f"{folder}/bench-settings.json"
    if store.exists(marker) and json.loads(store.read_text(marker)) != settings:
        for path in store.list(folder + "/") + store.list(layout.rewrite_folder(DATASET, "bench") + "/"):
            store.delete(path)
    if not store.exists(marker):
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(processes or os.cpu_count() or 1) as pool:
            for i in range(shards):
                samples = pool.map(_sample, [(i, j, size) for j in range(per_shard)], chunksize=64)
                write_shard(store, folder, i, samples, create_only=False)
        for shard in resolve_shards(store, DATASET):
            rows = read_captions(store, shard)
            cols = {"key": [k for k, _ in rows], "caption": [c for _, c in rows]}
            for src in ("chatgpt", "bard", "coco", "human"):
                cols[src] = [f"{c}, rewritten in the style of {src}" for _, c in rows]
            buf = io.BytesIO()
            pq.write_table(pa.table(cols), buf)
            store.write_bytes(layout.rewrite_shard(DATASET, "bench", shard.id), buf.getvalue())
        store.write_text(layout.rewrite_record(DATASET, "bench"),
                         json.dumps({"dataset": DATASET, "rewrite_id": "bench", "engine": "bench (fixed strings)",
                                     "sources": ["chatgpt", "bard", "coco", "human"]}) + "\n")
        store.write_text(marker, json.dumps(settings) + "\n")
    return store


def describe(store) -> str:
    """One line: shards, samples, mean JPEG size (read from the first shard)."""
    from laclip.data.registry import resolve_shards
    from laclip.data.shards import iter_tar

    shards = resolve_shards(store, DATASET)
    sizes = [len(s["jpg"]) for s in iter_tar(store, shards[0].tar)]
    side = json.loads(next(iter_tar(store, shards[0].tar))["json"])["width"]
    return (f"{len(shards)} shard(s) x {len(sizes):,} samples, {side} px JPEG q95 (img2dataset border mode), "
            f"mean {sum(sizes) / len(sizes) / 1024:.1f} KB")
