"""Zero-shot classification: class names in prompt templates, one averaged text embedding per class.

Same arithmetic as CLIP and CLIP_benchmark: each prompt embedding is L2-normalised, the class
mean is normalised again, logits are 100 * cosine; top-1, top-5 and mean per-class recall.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from laclip.errors import DataError


def class_embeddings(lm, classnames: list[str], templates: list[str]) -> torch.Tensor:
    """(C, d) unit vectors; prompts of all classes go through the text tower in large batches."""
    from laclip.eval.features import encode_texts

    prompts = [t.replace("{c}", name) for name in classnames for t in templates]
    emb = encode_texts(lm, prompts).view(len(classnames), len(templates), -1)
    return F.normalize(emb.mean(dim=1), dim=-1).cpu()


def check_labels(labels: np.ndarray, classnames: list[str], where: str) -> None:
    if (labels < 0).any():
        raise DataError(f"{where}: {int((labels < 0).sum())} samples have no .cls label; classification needs one")
    top = int(labels.max())
    if top >= len(classnames):
        raise DataError(f"{where} has label {top} but the class-name list has only {len(classnames)} names "
                        f"(labels 0..{len(classnames) - 1}): the class-name file is the wrong length")


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float | None]:
    """acc1, acc5 (None with fewer than 5 classes) and mean per-class recall (balanced accuracy)."""
    logits = torch.as_tensor(logits)
    target = torch.as_tensor(labels)
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hit = top.eq(target[:, None])
    pred = top[:, 0]
    recalls = [(pred[target == c] == c).float().mean().item() for c in target.unique().tolist()]
    return {
        "acc1": hit[:, :1].any(dim=1).float().mean().item(),
        "acc5": hit.any(dim=1).float().mean().item() if logits.shape[1] >= 5 else None,
        "mean_per_class_recall": float(np.mean(recalls)),
    }


def evaluate(lm, features: np.ndarray, labels: np.ndarray, classnames: list[str], templates: list[str],
             where: str = "dataset", outcomes: dict | None = None) -> dict:
    """Metrics; `outcomes`, when given, receives each image's prediction and true-class rank."""
    check_labels(labels, classnames, where)
    classifier = class_embeddings(lm, classnames, templates)
    logits = 100.0 * torch.as_tensor(features) @ classifier.T
    if outcomes is not None:
        from laclip.eval.outcomes import classification

        outcomes.update(classification(logits.numpy(), labels))
    return classification_metrics(logits.numpy(), labels)
