"""`laclip eval compare A B`: two checkpoints' results, metric by metric, with paired intervals.

A and B are runs (their newest evaluated checkpoint), `RUN/CHECKPOINT`, or checkpoint URLs and
paths (`ROOT/checkpoints/RUN/step_N[.pt]`, whose evaluations live under that root). For every
(dataset, task) both have, the results are paired through their per-sample outcomes
(laclip.eval.outcomes): the same test images in the same order, the same few-shot episodes.
Of several results of one (dataset, task) made with other settings, the newest pair made with
the same settings is compared. No torch here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from laclip import layout
from laclip.errors import NotFound, UsageError
from laclip.eval import outcomes as oc
from laclip.eval import stats
from laclip.eval.results import HEADLINE, SHORT, Row, _step, load_rows
from laclip.storage.base import Store

METRIC_ORDER = ["acc1", "acc5", "mean_per_class_recall"]


@dataclass
class Side:
    ref: str
    store: Store
    run: str
    checkpoint: str

    @property
    def label(self) -> str:
        return f"{self.run}/{self.checkpoint}"


def resolve(store: Store, ref: str) -> Side:
    """A run (its newest evaluated checkpoint), RUN/CHECKPOINT, or a checkpoint URL or path."""
    from laclip.storage import open_store

    ref = ref.strip()
    if not ref:
        raise UsageError("an empty checkpoint or run name")
    split = layout.split_checkpoint_url(ref) if "://" in ref or ref.startswith(("/", ".", "~")) else None
    if split:
        root, path = split
        store = open_store(root)
        parts = path.split("/")
        run, name = parts[1], parts[-1].removesuffix(".pt")
    else:
        parts = [p for p in ref.removeprefix(layout.CHECKPOINTS + "/").strip("/").split("/") if p]
        run, name = parts[0], (parts[1].removesuffix(".pt") if len(parts) > 1 else None)
    rows = load_rows(store, run, newest=False)
    if not rows:
        raise NotFound(f"no evaluation results under {store.url_of(layout.evals_of(run))}/: evaluate it first "
                       f"(`laclip submit eval --checkpoint {run}/step_N`)")
    names = sorted({r.checkpoint for r in rows}, key=_step)
    if name is None:
        name = names[-1]
    elif name not in names:
        raise NotFound(f"run {run!r} has no results for checkpoint {name!r}; it has: {', '.join(names)}")
    return Side(ref, store, run, name)


def _settings(row: Row) -> str:
    ident = dict(row.record.get("laclip", {}).get("identity") or {})
    for k in ("checkpoint", "model", "version"):
        ident.pop(k, None)
    return json.dumps(ident, sort_keys=True)


def _load_outcomes(side: Side, row: Row) -> dict | None:
    path = layout.eval_outcomes(row.run, row.checkpoint, row.dataset, row.task, row.result_id or "")
    try:
        return oc.from_bytes(side.store.read_bytes(path), side.store.url_of(path))
    except (NotFound, FileNotFoundError):
        return None


@dataclass
class Compared:
    dataset: str
    task: str
    differences: dict[str, stats.Difference] = field(default_factory=dict)
    note: str | None = None  # why nothing was compared, or what differs


def _pick(rows_a: list[Row], rows_b: list[Row]) -> tuple[Row, Row, bool]:
    """The newest pair with the same settings, else the newest of each (False)."""
    newest = lambda rows: max(rows, key=lambda r: (r.created, r.result_id or ""))  # noqa: E731
    same = [(a, b) for a in rows_a for b in rows_b if _settings(a) == _settings(b)]
    if same:
        a, b = max(same, key=lambda p: (min(p[0].created, p[1].created), p[0].result_id or ""))
        return a, b, True
    return newest(rows_a), newest(rows_b), False


def compare(a: Side, b: Side, datasets: list[str] | None = None, *, resamples: int = stats.RESAMPLES,
            seed: int = 0) -> list[Compared]:
    rows_a = [r for r in load_rows(a.store, a.run, newest=False) if r.checkpoint == a.checkpoint]
    rows_b = [r for r in load_rows(b.store, b.run, newest=False) if r.checkpoint == b.checkpoint]
    keys = sorted({(r.dataset, r.task) for r in rows_a} & {(r.dataset, r.task) for r in rows_b},
                  key=lambda k: (k[0], list(HEADLINE).index(k[1]) if k[1] in HEADLINE else 99))
    if datasets:
        unknown = [d for d in datasets if d not in {k[0] for k in keys}]
        if unknown:
            raise NotFound(f"{', '.join(unknown)}: not evaluated for both {a.label} and {b.label}")
        keys = [k for k in keys if k[0] in datasets]
    if not keys:
        raise NotFound(f"{a.label} and {b.label} have no (dataset, task) evaluated in common")
    out = []
    for dataset, task in keys:
        ra, rb, same = _pick([r for r in rows_a if (r.dataset, r.task) == (dataset, task)],
                             [r for r in rows_b if (r.dataset, r.task) == (dataset, task)])
        item = Compared(dataset, task)
        oa, ob = _load_outcomes(a, ra), _load_outcomes(b, rb)
        if oa is None or ob is None:
            which = " and ".join(s.label for s, o in ((a, oa), (b, ob)) if o is None)
            item.note = (f"no per-sample outcomes for {which} (evaluated before laclip kept them): evaluate again "
                         "to compare")
        else:
            why = oc.same_samples(task, oa, ob)
            if why:
                item.note = f"not paired: {why}"
            else:
                item.differences = oc.compare(task, oa, ob, resamples=resamples, seed=seed)
                if not same:
                    item.note = "evaluated with other settings (templates, class names, options or seed)"
        out.append(item)
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
            rows.append({"dataset": item.dataset, "task": item.task, "metric": None, "note": item.note})
            continue
        for metric in sorted(item.differences, key=_metric_rank):
            d = item.differences[metric]
            rows.append({"dataset": item.dataset, "task": item.task, "metric": metric,
                         "a": 100 * d.a, "b": 100 * d.b, "diff": 100 * d.diff, "lo": 100 * d.lo, "hi": 100 * d.hi,
                         "p_mcnemar": d.p_mcnemar, "discordant": list(d.discordant) if d.discordant else None,
                         "n": d.n, "resamples": d.resamples, "note": item.note})
    return rows


def metric_name(task: str, metric: str | None) -> str:
    if metric is None:
        return SHORT.get(task, task)
    if task == "zeroshot_retrieval":
        direction, k = ("t2i" if metric.startswith("image_") else "i2t"), metric.rsplit("@", 1)[-1]
        return f"{direction} R@{k}"
    return f"{SHORT.get(task, task)} {oc.LABELS.get(metric, metric)}"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "-"
    return f"{p:.2g}" if p >= 1e-4 else "<1e-4"


def table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["dataset", "metric", "A", "B", "B - A", "95% CI", "McNemar p", "n"]
    body = []
    for r in rows:
        if r["metric"] is None:
            body.append([r["dataset"], metric_name(r["task"], None), "-", "-", "-", "-", "-", r["note"] or ""])
            continue
        body.append([r["dataset"], metric_name(r["task"], r["metric"]), f"{r['a']:.1f}", f"{r['b']:.1f}",
                     f"{r['diff']:+.1f}", f"[{r['lo']:+.1f}, {r['hi']:+.1f}]", fmt_p(r["p_mcnemar"]), str(r["n"])])
    return header, body


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
