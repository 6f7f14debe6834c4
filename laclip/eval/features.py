"""Load a checkpoint as an open_clip model and compute frozen features, cached in the store.
`cfg` below is an EvalConfig (laclip.eval.config), `ds` an EvalDataset (laclip.eval.datasets).

Image features are computed once per (checkpoint, dataset, split) and written create-only to
`evals/<run>/<checkpoint>/features/<dataset>/<split>.npz`; every task reads them from there.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
import zipfile
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from laclip.data.images import BadImage, decode_rgb, pixel_limit
from laclip.errors import AlreadyExists, DataError, NotFound, UsageError
from laclip.storage import open_store
from laclip.storage.base import Store

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    model: torch.nn.Module
    preprocess: object
    tokenizer: object
    name: str
    device: torch.device
    amp: bool

    def autocast(self):
        if not self.amp:
            return nullcontext()
        dtype = torch.bfloat16 if self.device.type == "cpu" or torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def fetch_checkpoint(cfg, workdir: str) -> str:
    """A local file for the checkpoint (`.pt` may be left off), downloading it when remote."""
    from laclip.eval.sources import checkpoint_file

    store, path = checkpoint_file(cfg)
    local = store.local_path(path)
    if local is not None:
        return str(local)
    dest = os.path.join(workdir, os.path.basename(path))
    store.download_file(path, dest)
    return dest


def load_model(cfg) -> LoadedModel:
    """The checkpoint as an open_clip model in eval mode; a downloaded copy is deleted once loaded."""
    import shutil

    workdir = tempfile.mkdtemp(prefix="laclip-eval-")
    try:
        return _load(cfg, fetch_checkpoint(cfg, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _load(cfg, path: str) -> LoadedModel:
    import open_clip

    from laclip.models import register

    register()  # laclip's own architectures and $LACLIP_MODEL_CONFIGS
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise DataError(f"checkpoint {cfg.checkpoint_url} cannot be read by torch.load: {exc}") from None
    config = ckpt.get("config") if isinstance(ckpt, dict) else None
    saved = config.get("model") if isinstance(config, dict) else None
    del ckpt  # open_clip reads the file again; do not hold two copies of the weights
    name = cfg.model or saved
    if not name:
        raise UsageError(f"checkpoint {cfg.checkpoint_url} does not name its model (no config.model): pass --model")
    if name not in open_clip.list_models():
        raise UsageError(f"unknown open_clip model {name!r} for checkpoint {cfg.checkpoint_url}")
    device = pick_device(cfg.device)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=path, device=device)
    except (RuntimeError, AssertionError, KeyError, ValueError) as exc:
        # open_clip reports a shape mismatch as a RuntimeError (load_state_dict) or as an assertion
        # (positional-embedding resizing), depending on which tensor differs first.
        detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line),
                      str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        what = f"saved as {saved!r}" if saved and saved != name else "of another architecture"
        raise DataError(f"checkpoint {cfg.checkpoint_url} does not fit model {name!r}: its weights are {what} "
                        f"({detail})") from None
    model.eval()
    return LoadedModel(model, preprocess, open_clip.get_tokenizer(name), name, device, cfg.precision == "amp")


class _SplitImages(torch.utils.data.IterableDataset):
    """Decoded, preprocessed images of one split; DataLoader workers share it (by shard or by sample)."""

    def __init__(self, ds, split: str, preprocess, max_pixels: int):
        self.ds, self.split, self.preprocess, self.max_pixels = ds, split, preprocess, max_pixels

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        ds = self.ds
        if info is not None:
            # A forked worker must not share the parent's HTTP connections (gs://): open its own.
            ds = type(ds)(ds.name, open_store(ds.store.url), ds.folder)
            ds.__dict__["files"] = self.ds.files  # the listing is already known
        for s in ds.iter_samples(self.split, worker, workers):
            try:  # a benchmark is scored on every image: one that cannot be used ends the evaluation
                image = decode_rgb(s.image, self.max_pixels)
            except BadImage as exc:
                what = "is too large" if exc.reason == "over_pixel_limit" else "cannot be decoded"
                hint = "; raise it with --set max_image_pixels=N" if exc.reason == "over_pixel_limit" else ""
                raise DataError(f"image {s.key!r} in {ds.url(self.split)} {what}: {exc}{hint}") from None
            label = -1 if s.label is None else s.label
            yield s.index, self.preprocess(image), label, s.key, s.captions


def _collate(batch):
    idx, images, labels, keys, captions = zip(*batch)
    return torch.tensor(idx), torch.stack(images), torch.tensor(labels), list(keys), list(captions)


@dataclass
class Features:
    features: np.ndarray  # (n, d) float32, L2-normalised
    labels: np.ndarray  # (n,) int64, -1 where the sample has no .cls
    keys: list[str]
    captions: list[list[str]]


def input_size(lm: LoadedModel) -> int:
    """The side of the square images the model sees."""
    size = getattr(getattr(lm.model, "visual", None), "image_size", 224)
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def compute_image_features(lm: LoadedModel, ds, split: str, batch_size: int = 256,
                           workers: int = 0, max_pixels: int | None = None) -> Features:
    from laclip.procs import check_worker_tmpdir

    images = _SplitImages(ds, split, lm.preprocess, pixel_limit(input_size(lm), max_pixels))
    workers = min(workers, os.cpu_count() or 1)
    check_worker_tmpdir(workers)
    loader = torch.utils.data.DataLoader(
        images, batch_size=batch_size, num_workers=workers,
        collate_fn=_collate, pin_memory=lm.device.type == "cuda",
    )
    chunks, indices, labels, keys, captions = [], [], [], [], []
    with torch.inference_mode(), lm.autocast():
        for idx, images, lab, k, caps in loader:
            feats = lm.model.encode_image(images.to(lm.device, non_blocking=True))
            chunks.append(F.normalize(feats.float(), dim=-1).cpu())
            indices.append(idx)
            labels.append(lab)
            keys.extend(k)
            captions.extend(caps)
    if not chunks:
        raise DataError(f"split {ds.url(split)} holds no samples")
    order = torch.cat(indices).argsort()  # workers interleave; restore the split's order
    return Features(
        torch.cat(chunks)[order].numpy().astype(np.float32),
        torch.cat(labels)[order].numpy().astype(np.int64),
        [keys[i] for i in order.tolist()],
        [captions[i] for i in order.tolist()],
    )


def encode_texts(lm: LoadedModel, texts: list[str], batch_size: int = 256) -> torch.Tensor:
    out = []
    with torch.inference_mode(), lm.autocast():
        for start in range(0, len(texts), batch_size):
            tokens = lm.tokenizer(texts[start:start + batch_size]).to(lm.device)
            out.append(F.normalize(lm.model.encode_text(tokens).float(), dim=-1))
    return torch.cat(out)


def cache_path(cfg, dataset: str, split: str) -> str:
    from laclip import layout

    return layout.eval_features(cfg.run, cfg.checkpoint_name, dataset, split)


def _cached_source(meta: dict) -> tuple:
    # `.pt` may be left off a checkpoint reference: with or without, it is the same file.
    # The precision too: amp (bf16/fp16) features differ from fp32 ones, and a task must not pair one
    # split's amp features with another's fp32 ones. A cache that does not record it is recomputed.
    checkpoint, dataset = str(meta.get("checkpoint", "")), str(meta.get("dataset", ""))
    return (meta.get("model"), checkpoint.removesuffix(".pt"), dataset.rstrip("/"), meta.get("precision"),
            meta.get("versions"))


def split_features(cfg, lm: LoadedModel, ds, split: str, store: Store) -> Features:
    """Image features of a split: from the cache when it holds this model, checkpoint, dataset and precision,
    else computed and cached (create-only, or over a stale cache)."""
    from laclip.eval.sources import checkpoint_version, dataset_version

    path = cache_path(cfg, ds.name, split)
    # The checkpoint's and the dataset's versions too: a checkpoint written again under the same
    # name, or a dataset downloaded again, must not reuse the features of the old one.
    meta = {"model": lm.name, "checkpoint": cfg.checkpoint_url, "dataset": ds.url(), "split": split,
            "precision": cfg.precision, "versions": [checkpoint_version(cfg)["version"], dataset_version(ds)]}
    stale = False
    if cfg.cache_features:
        try:
            with np.load(io.BytesIO(store.read_bytes(path)), allow_pickle=False) as z:
                cached = json.loads(str(z["meta"]))
                if _cached_source(cached) == _cached_source(meta):
                    log.info("features from cache %s", store.url_of(path))
                    return Features(z["features"], z["labels"], cached["keys"], cached["captions"])
            # Say, a dataset of the same folder name elsewhere, or the checkpoint under another --model.
            log.warning("features cache %s holds %s of %s (%s, %s), not %s of %s (%s, %s): computing them again",
                        store.url_of(path), cached.get("dataset"), cached.get("checkpoint"), cached.get("model"),
                        cached.get("precision"), meta["dataset"], meta["checkpoint"], meta["model"],
                        meta["precision"])
            stale = True
        except (NotFound, FileNotFoundError):
            pass
        except (ValueError, KeyError, OSError, zipfile.BadZipFile) as exc:
            log.warning("features cache %s is unreadable (%s): computing them again", store.url_of(path), exc)
            stale = True
    feats = compute_image_features(lm, ds, split, cfg.batch_size, cfg.workers, cfg.max_image_pixels)
    if cfg.cache_features:
        buf = io.BytesIO()
        text = json.dumps({"keys": feats.keys, "captions": feats.captions, **meta})
        np.savez(buf, features=feats.features, labels=feats.labels, meta=np.array(text))
        try:
            store.write_bytes(path, buf.getvalue(), create_only=not stale)
        except AlreadyExists:  # another pod finished the same split first: same features
            pass
    return feats
