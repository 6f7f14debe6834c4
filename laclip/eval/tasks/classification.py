"""What zero-shot classification and the linear probe share: scores per class in, the true class's
rank out, and every metric read from those ranks, so a result and its outcomes cannot disagree.

The rank of the true class is its place in the order argmax uses (torch's and numpy's alike):
higher scores first, NaN above every number, equal scores by class index, the lower first. So
top-1 is right exactly when argmax names the true class, and a model whose scores all tie (an
untrained or collapsed one) predicts class 0 for every image, as CLIP_benchmark's topk does on
CPU, instead of counting every image as right. No torch here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from laclip.errors import DataError
from laclip.eval.tasks.base import Observations, TaskSpec

if TYPE_CHECKING:
    import numpy as np

_ROWS = 4096  # rows of scores compared at once (ImageNet's 50,000 x 1,000 in pieces)


def ranks(scores, truth) -> np.ndarray:
    """Each row's rank of its true column (0 = first) in argmax's order (see above)."""
    import numpy as np

    scores, truth = np.asarray(scores), np.asarray(truth, dtype=np.int64)
    out = np.empty(len(truth), dtype=np.int64)
    cols = np.arange(scores.shape[1])[None, :]
    for start in range(0, len(truth), _ROWS):
        s, t = scores[start:start + _ROWS], truth[start:start + _ROWS, None]
        nan = np.isnan(s)
        v = np.where(nan, 0, s)
        tv, tn = np.take_along_axis(v, t, 1), np.take_along_axis(nan, t, 1)
        before = (nan & ~tn) | ((nan == tn) & ((v > tv) | ((v == tv) & (cols < t))))
        out[start:start + _ROWS] = before.sum(axis=1)
    return out


def outcomes(scores, labels) -> dict[str, np.ndarray]:
    """label, pred (argmax), rank of the true class and the number of classes, from (n, C) scores."""
    import numpy as np

    scores, labels = np.asarray(scores), np.asarray(labels, dtype=np.int64)
    if scores.ndim != 2 or len(scores) != len(labels) or not scores.shape[1]:
        raise DataError(f"scores of shape {scores.shape} for {len(labels)} labels")
    return {"label": labels.astype(np.int32), "pred": scores.argmax(axis=1).astype(np.int32),
            "rank": ranks(scores, labels).astype(np.int32), "classes": np.asarray(scores.shape[1], dtype=np.int32)}


def metrics(o: dict) -> dict[str, float | None]:
    """acc1, acc5 (None with fewer than 5 classes) and mean per-class recall, from outcomes."""
    import numpy as np

    right = o["rank"] == 0
    recalls = [right[o["label"] == c].mean() for c in np.unique(o["label"])]
    return {"acc1": float(right.mean()),
            "acc5": float((o["rank"] < 5).mean()) if int(o["classes"]) >= 5 else None,
            "mean_per_class_recall": float(np.mean(recalls))}


class Classification(TaskSpec):
    """A task that scores every class for each test image (zero-shot, linear probe)."""

    outcome_keys = ("label", "pred", "rank", "classes")
    per_sample = ("label", "pred", "rank")

    def observations(self, o: dict) -> Observations:
        import numpy as np

        top1 = (o["rank"] == 0).astype(np.float64)
        out = {"acc1": ("mean", top1, None, True)}
        if int(o["classes"]) >= 5:
            out["acc5"] = ("mean", (o["rank"] < 5).astype(np.float64), None, True)
        out["mean_per_class_recall"] = ("class_recall", top1, o["label"], False)
        return out

    def same_samples(self, a: dict, b: dict) -> str | None:
        import numpy as np

        return None if np.array_equal(a["label"], b["label"]) else "the test images carry other labels"

    def check_outcomes(self, o: dict, where: str) -> None:
        super().check_outcomes(o, where)
        classes = o["classes"]
        if classes.shape != () or classes.dtype.kind not in "iu" or int(classes) < 1:
            raise DataError(f"{where}: 'classes' is not a count of classes")
        for key in self.per_sample:
            if o[key].dtype.kind not in "iu" or len(o[key]) and not 0 <= o[key].min() <= o[key].max() < classes:
                raise DataError(f"{where}: {key!r} holds values outside 0..{int(classes) - 1}")
