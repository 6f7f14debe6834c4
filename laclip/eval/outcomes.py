"""Per-sample outcomes of an evaluation: what two checkpoints are compared on, image by image.

Next to each result `<task>-<id>.json` the worker writes `<task>-<id>.outcomes.npz`
(laclip.layout.eval_outcomes), keyed by the same result identity:

    keys                the test samples' keys, in evaluation order (what pairs two results)
    label               zero-shot / linear probe: the true class of each test image
    pred, rank          zero-shot / linear probe: the predicted class and the rank of the true
                        class among all classes (0 = top-1)
    classes             zero-shot / linear probe: the number of classes
    episode_acc         few-shot: each episode's accuracy (episodes come from the seed)
    episodes            few-shot: a digest of the episodes' support and query indices
    t2i_rank, t2i_image retrieval: per caption, the rank of its image among all images, and that
                        image's index; i2t_rank: per image, the best rank of its captions
    recall_k            retrieval: the K of recall@K

`compare(task, a, b)` is the pure function a report calls: two outcome dicts in, one
laclip.eval.stats.Difference per metric out (the difference with its paired-bootstrap interval
and, for top-1, McNemar's p). `intervals(task, a)` gives one checkpoint's metrics with theirs.
No torch here.
"""

from __future__ import annotations

import io

import numpy as np

from laclip.errors import DataError
from laclip.eval import stats

CLASSIFICATION = ("zeroshot_classification", "linear_probe")
LABELS = {"acc1": "top-1", "acc5": "top-5", "mean_per_class_recall": "mean per-class recall"}


def classification(logits, labels) -> dict[str, np.ndarray]:
    """pred, rank of the true class (0 = top-1) and label of each test image, from (n, C) logits."""
    logits = np.asarray(logits)
    labels = np.asarray(labels, dtype=np.int64)
    true = logits[np.arange(len(labels)), labels]
    return {"label": labels.astype(np.int32), "pred": logits.argmax(axis=1).astype(np.int32),
            "rank": (logits > true[:, None]).sum(axis=1).astype(np.int32),
            "classes": np.asarray(logits.shape[1], dtype=np.int32)}


def to_bytes(outcomes: dict) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in outcomes.items()})
    return buf.getvalue()


def from_bytes(data: bytes, where: str = "outcomes") -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError) as exc:
        raise DataError(f"{where} is not a readable outcomes file: {exc}") from None


def observations(task: str, o: dict) -> dict[str, tuple]:
    """metric -> (kind, per-observation values, groups, binary) for laclip.eval.stats."""
    if task in CLASSIFICATION:
        label, rank = o["label"], o["rank"]
        top1 = (rank == 0).astype(np.float64)
        out = {"acc1": ("mean", top1, None, True)}
        if int(o.get("classes", 0)) >= 5:
            out["acc5"] = ("mean", (rank < 5).astype(np.float64), None, True)
        out["mean_per_class_recall"] = ("class_recall", top1, label, False)
        return out
    if task == "fewshot_knn":
        return {"acc1": ("mean", o["episode_acc"].astype(np.float64), None, False)}
    if task == "zeroshot_retrieval":
        out = {}
        for k in o["recall_k"].tolist():
            out[f"image_retrieval_recall@{k}"] = ("cluster_mean", (o["t2i_rank"] < k).astype(np.float64),
                                                  o["t2i_image"], False)
            out[f"text_retrieval_recall@{k}"] = ("mean", (o["i2t_rank"] < k).astype(np.float64), None, False)
        return out
    raise DataError(f"no per-sample outcomes are known for task {task!r}")


def same_samples(task: str, a: dict, b: dict) -> str | None:
    """Why a and b cannot be paired (other test images, episodes or classes), else None."""
    if a["keys"].shape != b["keys"].shape or not np.array_equal(a["keys"], b["keys"]):
        return f"they were evaluated on other test samples ({len(a['keys'])} vs {len(b['keys'])}, or other keys)"
    if task in CLASSIFICATION and not np.array_equal(a["label"], b["label"]):
        return "the test images carry other labels"
    if task == "fewshot_knn" and str(a["episodes"]) != str(b["episodes"]):
        return "their few-shot episodes differ (another seed, ways, shots or query count)"
    if task == "zeroshot_retrieval" and not np.array_equal(a["t2i_image"], b["t2i_image"]):
        return "their captions differ"
    return None


def compare(task: str, a: dict, b: dict, *, resamples: int = stats.RESAMPLES, seed: int = 0,
            confidence: float = stats.CONFIDENCE) -> dict[str, stats.Difference]:
    """B - A of every metric both outcome sets have, each with its paired-bootstrap interval."""
    why = same_samples(task, a, b)
    if why:
        raise DataError(f"{task}: cannot pair the two results: {why}")
    oa, ob = observations(task, a), observations(task, b)
    out = {}
    for metric, (kind, va, groups, binary) in oa.items():
        if metric not in ob:
            continue
        out[metric] = stats.paired(kind, va, ob[metric][1], groups, binary=binary, resamples=resamples, seed=seed,
                                   confidence=confidence)
    return out


def intervals(task: str, o: dict, *, resamples: int = stats.RESAMPLES, seed: int = 0,
              confidence: float = stats.CONFIDENCE) -> dict[str, stats.Interval]:
    """Each metric of one result with its bootstrap interval over the test images (episodes)."""
    return {metric: stats.interval(kind, values, groups, resamples=resamples, seed=seed, confidence=confidence)
            for metric, (kind, values, groups, _binary) in observations(task, o).items()}
