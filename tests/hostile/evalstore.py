"""Eval results as the worker writes them, made in this process from given scores: the result JSON and its
`.outcomes.npz` at the store paths of laclip.layout, their numbers from laclip's own functions (the metrics of
laclip.eval.zeroshot, the outcomes of laclip.eval.outcomes, the id of laclip.eval.results), so the cases run
unchanged against the commit before a fix. And readers of what `laclip eval report` / `compare` print.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np

CLASSES, IMAGES = 8, 32
TASKS = {"zeroshot": "zeroshot_classification", "linear_probe": "linear_probe", "fewshot": "fewshot_knn",
         "retrieval": "zeroshot_retrieval"}


def scores(kind: str, seed: int = 0) -> np.ndarray:
    """(IMAGES, CLASSES) logits of a named shape: ties, NaN, -inf, or none of them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(IMAGES, CLASSES)).astype(np.float32)
    labels = np.arange(IMAGES) % CLASSES
    if kind == "equal":
        x[:] = 0
    elif kind == "neg-inf":
        x[:] = -np.inf
    elif kind == "nan":
        x[:] = np.nan
    elif kind == "nan-rows":
        x[::3] = np.nan
    elif kind == "true-tied":  # the true class tied with a lower class at the top
        x[np.arange(IMAGES), labels] = 5.0
        x[np.arange(IMAGES), (labels + 3) % CLASSES] = 5.0
    elif kind == "top5-edge":  # the true class tied with several at 5th place
        x[:] = np.arange(CLASSES)[::-1] * 1.0
        x[np.arange(IMAGES), labels] = 3.0
        x[:, 3:6] = 3.0
    elif kind == "coarse":  # a few distinct values: ties everywhere
        x = np.round(x).astype(np.float32)
    elif kind == "inf-tie":
        x[:, 0] = np.inf
        x[np.arange(IMAGES), labels] = np.inf
    return x


def identity(root: Path, run: str, task: str, **settings) -> dict:
    """What the worker records as a result's identity; `settings` override any part (dotted for nested)."""
    from laclip.eval.results import RESULTS_VERSION

    ident = {"version": RESULTS_VERSION, "task": task,
             "checkpoint": {"url": f"{root}/checkpoints/{run}/step_1.pt", "version": f"1000-{len(run)}"},
             "model": None, "precision": "fp32", "dataset": {"url": f"{root}/datasets/evalset", "files": "f" * 32},
             "test_split": "test"}
    ident.update({
        "zeroshot": {"inputs": {"classnames": "c" * 64, "templates": "t" * 64}},
        "fewshot": {"fewshot": {"ways": 5, "shots": 5, "queries": 15, "episodes": 600, "k": 5, "temperature": 0.07},
                    "seed": 0, "train_split": "train"},
        "linear_probe": {"linear_probe": {"val_fraction": 0.2, "reg_min": 1e-6, "reg_max": 100.0, "grid": 9,
                                          "refine_steps": 4, "max_iter": 100}, "seed": 0, "train_split": "train",
                         "val_split": None},
        "retrieval": {"recall_k": [1, 5, 10]},
    }[task])
    for key, value in settings.items():
        *path, last = key.split(".")
        here = ident
        for part in path:
            here = here[part]
        here[last] = value
    return ident


def write(root: Path, run: str, task: str, *, logits=None, episodes=None, created="2025-01-01T00:00:00.000+00:00",
          ident: dict | None = None, dataset: str = "evalset", ckpt: str = "step_1") -> tuple[Path, Path, dict]:
    """A result and its outcomes for `run`'s checkpoint; returns (result path, outcomes path, record)."""
    from laclip import layout
    from laclip.eval import outcomes as oc
    from laclip.eval.results import result_id
    from laclip.eval.zeroshot import classification_metrics

    ident = ident or identity(root, run, task)
    rid = result_id(ident)
    keys = np.asarray([f"s{i:04d}" for i in range(IMAGES)])
    if task in ("zeroshot", "linear_probe"):
        logits = scores("random") if logits is None else logits
        labels = np.arange(IMAGES) % CLASSES
        metrics = classification_metrics(logits, labels)
        kept = {**oc.classification(logits, labels), "keys": keys}
        if task == "linear_probe":
            metrics = {f"lp_{k}": v for k, v in metrics.items()}
    elif task == "fewshot":
        acc = np.asarray(episodes if episodes is not None else np.linspace(0.2, 0.6, 40), dtype=np.float64)
        metrics = {"acc1": float(acc.mean()), "episodes": len(acc), "seed": ident.get("seed", 0)}
        drawn = [ident["seed"]] + [ident["fewshot"][k] for k in ("ways", "shots", "queries", "episodes")]
        digest = hashlib.sha256(json.dumps(drawn).encode()).hexdigest()[:24]  # what decides the episodes
        kept = {"episode_acc": acc, "episodes": np.asarray(digest), "keys": keys}
    else:  # retrieval: one caption per image, ranks given by a seeded draw
        ranks = np.random.default_rng(len(run)).integers(0, 6, IMAGES)
        metrics = {}
        for k in ident["recall_k"]:
            metrics[f"image_retrieval_recall@{k}"] = float((ranks < k).mean())
            metrics[f"text_retrieval_recall@{k}"] = float((ranks < k).mean())
        kept = {"t2i_rank": ranks.astype(np.int32), "t2i_image": np.arange(IMAGES, dtype=np.int32),
                "i2t_rank": ranks.astype(np.int32), "recall_k": np.asarray(ident["recall_k"], dtype=np.int32),
                "keys": keys}
    name = TASKS[task]
    result = root / layout.eval_result(run, ckpt, dataset, name, rid)
    outcomes = root / layout.eval_outcomes(run, ckpt, dataset, name, rid)
    record = {"dataset": f"wds/{dataset}", "model": "laclip-tiny", "pretrained": ident["checkpoint"]["url"],
              "task": name, "metrics": metrics, "language": "en",
              "laclip": {"run": run, "checkpoint": ckpt, "images": IMAGES, "result_id": rid, "identity": ident,
                         "created": created, "split": "test", "outcomes": outcomes.name}}
    result.parent.mkdir(parents=True, exist_ok=True)
    outcomes.write_bytes(oc.to_bytes(kept))
    result.write_text(json.dumps(record, indent=2) + "\n")
    return result, outcomes, record


# -- damaged outcomes ------------------------------------------------------------------------------
def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def damaged_outcomes(kind: str, data: bytes, found: dict) -> bytes:
    """An outcomes file made from `data` (its arrays: `found`) damaged one way."""
    keys = found["keys"]
    if kind == "truncated-half":
        return data[:len(data) // 2]
    if kind == "truncated-10":
        return data[:10]
    if kind == "empty":
        return b""
    if kind == "text":
        return b"not an npz\n"
    if kind == "object-array":
        return _pickled(found)
    broken = dict(found)
    if kind.startswith("missing-"):
        broken.pop(kind.removeprefix("missing-"))
    elif kind == "keys-2d":
        broken["keys"] = np.stack([keys, keys])
    elif kind == "rank-short":
        broken["rank"] = found["rank"][:5]
    elif kind == "rank-negative":
        broken["rank"] = found["rank"] - 100
    elif kind == "rank-too-big":
        broken["rank"] = found["rank"] + 1000
    elif kind == "label-float":
        broken["label"] = found["label"] + 0.5
    return _npz(**broken)


def _pickled(found: dict) -> bytes:
    """An npz whose array needs pickle to load (what allow_pickle=False refuses)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for k, v in found.items():
            inner = io.BytesIO()
            np.save(inner, v if k != "rank" else np.array(list(v), dtype=object), allow_pickle=True)
            z.writestr(f"{k}.npy", inner.getvalue())
    return buf.getvalue()


# -- what the commands print ------------------------------------------------------------------------
CELL = re.compile(r"^(?P<v>[+-]?\d+\.\d)(?: \[(?P<lo>[+-]?\d+\.\d), (?P<hi>[+-]?\d+\.\d)\])?")


def cells(markdown: str) -> list[list[str]]:
    """The body cells of every Markdown table row in `markdown`."""
    rows = [ln.strip().strip("|").split("|") for ln in markdown.splitlines() if ln.strip().startswith("|")]
    return [[c.strip() for c in r] for r in rows if not set("".join(r)) <= set("-: ")]


def number(cell: str) -> tuple[float, float | None, float | None] | None:
    """(value, lo, hi) of a cell such as `12.5 [3.1, 25.0]`, None when it holds no number."""
    m = CELL.match(cell)
    if not m:
        return None
    lo, hi = m.group("lo"), m.group("hi")
    return float(m.group("v")), (float(lo) if lo else None), (float(hi) if hi else None)


def holds(cell: str, expected: float | None = None) -> None:
    """The cell's interval holds its point, and the point is `expected` (percent, to the printed 0.1)."""
    found = number(cell)
    assert found is not None, f"no number in {cell!r}"
    v, lo, hi = found
    if lo is not None:
        assert lo <= v <= hi, f"interval does not hold its point: {cell!r}"
    if expected is not None:
        assert abs(v - expected) <= 0.051, f"{cell!r} is not {expected:.2f}"
