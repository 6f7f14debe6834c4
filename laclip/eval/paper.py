"""The paper's table (`laclip eval report --layout paper`): rows zero-shot, linear probe and few-shot,
one row per run within each, one column per dataset in the suite's order and the suite's average,
in percent; with two runs a difference row (second minus first) under each task.

Columns come from a suite file (laclip.eval.suites: laclip-paper puts the 15 downstream sets, their
average, then ImageNet, as the paper's tables do); without one, from the datasets in the results,
ImageNet last and out of the average. A cell is blank where the suite's protocol does not run that
task (few-shot on ImageNet), `-` where a result is missing; an average over fewer datasets than the
suite averages is marked `*` with the count. No torch here.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from laclip.eval.results import HEADLINE, Row, _step

# The rows of the paper's tables, by the task names result files carry (CLIP_benchmark's).
ROW_TASKS = [("zeroshot_classification", "zero-shot"), ("linear_probe", "linear probe"), ("fewshot_knn", "few-shot")]
TASK_KEYS = {"zeroshot_classification": "zeroshot", "linear_probe": "linear_probe", "fewshot_knn": "fewshot",
             "zeroshot_retrieval": "retrieval"}
IMAGENET = ("imagenet1k", "imagenet-1k", "imagenet")
AVERAGE = "@average"


# -- the one place that reads a result's names and numbers (issue 12 renames them: keep it here) ------
def dataset_key(name: str) -> str:
    """A result's dataset as a store folder name: `wds/vtab/cifar10` (CLIP_benchmark's) -> `vtab-cifar10`."""
    return name.removeprefix("wds/").replace("/", "-").replace("_", "-")


def metric_of(row: Row, wanted: str | None = None) -> tuple[float | None, str]:
    """(value, metric name) of a result: the suite's main metric `wanted` where the file has it (or can
    be derived: mean_recall@1), else the task's headline metric (results.HEADLINE)."""
    metrics = row.record.get("metrics", {})
    if wanted == "mean_recall@1" and wanted not in metrics:
        parts = [metrics.get("image_retrieval_recall@1"), metrics.get("text_retrieval_recall@1")]
        if all(isinstance(p, (int, float)) for p in parts):
            return sum(parts) / 2, wanted
    if wanted and isinstance(metrics.get(wanted), (int, float)):
        return float(metrics[wanted]), wanted
    value = row.value
    return (float(value) if isinstance(value, (int, float)) else None), HEADLINE.get(row.task, "acc1")


def paired_interval(pairs: list[tuple[Row, Row]]) -> tuple[float, float] | None:
    """The 95% interval of (second - first) over the datasets of `pairs` (one pair: one dataset; several:
    the average), paired per test image. None: laclip does not compute paired intervals yet (issue 13
    adds them; the table shows them in the difference row as soon as this returns one)."""
    return None


# -- the table --------------------------------------------------------------------------------------
@dataclass
class Column:
    key: str  # dataset folder name, or AVERAGE
    title: str
    tasks: list[str] | None = None  # the protocol's tasks on it (None: every task)
    metric: str | None = None
    averaged: bool = True


@dataclass
class PaperTable:
    title: str
    columns: list[Column]
    header: list[str]
    rows: list[list[str]]  # markdown cells
    csv_rows: list[list[str]]
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"**{self.title}** (percent)", "", "| " + " | ".join(self.header) + " |",
                 "|" + "|".join(":---" if i < 2 else "---:" for i in range(len(self.header))) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        if self.notes:
            lines += [""] + [f"{n}  " for n in self.notes]
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["task", "run", "checkpoint"] + [c.key.replace(AVERAGE, "average") for c in self.columns]
                        + ["averaged_over"])
        writer.writerows(self.csv_rows)
        return buf.getvalue()


def columns_for(suite, rows: list[Row]) -> list[Column]:
    """The suite's table columns, then any dataset of the results it lacks (outside the average);
    without a suite, the results' datasets, ImageNet last and outside the average."""
    found = sorted({dataset_key(r.dataset) for r in rows})
    if suite is None:
        inside = [d for d in found if d not in IMAGENET]
        return ([Column(d, d) for d in inside] + [Column(AVERAGE, f"Average ({len(inside)})", averaged=False)]
                + [Column(d, d, averaged=False) for d in found if d in IMAGENET])
    cols = []
    for key in suite.table:
        if key == AVERAGE:
            n = sum(1 for d in suite.datasets if suite.averaged(d))
            cols.append(Column(AVERAGE, f"Average ({n})", averaged=False))
        else:
            entry = suite.dataset(key)
            cols.append(Column(key, entry.title, entry.tasks, entry.metric, suite.averaged(entry)))
    known = {c.key for c in cols}
    cols += [Column(d, d, averaged=False) for d in found if d not in known]
    return cols


def pick_checkpoints(rows: list[Row], wanted: dict[str, str | None]) -> list[tuple[str, str]]:
    """(run, checkpoint) per asked run: the named checkpoint, else its latest step with results."""
    out = []
    for run, ckpt in wanted.items():
        mine = [r.checkpoint for r in rows if r.run == run]
        if ckpt is None:
            ckpt = max(mine, key=_step) if mine else None
        out.append((run, ckpt))
    return out


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.1f}"


def build(rows: list[Row], runs: list[tuple[str, str]], suite=None, title: str | None = None) -> PaperTable:
    """The table of `runs` [(run, checkpoint)] from `rows` (results.load_rows), in `suite`'s layout."""
    cols = columns_for(suite, rows)
    by = {(r.run, r.checkpoint, dataset_key(r.dataset), r.task): r for r in rows}
    header = ["task", "run"] + [c.title for c in cols]
    md_rows, csv_rows, notes = [], [], []
    substituted: dict[str, str] = {}
    partial = False
    n_avg = sum(1 for c in cols if c.averaged)
    for task, label in ROW_TASKS:
        key = TASK_KEYS[task]
        if not any(r.task == task and (r.run, r.checkpoint) in runs for r in rows):
            continue
        values: dict[tuple[str, str], dict[str, float | None]] = {}
        for run, ckpt in runs:
            line, raw, averaged = [label, f"{run}/{ckpt}"], [label, run, ckpt], []
            values[run, ckpt] = {}
            for c in cols:
                if c.key == AVERAGE:
                    continue
                row = by.get((run, ckpt, c.key, task))
                value = None
                if row is not None:
                    value, used = metric_of(row, c.metric)
                    if c.metric and used != c.metric:
                        substituted[c.title] = f"{c.metric} (shown: {used})"
                values[run, ckpt][c.key] = value
                if c.averaged and (c.tasks is None or key in c.tasks) and value is not None:
                    averaged.append(value)
            expected = sum(1 for c in cols if c.averaged and (c.tasks is None or key in c.tasks))
            mean = sum(averaged) / len(averaged) if averaged else None
            values[run, ckpt][AVERAGE] = mean
            for c in cols:
                if c.key == AVERAGE:
                    mark = "" if len(averaged) == expected or mean is None else f"* ({len(averaged)}/{expected})"
                    partial = partial or bool(mark)
                    line.append(_fmt(mean) + mark)
                    raw.append("" if mean is None else f"{100 * mean:.2f}")
                elif c.tasks is not None and key not in c.tasks:
                    line.append("")
                    raw.append("")
                else:
                    v = values[run, ckpt][c.key]
                    line.append(_fmt(v))
                    raw.append("" if v is None else f"{100 * v:.2f}")
            raw.append(str(len(averaged)))
            md_rows.append(line)
            csv_rows.append(raw)
        if len(runs) == 2:
            md, raw = _difference(label, runs, cols, key, values, by, task)
            md_rows.append(md)
            csv_rows.append(raw)
    if partial:
        notes.append("* the mean over the datasets with a result (of those the suite averages)")
    for name, why in sorted(substituted.items()):
        notes.append(f"{name}: the suite scores it by {why}")
    if not n_avg:
        notes.append("no dataset enters the average")
    default = f"{suite.name}: {suite.title}" if suite else "the datasets of these results (in no suite)"
    return PaperTable(title or default, cols, header, md_rows,
                      csv_rows, notes)


def _difference(label, runs, cols, key, values, by, task):
    """The row of (second - first) per column; the average's is the mean difference over the averaged
    datasets both runs have. The paired interval, once there is one (paired_interval), follows it."""
    (ra, ca), (rb, cb) = runs
    a, b = values[ra, ca], values[rb, cb]
    md, raw = [label, f"Δ {rb}/{cb} − {ra}/{ca}"], [label, f"{rb} - {ra}", f"{cb} - {ca}"]

    def in_protocol(c):
        return c.tasks is None or key in c.tasks

    both = [c for c in cols if c.key != AVERAGE and in_protocol(c) and a.get(c.key) is not None
            and b.get(c.key) is not None]
    averaged = [c for c in both if c.averaged]
    for c in cols:
        if c.key == AVERAGE:
            chosen = averaged
            diff = sum(b[x.key] - a[x.key] for x in chosen) / len(chosen) if chosen else None
        elif not in_protocol(c):
            md.append("")
            raw.append("")
            continue
        else:
            chosen = [c] if c in both else []
            diff = b[c.key] - a[c.key] if chosen else None
        pairs = [(by[ra, ca, x.key, task], by[rb, cb, x.key, task]) for x in chosen]
        interval = paired_interval(pairs) if pairs else None
        md.append(_signed(diff) + (f" [{100 * interval[0]:+.1f}, {100 * interval[1]:+.1f}]" if interval else ""))
        raw.append("" if diff is None else f"{100 * diff:.2f}")
    raw.append(str(len(averaged)))
    return md, raw
