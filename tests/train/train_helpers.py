"""Test helpers: rewrite parquets in the rewrite stage's layout, and a small zero-shot check."""

from __future__ import annotations

import io
import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq

from laclip.data.registry import resolve_shards
from laclip.data.shards import read_captions

SOURCES = ("chatgpt", "bard", "coco", "human")


def write_rewrites(store, dataset="demo", rewrite_id="rw1", skip_shards=(), drop_keys=0, short_every=0,
                   rejected=(), mismatch=0, record=True) -> set[str]:
    """rewrites/<dataset>/<id>/NNNNN.parquet with key, caption and one column per source, and the
    set's run record (config.json), as the rewrite stage lays them out.
    Rewrite j of a caption is `<source>: <caption>` so tests can tell which text was drawn.
    Sources in `rejected` hold the caption itself with a `<source>_rejected` reason, as the
    rewrite stage writes a rejected output.
    `mismatch`: rows of each shard whose rewrites were made from another caption than the shard
    holds now, as after the dataset was downloaded again from a changed URL list: the first N
    rows carry the caption (and rewrites) of the row N further on; "all" rotates every caption
    by one row. Returns the keys whose recorded caption differs from the shard's."""
    mismatched: set[str] = set()
    for shard in resolve_shards(store, dataset):
        if shard.id in skip_shards:
            continue
        rows = read_captions(store, shard)[drop_keys:]
        n = len(rows) if mismatch == "all" else mismatch
        step = 1 if mismatch == "all" else mismatch
        made_from = [(k, rows[(i + step) % len(rows)][1] if i < n else c) for i, (k, c) in enumerate(rows)]
        mismatched |= {k for (k, c), (_, was) in zip(rows, made_from) if c != was}
        cols = {"key": [k for k, _ in made_from], "caption": [c for _, c in made_from]}
        for j, src in enumerate(SOURCES):
            cols[src] = [("x" if short_every and i % short_every == 0 and j == 0 else f"{src}: {c}")
                         for i, (_, c) in enumerate(made_from)]
            if src in rejected:
                cols[src] = [c for _, c in made_from]
        for src in SOURCES:
            cols[f"{src}_rejected"] = ["echo" if src in rejected else None for _ in made_from]
        buf = io.BytesIO()
        pq.write_table(pa.table(cols), buf)
        store.write_bytes(f"rewrites/{dataset}/{rewrite_id}/{shard.id}.parquet", buf.getvalue())
    if record:
        store.write_text(f"rewrites/{dataset}/{rewrite_id}/config.json",
                         json.dumps({"dataset": dataset, "rewrite_id": rewrite_id, "sources": list(SOURCES)}) + "\n")
    return mismatched


def zero_shot_accuracy(store, checkpoint_path: str, model_name: str, eval_dataset: str = "demo-eval") -> float:
    """Top-1 zero-shot accuracy on a CLIP_benchmark-layout test split, loading the checkpoint
    through open_clip itself (the contract the eval stage relies on)."""
    import open_clip
    import torch
    from PIL import Image

    import laclip.train.model  # noqa: F401

    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=checkpoint_path)
    tokenizer = open_clip.get_tokenizer(model_name)
    model.eval()
    folder = f"datasets/{eval_dataset}"
    classes = store.read_text(f"{folder}/classnames.txt").split("\n")
    classes = [c for c in classes if c.strip()]
    templates = [t for t in store.read_text(f"{folder}/zeroshot_classification_templates.txt").split("\n") if t.strip()]
    images, labels = [], []
    with tarfile.open(fileobj=io.BytesIO(store.read_bytes(f"{folder}/test/0.tar"))) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    for name in sorted(files):
        if name.endswith(".jpg"):
            key = name[:-4]
            images.append(preprocess(Image.open(io.BytesIO(files[name])).convert("RGB")))
            labels.append(int(files[key + ".cls"]))
    with torch.no_grad():
        weights = []
        for c in classes:
            t = model.encode_text(tokenizer([tpl.replace("{c}", c) for tpl in templates]), normalize=True).mean(0)
            weights.append(t / t.norm())
        feats = model.encode_image(torch.stack(images), normalize=True)
        pred = (feats @ torch.stack(weights).T).argmax(1)
    return (pred == torch.tensor(labels)).float().mean().item()
