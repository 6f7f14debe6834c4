"""The paper's table (`laclip eval report --layout paper`): rows zero-shot, linear probe and few-shot,
one row per run within each, one column per dataset in the suite's order and the suite's average,
in percent; with two runs a difference row (second minus first) under each task.

Columns come from a suite file (laclip.eval.suites: laclip-paper puts the 15 downstream sets, their
average, then ImageNet, as the paper's tables do); without one, from the datasets in the results,
ImageNet last and out of the average. A cell is blank where the suite's protocol does not run that
task (few-shot on ImageNet), `-` where a result is missing; an average over fewer datasets than the
suite averages is marked `*` with the count. The difference row pairs two results only when they were
made with the same settings but the checkpoint (laclip.eval.comparison): both rows then show that pair;
where no such pair exists the difference is `≠` and a note under the table says which settings differ.
The rows are the tasks whose spec gives a `paper_row` (laclip.eval.tasks). No torch here.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from laclip.eval import tasks
from laclip.eval.results import Row, _step

UNPAIRED = "≠"
IMAGENET = ("imagenet1k", "imagenet-1k", "imagenet")
AVERAGE = "@average"


# -- the one place that reads a result's names and numbers (CLIP_benchmark's names: keep them here) ------
def dataset_key(name: str) -> str:
    """A result's dataset as a store folder name: `wds/vtab/cifar10` (CLIP_benchmark's) -> `vtab-cifar10`."""
    return name.removeprefix("wds/").replace("/", "-").replace("_", "-")


def metric_of(row: Row, wanted: str | None = None) -> tuple[float | None, str]:
    """(value, metric name) of a result: the suite's main metric `wanted` where the file has it (or can
    be derived: mean_recall@1), else the task's headline metric (TaskSpec.headline)."""
    metrics = row.record["metrics"]  # numbers or None (laclip.eval.records)
    if wanted == "mean_recall@1" and wanted not in metrics:
        parts = [metrics.get("image_retrieval_recall@1"), metrics.get("text_retrieval_recall@1")]
        if None not in parts:
            return sum(parts) / 2, wanted
    if wanted and row.spec and row.spec.result_metric(wanted) in metrics:  # CLIP_benchmark's probe names: lp_
        wanted = row.spec.result_metric(wanted)
    if wanted and metrics.get(wanted) is not None:
        return float(metrics[wanted]), wanted
    return (None if row.value is None else float(row.value)), row.headline


def paired_interval(pairs: list[tuple[Row, Row]], store=None, metrics: list[str | None] | None = None,
                    seed: int = 0) -> tuple[float, float] | None:
    """The 95% interval of (second - first) over the datasets of `pairs` (one pair: one dataset; several:
    the average of the per-dataset differences), from a paired bootstrap over each dataset's test images
    (few-shot: episodes) read from the results' per-sample outcomes (laclip.eval.outcomes, checked
    against their results). `metrics`: the metric shown per pair (metric_of). None where there is no
    store, a pair lacks outcomes, is not paired (other test images) or its metric has no per-sample form
    (mean_recall@1)."""
    from laclip.eval import outcomes as oc
    from laclip.eval import stats

    if store is None or not pairs:
        return None
    items = []
    for i, (ra, rb) in enumerate(pairs):
        oa, ob = ra.outcomes(store), rb.outcomes(store)
        if oa is None or ob is None or oc.same_samples(ra.task, oa, ob):
            return None
        name = (metrics[i] if metrics else None) or ra.headline
        name = name.removeprefix(ra.spec.metric_prefix)  # the outcomes' names lack the linear probe's `lp_`
        obs_a, obs_b = oc.observations(ra.task, oa), oc.observations(rb.task, ob)
        if name not in obs_a or name not in obs_b:
            return None
        kind, va, groups, _ = obs_a[name]
        items.append((kind, va, obs_b[name][1], groups))
    _, lo, hi = stats.paired_average(items, seed=seed)
    return lo, hi


def choose(rows: list[Row], runs: list[tuple[str, str]]) -> tuple[dict, dict]:
    """The result shown per (run, checkpoint, dataset, task): with two runs, the newest pair made with the
    same settings but the checkpoint, else the newest of each; otherwise the newest. Also, per (dataset,
    task) that two runs have but cannot pair, why."""
    from laclip.eval.comparison import pick, unlike

    found: dict[tuple, list[Row]] = {}
    for r in rows:
        if (r.run, r.checkpoint) in runs:
            found.setdefault((r.run, r.checkpoint, dataset_key(r.dataset), r.task), []).append(r)
    by = {k: max(v, key=lambda r: (r.created, r.result_id or "")) for k, v in found.items()}
    unpaired = {}
    if len(runs) == 2:
        (ra, ca), (rb, cb) = runs
        for _, _, d, t in [k for k in found if k[:2] == (ra, ca)]:
            if (rb, cb, d, t) in found:
                by[ra, ca, d, t], by[rb, cb, d, t] = pick(found[ra, ca, d, t], found[rb, cb, d, t])
                why = unlike(by[ra, ca, d, t], by[rb, cb, d, t])
                if why:
                    unpaired[d, t] = why
    return by, unpaired


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


def build(rows: list[Row], runs: list[tuple[str, str]], suite=None, title: str | None = None,
          store=None) -> PaperTable:
    """The table of `runs` [(run, checkpoint)] from `rows` (results.load_rows, every result: `choose` picks),
    in `suite`'s layout. `store`: where the results' per-sample outcomes are, for the difference row's
    paired intervals."""
    cols = columns_for(suite, rows)
    by, unpaired = choose(rows, runs)
    header = ["task", "run"] + [c.title for c in cols]
    md_rows, csv_rows, notes = [], [], []
    substituted: dict[str, str] = {}
    partial = False
    n_avg = sum(1 for c in cols if c.averaged)
    for spec in sorted((t for t in tasks.TASKS if t.paper_row is not None), key=lambda t: t.paper_row):
        task, label, key = spec.result_name, spec.title, spec.name
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
            md, raw, skipped = _difference(label, runs, cols, key, values, by, task, store,
                                           {d for d, t in unpaired if t == task})
            md_rows.append(md)
            csv_rows.append(raw)
            notes.extend(f"{UNPAIRED} {label} {d}: not paired, {why}" for (d, t), why in sorted(unpaired.items())
                         if t == task and d in skipped)
            partial = partial or any("*" in cell for cell in md[2:])
    if partial:
        notes.append("* the mean over the datasets with a result (of those the suite averages; for a difference, "
                     "of those paired)")
    for name, why in sorted(substituted.items()):
        notes.append(f"{name}: the suite scores it by {why}")
    if not n_avg:
        notes.append("no dataset enters the average")
    default = f"{suite.name}: {suite.title}" if suite else "the datasets of these results (in no suite)"
    return PaperTable(title or default, cols, header, md_rows,
                      csv_rows, notes)


def _difference(label, runs, cols, key, values, by, task, store=None, unpaired: set = frozenset()):
    """The row of (second - first) per column; the average's is the mean difference over the averaged
    datasets both runs have, each followed by its paired 95% interval where the outcomes give one. A
    dataset in `unpaired` (results made with other settings) shows UNPAIRED and stays out of the average,
    marked `*` like a partial one. Also the datasets so marked."""
    (ra, ca), (rb, cb) = runs
    a, b = values[ra, ca], values[rb, cb]
    md, raw = [label, f"Δ {rb}/{cb} − {ra}/{ca}"], [label, f"{rb} - {ra}", f"{cb} - {ca}"]

    def in_protocol(c):
        return c.tasks is None or key in c.tasks

    present = [c for c in cols if c.key != AVERAGE and in_protocol(c) and a.get(c.key) is not None
               and b.get(c.key) is not None]
    both = [c for c in present if c.key not in unpaired]
    averaged = [c for c in both if c.averaged]
    skipped = {c.key for c in present if c.key in unpaired}
    for c in cols:
        if c.key == AVERAGE:
            chosen = averaged
            diff = sum(b[x.key] - a[x.key] for x in chosen) / len(chosen) if chosen else None
            expected = sum(1 for x in present if x.averaged)
            mark = f"* ({len(chosen)}/{expected})" if chosen and len(chosen) < expected else ""
        elif not in_protocol(c):
            md.append("")
            raw.append("")
            continue
        elif c.key in skipped:
            md.append(UNPAIRED)
            raw.append("")
            continue
        else:
            chosen, mark = ([c] if c in both else []), ""
            diff = b[c.key] - a[c.key] if chosen else None
        pairs = [(by[ra, ca, x.key, task], by[rb, cb, x.key, task]) for x in chosen]
        shown = [metric_of(p[0], x.metric)[1] for p, x in zip(pairs, chosen)]
        interval = paired_interval(pairs, store, shown) if pairs else None
        md.append(_signed(diff) + (f" [{100 * interval[0]:+.1f}, {100 * interval[1]:+.1f}]" if interval else "")
                  + mark)
        raw.append("" if diff is None else f"{100 * diff:.2f}")
    raw.append(str(len(averaged)))
    return md, raw, skipped
