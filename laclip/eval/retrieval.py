"""Image-text retrieval recall@K, where the split's samples carry `.txt` captions.

An image may have several captions (one per line). As in CLIP papers and CLIP_benchmark, a
query scores 1 at K when any of its matches is among the top K: text->image retrieval ranks
images for each caption, image->text ranks captions for each image. Ties are broken as argmax
breaks them (the lower index first).
"""

from __future__ import annotations

import numpy as np
import torch

from laclip.errors import DataError
from laclip.eval.tasks.classification import ranks


def evaluate(lm, image_feats: np.ndarray, captions: list[list[str]], recall_k=(1, 5, 10), where="dataset",
             outcomes: dict | None = None) -> dict:
    """Metrics; `outcomes`, when given, receives each caption's image rank and each image's best caption rank."""
    from laclip.eval.features import encode_texts

    texts, owner = [], []
    for i, caps in enumerate(captions):
        texts.extend(caps)
        owner.extend([i] * len(caps))
    if not texts:
        raise DataError(f"{where} has no .txt captions: retrieval needs them")
    keep = sorted(set(owner))  # images without a caption take no part
    remap = {old: new for new, old in enumerate(keep)}
    img = torch.as_tensor(image_feats[keep])
    txt = encode_texts(lm, texts).cpu()
    owner_n = np.array([remap[o] for o in owner], dtype=np.int64)
    scores = (txt @ img.T).numpy()  # (texts, images)
    # ranks in argmax's order (ties: the lower index first; laclip.eval.tasks.classification.ranks), so
    # recall@K is exactly "the match is among the first K" and the outcomes give the same numbers
    t2i_rank = ranks(scores, owner_n)
    i2t_rank = ranks(scores.T, _best_caption(scores[np.arange(len(texts)), owner_n], owner_n, len(keep)))
    metrics = {}
    for k in recall_k:
        metrics[f"image_retrieval_recall@{k}"] = float((t2i_rank < k).mean())
        metrics[f"text_retrieval_recall@{k}"] = float((i2t_rank < k).mean())
    if outcomes is not None:
        outcomes.update(t2i_rank=t2i_rank.astype(np.int32), t2i_image=owner_n.astype(np.int32),
                        i2t_rank=i2t_rank.astype(np.int32), recall_k=np.asarray(list(recall_k), dtype=np.int32),
                        images=np.asarray(keep, dtype=np.int32))
    metrics["images"], metrics["texts"] = len(keep), len(texts)
    return metrics


def _best_caption(own: np.ndarray, owner: np.ndarray, images: int) -> np.ndarray:
    """Per image, the caption of its own that argmax's order puts first (NaN first, then the higher
    score, then the lower index): its rank among all captions is the image's text-retrieval rank."""
    nan = np.isnan(own)
    order = np.lexsort((np.arange(len(own)), -np.where(nan, 0, own), ~nan, owner))
    first = np.r_[True, owner[order][1:] != owner[order][:-1]]
    best = np.empty(images, dtype=np.int64)
    best[owner[order][first]] = order[first]
    return best
