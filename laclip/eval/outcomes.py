"""Per-sample outcomes of an evaluation: what two checkpoints are compared on, image by image.

Next to each result `<task>-<id>.json` the worker writes `<task>-<id>.outcomes.npz`
(laclip.layout.eval_outcomes), keyed by the same result identity:

    keys                the test samples' keys, in evaluation order (what pairs two results)
    label               zero-shot / linear probe: the true class of each test image
    pred, rank          zero-shot / linear probe: the predicted class (argmax) and the rank of the
                        true class in argmax's order (0 = top-1; laclip.eval.tasks.classification)
    classes             zero-shot / linear probe: the number of classes
    episode_acc         few-shot: each episode's accuracy (episodes come from the seed)
    episodes            few-shot: a digest of the episodes' support and query indices
    t2i_rank, t2i_image retrieval: per caption, the rank of its image among all images, and that
                        image's index; i2t_rank: per image, the best rank of its captions
    recall_k            retrieval: the K of recall@K

What each task holds and how it becomes observations is its spec's (laclip.eval.tasks). `read`
checks a file against its task and its result: the outcomes must give the result's own numbers, so
an interval or a paired difference is never computed from outcomes of another evaluation.
`compare(task, a, b)` gives one laclip.eval.stats.Difference per metric (the difference with its
paired-bootstrap interval and, for top-1, McNemar's p); `intervals(task, a)` one checkpoint's
metrics with theirs. No torch here.
"""

from __future__ import annotations

import io
import zipfile
import zlib

import numpy as np

from laclip.errors import DataError, NotFound
from laclip.eval import stats
from laclip.eval import tasks as task_registry
from laclip.eval.tasks.classification import outcomes as classification  # noqa: F401  (its public name)

AGREE = 1e-6  # |outcomes' metric - result's metric| allowed: float32 sums in results written before version 4


def _spec(task: str):
    spec = task_registry.of_result(task)
    if spec is None:
        raise DataError(f"no per-sample outcomes are known for task {task!r}")
    return spec


def to_bytes(outcomes: dict) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in outcomes.items()})
    return buf.getvalue()


def from_bytes(data: bytes, where: str = "outcomes", task: str | None = None) -> dict[str, np.ndarray]:
    """The arrays of an outcomes file; with `task` (CLIP_benchmark's name), checked to be what it writes."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            found = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{where} is not a readable outcomes file (truncated or damaged: "
                        f"{' '.join(str(exc).split()) or type(exc).__name__})") from None
    keys = found.get("keys")
    if keys is None or keys.ndim != 1 or not len(keys) or keys.dtype.kind not in "iuUS":
        raise DataError(f"{where} holds no test sample keys (incomplete or damaged)")
    if task is not None:
        _spec(task).check_outcomes(found, where)
    return found


def read(store, path: str, task: str, metrics: dict | None = None, result: str = "its result") -> dict | None:
    """The outcomes at `path` checked against their task and, given the result's `metrics`, against its
    numbers; None when there are none (a result written before laclip kept them)."""
    where = store.url_of(path)
    try:
        data = store.read_bytes(path)
    except (NotFound, FileNotFoundError):
        return None
    found = from_bytes(data, where, task)
    spec = _spec(task)
    for metric, (kind, values, groups, _) in spec.observations(found).items():
        said = (metrics or {}).get(spec.result_metric(metric))
        if isinstance(said, (int, float)) and not isinstance(said, bool):
            got = stats.point(kind, values, groups)
            if abs(got - said) > AGREE:
                raise DataError(f"{result} says {spec.metric_label(metric)} {100 * said:.1f} % but its outcomes "
                                f"{where} give {100 * got:.1f} % (damaged, or written by another evaluation): "
                                "delete both and evaluate again")
    return found


def observations(task: str, o: dict) -> dict[str, tuple]:
    """metric -> (kind, per-observation values, groups, binary) for laclip.eval.stats."""
    return _spec(task).observations(o)


def same_samples(task: str, a: dict, b: dict) -> str | None:
    """Why a and b cannot be paired (other test images, episodes or classes), else None."""
    if a["keys"].shape != b["keys"].shape or not np.array_equal(a["keys"], b["keys"]):
        return f"they were evaluated on other test samples ({len(a['keys'])} vs {len(b['keys'])}, or other keys)"
    return _spec(task).same_samples(a, b)


def compare(task: str, a: dict, b: dict, *, resamples: int = stats.RESAMPLES, seed: int = 0,
            confidence: float = stats.CONFIDENCE) -> dict[str, stats.Difference]:
    """B - A of every metric both outcome sets have, each with its paired-bootstrap interval."""
    why = same_samples(task, a, b)
    if why:
        raise DataError(f"{task}: cannot pair the two results: {why}")
    oa, ob = observations(task, a), observations(task, b)
    return {metric: stats.paired(kind, va, ob[metric][1], groups, binary=binary, resamples=resamples, seed=seed,
                                 confidence=confidence)
            for metric, (kind, va, groups, binary) in oa.items() if metric in ob}


def intervals(task: str, o: dict, *, resamples: int = stats.RESAMPLES, seed: int = 0,
              confidence: float = stats.CONFIDENCE) -> dict[str, stats.Interval]:
    """Each metric of one result with its bootstrap interval over the test images (episodes)."""
    return {metric: stats.interval(kind, values, groups, resamples=resamples, seed=seed, confidence=confidence)
            for metric, (kind, values, groups, _binary) in observations(task, o).items()}
