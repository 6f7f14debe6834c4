"""`laclip eval compare A B`: two checkpoints' results, metric by metric, with paired intervals.

A and B are runs (their newest evaluated checkpoint), `RUN/CHECKPOINT`, or checkpoint URLs and
paths (`ROOT/checkpoints/RUN/step_N[.pt]`, whose evaluations live under that root). Two results
are paired only when every setting that decided them (their result identity) is the same but the
checkpoint: the same dataset files, split, templates, options and seed, the same evaluation code;
then through their per-sample outcomes (laclip.eval.outcomes): the same test images in the same
order, the same few-shot episodes. Of several results of one (dataset, task), the newest pair made
with the same settings is compared; where there is none, the row says which settings differ and
shows no difference. The paper layout (laclip.eval.paper) and the pipeline pair the same way.
No torch here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from laclip import layout
from laclip.errors import NotFound, UsageError
from laclip.eval import outcomes as oc
from laclip.eval import stats
from laclip.eval.config import RUN_RE
from laclip.eval.results import Row, _step, column_order, load_rows
from laclip.storage.base import Store

METRIC_ORDER = ["acc1", "acc5", "mean_per_class_recall"]
FORMS = "a run, RUN/CHECKPOINT, or a checkpoint path or URL (ROOT/checkpoints/RUN/step_N[.pt])"


@dataclass
class Side:
    ref: str
    store: Store
    run: str
    checkpoint: str

    @property
    def label(self) -> str:
        return f"{self.run}/{self.checkpoint}"


def resolve(store: Store, ref: str, which: str = "the checkpoint") -> Side:
    """A run (its newest evaluated checkpoint), RUN/CHECKPOINT, or a checkpoint URL or path."""
    from laclip.storage import open_store

    text = ref.strip()
    if "://" in text or text.startswith(("/", ".", "~")):
        found = layout.split_checkpoint_url(text if "://" in text else os.path.expanduser(text))
        root, parts = (found[0], found[1].split("/")[1:]) if found else ("", [])
        if len(parts) != 2 or not (root.partition("://")[2] if "://" in text else root).strip("/"):
            raise UsageError(f"{which} {ref!r} is not a checkpoint path or URL: give {FORMS}")
        try:
            store = open_store(root)
        except UsageError as exc:  # say which argument: the root is the user's B, not --root
            raise UsageError(f"{which} {ref!r}: {exc}") from None
    else:
        parts = [p for p in text.removeprefix(layout.CHECKPOINTS + "/").strip("/").split("/") if p]
    names = [parts[0], parts[1].removesuffix(".pt")] if len(parts) == 2 else parts
    if not 1 <= len(names) <= 2 or not all(RUN_RE.fullmatch(n) for n in names):
        raise UsageError(f"{which} {ref!r} names no run: give {FORMS}")
    run, name = names[0], (names[1] if len(names) == 2 else None)
    rows = load_rows(store, run, newest=False)
    if not rows:
        raise NotFound(f"no evaluation results under {store.url_of(layout.evals_of(run))}/: evaluate it first "
                       f"(`laclip submit eval --checkpoint {run}/step_N`)")
    have = sorted({r.checkpoint for r in rows}, key=_step)
    if name is None:
        name = have[-1]
    elif name not in have:
        raise NotFound(f"run {run!r} has no results for checkpoint {name!r}; it has: {', '.join(have)}")
    return Side(ref, store, run, name)


# -- which two results may be paired ----------------------------------------------------------------
def settings(row: Row) -> dict | None:
    """What decided a result but its checkpoint, flattened (`fewshot.episodes`); None if it does not say."""
    ident = row.record.get("laclip", {}).get("identity")
    if not ident:
        return None
    flat: dict = {}

    def walk(value, prefix: str) -> None:
        if isinstance(value, dict) and value:
            for k in sorted(value):
                walk(value[k], f"{prefix}{k}.")
        else:
            flat[prefix[:-1]] = value

    walk({k: v for k, v in ident.items() if k not in ("checkpoint", "model")}, "")
    return flat


def unlike(a: Row, b: Row) -> str | None:
    """Why two results may not be paired (a setting other than the checkpoint differs), else None."""
    sa, sb = settings(a), settings(b)
    if sa is None or sb is None:
        return "a result does not record its settings (written by an older laclip): evaluate it again"
    keys = [k for k in sorted(set(sa) | set(sb)) if sa.get(k) != sb.get(k)]
    if not keys:
        return None
    shown = "; ".join(f"{'results version' if k == 'version' else k} {_value(sa.get(k))} vs {_value(sb.get(k))}"
                      for k in keys[:3])
    return f"evaluated with other settings ({shown}{'; ...' if len(keys) > 3 else ''})"


def _value(v) -> str:
    text = json.dumps(v)
    return text if len(text) <= 24 else text[:12] + "...\""


def pick(rows_a: list[Row], rows_b: list[Row]) -> tuple[Row, Row]:
    """The newest pair made with the same settings, else the newest result of each (which `unlike`)."""
    same = [(a, b) for a in rows_a for b in rows_b if unlike(a, b) is None]
    if same:
        return max(same, key=lambda p: (min(p[0].created, p[1].created), p[0].result_id or "", p[1].result_id or ""))
    a, b = (max(rows, key=lambda r: (r.created, r.result_id or "")) for rows in (rows_a, rows_b))
    return a, b


# -- the comparison --------------------------------------------------------------------------------
@dataclass
class Compared:
    dataset: str
    task: str
    differences: dict[str, stats.Difference] = field(default_factory=dict)
    note: str | None = None  # why nothing was compared
    values: tuple[float | None, float | None] = (None, None)  # the two results' headline metric


def pair(a: Side, ra: Row, b: Side, rb: Row, *, resamples: int = stats.RESAMPLES, seed: int = 0) -> Compared:
    """The differences of two results of one (dataset, task), or a note saying why there are none."""
    item = Compared(ra.dataset, ra.task, values=(ra.value, rb.value))
    why = unlike(ra, rb)
    if why:
        item.note = f"not paired: {why}"
        return item
    oa, ob = ra.outcomes(a.store), rb.outcomes(b.store)
    if oa is None or ob is None:
        which = " and ".join(s.label for s, o in ((a, oa), (b, ob)) if o is None)
        item.note = f"no per-sample outcomes for {which} (evaluated before laclip kept them): evaluate again to compare"
    elif oc.same_samples(ra.task, oa, ob):
        item.note = f"not paired: {oc.same_samples(ra.task, oa, ob)}"
    else:
        item.differences = oc.compare(ra.task, oa, ob, resamples=resamples, seed=seed)
    return item


def compare(a: Side, b: Side, datasets: list[str] | None = None, *, results: set[str] | None = None,
            resamples: int = stats.RESAMPLES, seed: int = 0) -> list[Compared]:
    """Every (dataset, task) both have; `results`: only these result ids (a pipeline's own)."""
    rows_a, rows_b = ([r for r in load_rows(s.store, s.run, newest=False) if r.checkpoint == s.checkpoint
                       and (results is None or r.result_id in results)] for s in (a, b))
    keys = sorted({(r.dataset, r.task) for r in rows_a} & {(r.dataset, r.task) for r in rows_b}, key=column_order)
    if datasets:
        unknown = [d for d in datasets if d not in {k[0] for k in keys}]
        if unknown:
            raise NotFound(f"{', '.join(unknown)}: not evaluated for both {a.label} and {b.label}")
        keys = [k for k in keys if k[0] in datasets]
    if not keys:
        raise NotFound(f"{a.label} and {b.label} have no (dataset, task) evaluated in common")
    out = []
    for key in keys:
        ra, rb = pick(*([r for r in rows if (r.dataset, r.task) == key] for rows in (rows_a, rows_b)))
        out.append(pair(a, ra, b, rb, resamples=resamples, seed=seed))
    return out


def _metric_rank(metric: str) -> tuple:
    head, _, k = metric.rpartition("@")
    if head:  # retrieval: text-to-image first, then by K
        return (9, head, int(k) if k.isdigit() else 0)
    return (METRIC_ORDER.index(metric) if metric in METRIC_ORDER else 9, metric, 0)


def flat(items: list[Compared]) -> list[dict]:
    """One dict per (dataset, task, metric), percent points, for tables, JSON and charts."""
    rows = []
    for item in items:
        if not item.differences:
            a, b = (None if v is None else 100 * v for v in item.values)
            rows.append({"dataset": item.dataset, "task": item.task, "metric": None, "a": a, "b": b,
                         "note": item.note})
            continue
        for metric in sorted(item.differences, key=_metric_rank):
            d = item.differences[metric]
            rows.append({"dataset": item.dataset, "task": item.task, "metric": metric,
                         "a": 100 * d.a, "b": 100 * d.b, "diff": 100 * d.diff, "lo": 100 * d.lo, "hi": 100 * d.hi,
                         "p_mcnemar": d.p_mcnemar, "discordant": list(d.discordant) if d.discordant else None,
                         "n": d.n, "resamples": d.resamples, "note": item.note})
    return rows


def metric_name(task: str, metric: str | None) -> str:
    from laclip.eval import tasks

    spec = tasks.of_result(task)
    return spec.metric_label(metric) if spec else f"{task} {metric or ''}".strip()


def fmt_p(p: float | None) -> str:
    if p is None:
        return "-"
    return f"{p:.2g}" if p >= 1e-4 else "<1e-4"


def table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and body; a row that is not compared shows both results and, under the table, why."""
    header = ["dataset", "metric", "A", "B", "B - A", "95% CI", "McNemar p", "n"]
    body = []
    for r in rows:
        if r["metric"] is None:
            a, b = ("-" if v is None else f"{v:.1f}" for v in (r["a"], r["b"]))
            body.append([r["dataset"], metric_name(r["task"], None), a, b, "-", "-", "-", "-"])
            continue
        body.append([r["dataset"], metric_name(r["task"], r["metric"]), f"{r['a']:.1f}", f"{r['b']:.1f}",
                     f"{r['diff']:+.1f}", f"[{r['lo']:+.1f}, {r['hi']:+.1f}]", fmt_p(r["p_mcnemar"]), str(r["n"])])
    return header, body


def notes(rows: list[dict]) -> list[str]:
    """One line per (dataset, task) that was not compared: what the screen says under the table."""
    return [f"{r['dataset']} {metric_name(r['task'], None)}: {r['note']}" for r in rows if r["metric"] is None]


def chart(rows: list[dict], path: str, title: str) -> None:
    """B - A per metric as points with their 95 % interval as error bars, zero marked."""
    from laclip.eval.results import _pyplot

    plt = _pyplot()
    rows = [r for r in rows if r["metric"] is not None]
    labels = [f"{r['dataset']} {metric_name(r['task'], r['metric'])}" for r in rows]
    y = list(range(len(rows)))[::-1]
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.45 * len(rows) + 1.2)), dpi=120)
    diffs = [r["diff"] for r in rows]
    err = [[r["diff"] - r["lo"] for r in rows], [r["hi"] - r["diff"] for r in rows]]
    colours = ["tab:green" if r["lo"] > 0 else "tab:red" if r["hi"] < 0 else "tab:grey" for r in rows]
    for i, colour in enumerate(colours):
        ax.errorbar([diffs[i]], [y[i]], xerr=[[err[0][i]], [err[1][i]]], fmt="o", color=colour, capsize=4,
                    linewidth=1.5)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("B - A (percentage points, 95% paired-bootstrap interval)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
