"""Image-text retrieval recall@K, where the split's samples carry `.txt` captions.

An image may have several captions (one per line). As in CLIP papers and CLIP_benchmark, a
query scores 1 at K when any of its matches is among the top K: text->image retrieval ranks
images for each caption, image->text ranks captions for each image.
"""

from __future__ import annotations

import numpy as np
import torch

from laclip.errors import DataError


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
    owner_t = torch.tensor([remap[o] for o in owner])
    scores = txt @ img.T  # (texts, images)
    metrics = {}
    for k in recall_k:
        kk = min(k, len(keep))
        t2i = (scores.topk(kk, dim=1).indices == owner_t[:, None]).any(dim=1).float().mean().item()
        top_txt = scores.T.topk(min(k, len(texts)), dim=1).indices  # (images, k) caption indices
        i2t = (owner_t[top_txt] == torch.arange(len(keep))[:, None]).any(dim=1).float().mean().item()
        metrics[f"image_retrieval_recall@{k}"] = t2i
        metrics[f"text_retrieval_recall@{k}"] = i2t
    if outcomes is not None:
        own = scores[torch.arange(len(texts)), owner_t]  # each caption's score with its own image
        t2i_rank = (scores > own[:, None]).sum(dim=1).numpy()
        cap_rank = (scores.T[owner_t] > own[:, None]).sum(dim=1).numpy()  # among all captions of its image's row
        i2t_rank = np.full(len(keep), len(texts), dtype=np.int64)
        np.minimum.at(i2t_rank, owner_t.numpy(), cap_rank)
        outcomes.update(t2i_rank=t2i_rank.astype(np.int32), t2i_image=owner_t.numpy().astype(np.int32),
                        i2t_rank=i2t_rank.astype(np.int32), recall_k=np.asarray(list(recall_k), dtype=np.int32),
                        images=np.asarray(keep, dtype=np.int32))
    metrics["images"], metrics["texts"] = len(keep), len(texts)
    return metrics
