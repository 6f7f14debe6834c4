"""Result files, what decides them, and the report across checkpoints.

One JSON per (checkpoint, dataset, task, settings) at
`evals/<run>/<checkpoint>/<dataset>/<task>-<id>.json` (laclip.layout), shaped like
CLIP_benchmark's output ({dataset, model, pretrained, task, metrics, language}) and in its names
(`dataset` is `wds/<name>` as CLIP_benchmark names a webdataset set, while the store path keeps
`<name>`; `pretrained` is the checkpoint file, `.pt` included; the linear probe's metrics are
`lp_acc1`, `lp_acc5`, `lp_mean_per_class_recall`), so `clip_benchmark build` merges laclip's
results with its own into one table; laclip's own details sit under "laclip".
<id> is a digest of everything that decides the numbers (`identity`): the checkpoint file
(its URL and version), the dataset's files, the model, the precision, the splits, the class
names and templates (zero-shot), the task's options and seed. A result is reused only when a
new request has the same id; any changed setting gives a new file, and the old one stays.
No torch here: `laclip eval report` runs on a laptop.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from laclip import layout
from laclip.errors import LaclipError, NotFound
from laclip.identity import digest, listing_digest
from laclip.storage.base import Store

# The one number per task a table shows, in CLIP_benchmark's metric names.
HEADLINE = {
    "zeroshot_classification": "acc1",
    "fewshot_knn": "acc1",
    "linear_probe": "lp_acc1",
    "zeroshot_retrieval": "image_retrieval_recall@1",
}
SHORT = {"zeroshot_classification": "zero-shot", "fewshot_knn": "few-shot", "linear_probe": "linear",
         "zeroshot_retrieval": "t2i R@1"}
# Bumped when the evaluation code changes what a task computes or writes. 2: CLIP_benchmark's names
# (`lp_acc1`..., `wds/<name>`, `pretrained` with `.pt`), so results written before are not reused as these.
# 3: per-sample outcomes beside every result (laclip.eval.outcomes), so `laclip eval compare` can pair two
# checkpoints.
RESULTS_VERSION = 3


def checkpoint_file(cfg) -> tuple[Store, str]:
    """(store, path) of cfg's checkpoint; `.pt` may be left off the reference."""
    from laclip.storage import open_store

    store = open_store(cfg.checkpoint_root)
    path = cfg.checkpoint_path
    candidates = [path] if path.endswith(".pt") else [path + ".pt", path]
    for candidate in candidates:
        if store.exists(candidate):
            return store, candidate
    raise NotFound(f"checkpoint {store.url_of(candidates[0])} does not exist")


def checkpoint_version(cfg) -> dict:
    store, path = checkpoint_file(cfg)
    version = store.versions(path).get(path)
    return {"url": store.url_of(path), "version": version}


def dataset_version(ds) -> str:
    """The dataset's files as one digest: a re-exported or re-downloaded set is another dataset."""
    prefix = ds.folder + "/" if ds.folder else ""
    return listing_digest({p[len(prefix):]: v for p, v in ds.store.versions(prefix).items()})


def identity(cfg, task: str, ds, checkpoint: dict, dataset: str, inputs: dict | None = None) -> dict:
    """Everything that decides the numbers of `task` on `ds`. `inputs`: task inputs read from files
    (the class names and templates of zero-shot)."""
    base = {"version": RESULTS_VERSION, "task": task, "checkpoint": checkpoint, "model": cfg.model,
            "precision": cfg.precision, "dataset": {"url": ds.url(), "files": dataset}, "test_split": cfg.test_split}
    if task == "zeroshot":
        base["inputs"] = inputs
    elif task == "fewshot":
        base.update(fewshot=cfg.fewshot.model_dump(), seed=cfg.seed, train_split=cfg.train_split)
    elif task == "linear_probe":
        base.update(linear_probe=cfg.linear_probe.model_dump(), seed=cfg.seed, train_split=cfg.train_split,
                    val_split=cfg.val_split)
    elif task == "retrieval":
        base.update(recall_k=cfg.recall_k)
    return base


def result_id(ident: dict) -> str:
    return digest(ident, 12)


def write_result(store: Store, path: str, record: dict) -> bool:
    """Create-only (laclip.claim): False when an earlier attempt already wrote it (that result stands)."""
    from laclip.claim import write_once

    return write_once(store, path, json.dumps(_clean(record), indent=2) + "\n")


def _clean(value):
    """JSON has no NaN: write null, as a strict reader expects."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


@dataclass
class Row:
    run: str
    checkpoint: str
    dataset: str
    task: str
    record: dict
    result_id: str | None = None
    interval: tuple[float, float] | None = None  # the headline metric's 95 % interval (attach_intervals)

    @property
    def value(self) -> float | None:
        metrics = self.record.get("metrics", {})
        value = metrics.get(HEADLINE.get(self.task, "acc1"))
        return metrics.get("acc1") if value is None else value  # a result written before RESULTS_VERSION 2

    @property
    def created(self) -> str:
        info = self.record.get("laclip")
        return str(info.get("created", "")) if isinstance(info, dict) else ""


def _step(name: str) -> tuple:
    m = re.search(r"(\d+)$", name)
    return (0, int(m.group(1)), name) if m else (1, 0, name)


def load_rows(store: Store, run: str, newest: bool = True) -> list[Row]:
    """The results of a run. `newest`: of several results of one (checkpoint, dataset, task) made
    with other settings, the newest only (the others stay in the store)."""
    rows = []
    for ckpt, dataset, task, rid, path in layout.eval_results(store, run):
        try:
            record = json.loads(store.read_text(path))
        except (NotFound, ValueError):
            continue
        if isinstance(record, dict) and "metrics" in record:
            rows.append(Row(run, ckpt, dataset, task, record, rid))
    if newest:
        best: dict[tuple, Row] = {}
        for r in rows:
            key = (r.checkpoint, r.dataset, r.task)
            if key not in best or (r.created, r.result_id or "") > (best[key].created, best[key].result_id or ""):
                best[key] = r
        rows = list(best.values())
    rows.sort(key=lambda r: (r.run, _step(r.checkpoint), r.dataset, r.task))
    return rows


def table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    """Header and body: one line per checkpoint, one column per (dataset, task) headline metric."""
    columns = sorted({(r.dataset, r.task) for r in rows}, key=lambda c: (c[0], list(HEADLINE).index(c[1])
                                                                          if c[1] in HEADLINE else 99))
    by_ckpt: dict[tuple[str, str], dict] = {}
    for r in rows:
        by_ckpt.setdefault((r.run, r.checkpoint), {})[(r.dataset, r.task)] = r
    header = ["run", "checkpoint"] + [f"{d} {SHORT.get(t, t)}" for d, t in columns]
    body = []
    for (run, ckpt), cells in by_ckpt.items():
        line = [run, ckpt]
        for col in columns:
            row = cells.get(col)
            line.append(_fmt(row) if row else "-")
        body.append(line)
    return header, body


def attach_intervals(store: Store, rows: list[Row], seed: int = 0) -> list[Row]:
    """Fill each row's headline interval from its per-sample outcomes (a bootstrap over the test
    images, over episodes for few-shot); rows without outcomes keep None."""
    from laclip.eval import outcomes as oc

    for r in rows:
        path = layout.eval_outcomes(r.run, r.checkpoint, r.dataset, r.task, r.result_id or "")
        try:
            found = oc.from_bytes(store.read_bytes(path), store.url_of(path))
            # the outcomes name metrics without the linear probe's `lp_` (CLIP_benchmark's result names)
            iv = oc.intervals(r.task, found, seed=seed).get(HEADLINE.get(r.task, "acc1").removeprefix("lp_"))
        except (NotFound, FileNotFoundError, LaclipError, KeyError):
            continue
        if iv is not None:
            r.interval = (iv.lo, iv.hi)
    return rows


def _fmt(row: Row) -> str:
    v = row.value
    if v is None:
        return "n/a"
    if row.interval:
        return f"{100 * v:.1f} [{100 * row.interval[0]:.1f}, {100 * row.interval[1]:.1f}]"
    ci = row.record["metrics"].get("acc1_ci95")
    return f"{100 * v:.1f}" + (f" ±{100 * ci:.1f}" if ci else "")


def markdown(header: list[str], body: list[list[str]]) -> str:
    """A Markdown table; a cell holds one line and no bare `|` (names come from the store)."""
    def cell(text: str) -> str:
        return " ".join(str(text).split()).replace("\\", "\\\\").replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(cell, line)) + " |" for line in body]
    return "\n".join(lines) + "\n"


def _pyplot():
    try:
        import matplotlib
    except ImportError:  # the base install (submit, report tables) has no matplotlib
        raise LaclipError("the chart needs matplotlib: `pip install 'laclip[report]'` (or laclip[eval]), "
                          "or pass --no-png for the table only") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def chart(rows: list[Row], path: str) -> None:
    """Training curves (metric vs step, one line per run, dataset and task) when the runs have
    several step_N checkpoints; otherwise grouped bars, one bar per checkpoint. Percent."""
    plt = _pyplot()

    steps = {r.checkpoint for r in rows if _step(r.checkpoint)[0] == 0}
    if len(steps) >= 3 and len(steps) == len({r.checkpoint for r in rows}):
        fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
        series: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
        for r in rows:
            if r.value is not None:
                series.setdefault((r.run, r.dataset, r.task), []).append((_step(r.checkpoint)[1], 100 * r.value))
        for (run, dataset, task), points in sorted(series.items()):
            xs, ys = zip(*sorted(points))
            ax.plot(xs, ys, marker="o", label=f"{run} {dataset} {SHORT.get(task, task)}")
        ax.set_xlabel("training step")
    else:
        import numpy as np

        header, body = table(rows)
        groups = header[2:]
        fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(groups) * max(1, len(body))), 4.5), dpi=120)
        width = 0.8 / max(1, len(body))
        x = np.arange(len(groups))
        columns = sorted({(r.dataset, r.task) for r in rows}, key=lambda c: (c[0], list(HEADLINE).index(c[1])
                                                                              if c[1] in HEADLINE else 99))
        cells = {(r.run, r.checkpoint, r.dataset, r.task): r for r in rows}
        for i, line in enumerate(body):
            found = [cells.get((line[0], line[1], d, t)) for d, t in columns]
            vals = [100 * r.value if r is not None and r.value is not None else 0.0 for r in found]
            lo = [v - 100 * r.interval[0] if r is not None and r.interval else 0.0 for v, r in zip(vals, found)]
            hi = [100 * r.interval[1] - v if r is not None and r.interval else 0.0 for v, r in zip(vals, found)]
            ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=f"{line[0]}/{line[1]}",
                   yerr=[lo, hi] if any(lo) or any(hi) else None, capsize=3)
        ax.set_xticks(x, groups, rotation=20, ha="right")
    ax.set_ylabel("percent")
    ax.set_ylim(0, 100)
    ax.legend(fontsize="small")
    ax.set_title("laclip eval: headline metric per dataset and task")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
