"""Result files, what decides them, and the report across checkpoints.

One JSON per (checkpoint, dataset, task, settings) at
`evals/<run>/<checkpoint>/<dataset>/<task>-<id>.json` (laclip.layout), shaped like
CLIP_benchmark's output ({dataset, model, pretrained, task, metrics, language}) and in its names
(`dataset` is `wds/<name>` as CLIP_benchmark names a webdataset set, while the store path keeps
`<name>`; `pretrained` is the checkpoint file, `.pt` included; the linear probe's metrics are
`lp_acc1`, `lp_acc5`, `lp_mean_per_class_recall`), so `clip_benchmark build` merges laclip's
results with its own into one table; laclip's own details sit under "laclip".
<id> is a digest of everything that decides the numbers (`identity`): the checkpoint file
(its URL and version), the dataset's files, the model, the precision, the test split, and what
the task's spec names (laclip.eval.tasks: the class names and templates of zero-shot, the
options, seed and splits of the others). A result is reused only when a new request has the
same id; any changed setting gives a new file, and the old one stays. Results are read back
through laclip.eval.records (checked) and their outcomes through laclip.eval.outcomes.read
(checked against the result). No torch here: `laclip eval report` runs on a laptop.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from laclip import layout
from laclip.errors import DataError, LaclipError, NotFound
from laclip.eval import tasks
from laclip.eval.records import read_result
from laclip.identity import digest
from laclip.storage.base import Store

# Bumped when the evaluation code changes what a task computes or writes. 2: CLIP_benchmark's names
# (`lp_acc1`..., `wds/<name>`, `pretrained` with `.pt`), so results written before are not reused as these.
# 3: per-sample outcomes beside every result (laclip.eval.outcomes), so `laclip eval compare` can pair two
# checkpoints. 4: ranks, top-K and recall@K break ties as argmax does (laclip.eval.tasks.classification):
# version 3 counted a true class tied with others as rank 0 in the outcomes.
RESULTS_VERSION = 4


def identity(cfg, task: str, ds, checkpoint: dict, dataset: str, inputs: dict | None = None) -> dict:
    """Everything that decides the numbers of `task` on `ds`. `inputs`: the digests of what the task
    reads from files (TaskSpec.inputs: zero-shot's class names and templates)."""
    spec = tasks.get(task)
    base = {"version": RESULTS_VERSION, "task": task, "checkpoint": checkpoint, "model": cfg.model,
            "precision": cfg.precision, "dataset": {"url": ds.url(), "files": dataset}, "test_split": cfg.test_split}
    if inputs is not None:
        base["inputs"] = inputs
    for name in spec.identity_fields:
        value = getattr(cfg, name)
        base[name] = value.model_dump() if hasattr(value, "model_dump") else value
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
    def spec(self):
        return tasks.of_result(self.task)

    @property
    def headline(self) -> str:
        return self.spec.headline_result if self.spec else "acc1"

    @property
    def value(self) -> float | None:
        metrics = self.record["metrics"]
        value = metrics.get(self.headline)
        return metrics.get("acc1") if value is None else value  # a result written before RESULTS_VERSION 2

    @property
    def outcomes_path(self) -> str:
        return layout.eval_outcomes(self.run, self.checkpoint, self.dataset, self.task, self.result_id or "")

    def outcomes(self, store: Store) -> dict | None:
        """The result's per-sample outcomes, checked against it; None where it has none (written before
        laclip kept them). A result that names its outcomes file and lacks it is a DataError."""
        from laclip.eval import outcomes as oc

        url = store.url_of(layout.eval_result(self.run, self.checkpoint, self.dataset, self.task,
                                              self.result_id or ""))
        found = oc.read(store, self.outcomes_path, self.task, self.record["metrics"], url)
        if found is None and self.record.get("laclip", {}).get("outcomes"):
            raise DataError(f"result {url} names its outcomes {self.record['laclip']['outcomes']}, which are "
                            "missing: delete the result and evaluate again")
        return found

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
            rows.append(Row(run, ckpt, dataset, task, read_result(store, path, task), rid))
        except NotFound:  # deleted since the listing
            continue
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
    columns = sorted({(r.dataset, r.task) for r in rows}, key=column_order)
    by_ckpt: dict[tuple[str, str], dict] = {}
    for r in rows:
        by_ckpt.setdefault((r.run, r.checkpoint), {})[(r.dataset, r.task)] = r
    header = ["run", "checkpoint"] + [f"{d} {_short(t)}" for d, t in columns]
    body = []
    for (run, ckpt), cells in by_ckpt.items():
        line = [run, ckpt]
        for col in columns:
            row = cells.get(col)
            line.append(_fmt(row) if row else "-")
        body.append(line)
    return header, body


def column_order(column: tuple[str, str]) -> tuple:
    """(dataset, task) columns by dataset, then in the task registry's order."""
    spec = tasks.of_result(column[1])
    return column[0], tasks.TASKS.index(spec) if spec else len(tasks.TASKS), column[1]


def _short(task: str) -> str:
    spec = tasks.of_result(task)
    return spec.short if spec else task


def attach_intervals(store: Store, rows: list[Row], seed: int = 0) -> list[Row]:
    """Fill each row's headline interval from its per-sample outcomes (a bootstrap over the test
    images, over episodes for few-shot); rows without outcomes keep None. Outcomes that are damaged
    or do not give the result's own numbers are a DataError (laclip.eval.outcomes.read)."""
    from laclip.eval import outcomes as oc

    for r in rows:
        found = r.outcomes(store) if r.spec else None
        iv = oc.intervals(r.task, found, seed=seed).get(r.spec.headline) if found else None
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
            ax.plot(xs, ys, marker="o", label=f"{run} {dataset} {_short(task)}")
        ax.set_xlabel("training step")
    else:
        import numpy as np

        header, body = table(rows)
        groups = header[2:]
        fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(groups) * max(1, len(body))), 4.5), dpi=120)
        width = 0.8 / max(1, len(body))
        x = np.arange(len(groups))
        columns = sorted({(r.dataset, r.task) for r in rows}, key=column_order)
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
