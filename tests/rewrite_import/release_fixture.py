"""A release written exactly in the format of the LaCLIP paper's published files, made from a
dataset's captions: `<dataset>_original.csv` (rows of image path and caption, written by Python's
csv module) and four line-aligned `<dataset>_{chatgpt,bard,mscoco,human}.txt` (one rewrite per
line, line i for row i of the CSV).

Rewrite j of release row i reads `<source> r<i>: <caption>`, so a test can tell from a drawn text
which release row it came from. The release differs from the download as a real one does:
`drop` rows of the download are absent (dead links), `extra` captions no sample has, rows are in
another order, and `duplicate` captions appear twice with different rewrites.
"""

from __future__ import annotations

import csv
import gzip
import random
from pathlib import Path

from laclip.data.registry import resolve_shards
from laclip.data.shards import read_captions

SOURCES = ("chatgpt", "bard", "mscoco", "human")


def write_release(store, folder: Path, dataset: str = "demo", drop: int = 20, extra: int = 15, duplicate: int = 10,
                  seed: int = 0, gz: bool = False, spaces: bool = True) -> dict:
    """Write the release files into `folder`; returns {"files": {...}, "rows": [(image, caption)], "dropped": set}."""
    rng = random.Random(seed)
    captions = [c for shard in resolve_shards(store, dataset) for _, c in read_captions(store, shard)]
    order = list(range(len(captions)))
    dropped = set(rng.sample(order, drop))
    kept = [i for i in order if i not in dropped]
    rows = [captions[i] for i in kept]
    rows += [rows[i] for i in rng.sample(range(len(rows)), duplicate)]  # a second row, other rewrites
    rows += [f"a caption no sample has, number {k}" for k in range(extra)]
    rng.shuffle(rows)
    if spaces:  # the CSV was made from another copy of the list: white space differs on some rows
        rows = [f"  {c.replace(' ', '  ')} " if i % 7 == 0 else c for i, c in enumerate(rows)]
    folder.mkdir(parents=True, exist_ok=True)
    opener = (lambda p: gzip.open(p, "wt", encoding="utf-8", newline="")) if gz else \
        (lambda p: open(p, "w", encoding="utf-8", newline=""))
    suffix = ".gz" if gz else ""
    files = {"original": folder / f"{dataset}_original.csv{suffix}"}
    with opener(files["original"]) as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])  # the release's loader skips it: "image" is no image path
        images = [f"{dataset}/{i:08d}.jpg" for i in range(len(rows))]
        for image, caption in zip(images, rows):
            w.writerow([image, caption])
    for s in SOURCES:
        files[s] = folder / f"{dataset}_{s}.txt{suffix}"
        with opener(files[s]) as f:
            for i, caption in enumerate(rows):
                f.write(f"{s} r{i}: {' '.join(caption.split())}\n")
    return {"files": {k: str(v) for k, v in files.items()}, "rows": list(zip(images, rows)),
            "dropped": {captions[i] for i in dropped}}
