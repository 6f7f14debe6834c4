"""Zero-shot classification: class names in prompt templates, one averaged text embedding per class.

Same arithmetic as CLIP and CLIP_benchmark: each prompt embedding is L2-normalised, the class
mean is normalised again, logits are 100 * cosine; top-1, top-5 and mean per-class recall, with ties
broken as argmax breaks them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from laclip.errors import DataError
from laclip.eval.tasks import classification


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
    """acc1, acc5 (None with fewer than 5 classes) and mean per-class recall (balanced accuracy), read from
    the true class's rank in argmax's order: the numbers the outcomes give (laclip.eval.tasks.classification)."""
    return classification.metrics(classification.outcomes(logits, labels))


def evaluate(lm, features: np.ndarray, labels: np.ndarray, classnames: list[str], templates: list[str],
             where: str = "dataset", outcomes: dict | None = None) -> dict:
    """Metrics; `outcomes`, when given, receives each image's prediction and true-class rank."""
    check_labels(labels, classnames, where)
    classifier = class_embeddings(lm, classnames, templates)
    found = classification.outcomes((100.0 * torch.as_tensor(features) @ classifier.T).numpy(), labels)
    if outcomes is not None:
        outcomes.update(found)
    return classification.metrics(found)
