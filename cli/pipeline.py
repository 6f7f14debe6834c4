"""`laclip pipeline --local`: the whole method on the demo dataset, on this machine.

demo data -> rewrite (eda by default) -> train CLIP and LaCLIP with the same seed and budget
-> evaluate both -> a table and a chart of CLIP vs LaCLIP: each difference with its 95 % paired-
bootstrap interval over the test images and McNemar's p for top-1 (laclip.eval.comparison);
with --seeds N, N pairs of models and the mean difference with a Student-t interval across seeds.
Each stage calls the same local
runner as `laclip submit <stage> --local`, so outputs land in the store exactly where the
cluster jobs put them. Run ids are derived from the settings, so running it again reuses
every finished stage (the rewrite worker skips written shards, training resumes from its
last checkpoint, evaluation reuses its result files).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Optional

import typer

from laclip.errors import UsageError
from laclip_cli.console import out, styled
from laclip_cli.state import state

EVAL_SET = "demo-eval"
TASKS = ["zeroshot", "fewshot", "linear_probe"]


@dataclass
class Timings:
    seconds: dict[str, float] = field(default_factory=dict)

    def run(self, name: str, fn, *args, **kwargs):
        out.rule(styled((name, "bold")))
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        self.seconds[name] = time.perf_counter() - start
        out.print(styled(("done", "green"), f" {name} in {self.seconds[name]:.0f}s"))
        return result


def pipeline(
    local: bool = typer.Option(False, "--local", help="Run every stage here against a local store (required)."),
    engine: str = typer.Option("eda", help="Rewrite engine: eda (no weights), or hf with --model DIR."),
    model: Optional[str] = typer.Option(None, "--model", help="Local LLM checkpoint folder for --engine hf."),
    steps: Optional[int] = typer.Option(None, min=1, help="Training steps per model (default: the demo preset's)."),
    seed: int = typer.Option(0, help="Seed of the first pair of models: data order, initialisation and evaluation."),
    seeds: int = typer.Option(1, min=1, max=20, help="Train this many seeds per model (seed, seed+1, ...) and report "
                                                     "mean differences with 95% intervals across seeds."),
    nproc: int = typer.Option(1, min=1, max=8, help="Training processes per model (torchrun, gloo)."),
) -> None:
    """Rewrite, train CLIP and LaCLIP side by side, evaluate both, and compare them: each difference with its
    95% paired-bootstrap interval over the test images (and across seeds with --seeds N)."""
    if not local:
        raise UsageError(
            "the pipeline runs on this machine only (--local); on a cluster, submit the stages one by one: "
            "`laclip submit rewrite`, `laclip submit train`, `laclip submit eval` (see the README)"
        )
    from laclip.config import load_config
    from laclip.rewrite.config import RewriteConfig
    from laclip.storage import open_store, resolve_root

    root = resolve_root(state.root)
    if root.startswith("gs://"):
        raise UsageError("`laclip pipeline --local` needs a local folder as --root / LACLIP_ROOT, not a bucket")
    if engine not in ("eda", "hf"):
        raise UsageError(f"--engine {engine!r}: the local pipeline runs eda, or hf with --model DIR")
    flags = {"seed": "--seed", "model": "--model", "steps": "--steps", "procs_per_node": "--nproc"}
    rewrite_cfg = load_config(RewriteConfig, {"dataset": "demo", "engine": engine, "model": model, "seed": seed,
                                              "root": root}, flags=flags).check()  # bad flags fail here
    from laclip.train.config import TrainConfig

    load_config(TrainConfig, {"preset": "demo", "run": "pipeline-check", "root": root, "seed": seed,
                              "procs_per_node": nproc, **({"steps": steps} if steps else {})}, flags=flags)
    if seed + seeds - 1 > 2**63 - 1:  # the last pair's seed must be a valid seed too
        raise UsageError(f"invalid --seeds {seeds}: with --seed {seed} the last seed would pass 2^63 - 1")
    store = open_store(root)
    timings = Timings()
    out.print(f"store: {store.url}")

    timings.run("data: demo dataset", _ensure_demo, store)
    data = _data_digest(store)
    rewrite_id = timings.run(f"rewrite: {engine} over demo", _rewrite, rewrite_cfg, data)
    kept = _rewrite_stats(store, rewrite_id)
    pairs = []
    for s in range(seed, seed + seeds):
        tag = _tag(rewrite_id, steps, s, nproc)
        runs = {"CLIP": f"demo-clip-{tag}", "LaCLIP": f"demo-laclip-{tag}"}
        suffix = f", seed {s}" if seeds > 1 else ""
        checkpoints = {label: timings.run(f"train: {label} ({run}){suffix}", _train, root, run,
                                          rewrite_id if label == "LaCLIP" else None, steps, s, nproc)
                       for label, run in runs.items()}
        records = {label: timings.run(f"eval: {label}{suffix}", _evaluate, root, ckpt, s)
                   for label, ckpt in checkpoints.items()}
        results = {label: {r["task"]: r["metrics"] for r in recs} for label, recs in records.items()}
        pairs.append({"seed": s, "tag": tag, "runs": runs, "checkpoints": checkpoints, "results": results,
                      "differences": _paired(store, runs, checkpoints, records, s)})
    tag = pairs[0]["tag"] if seeds == 1 else _tag(rewrite_id, steps, [p["seed"] for p in pairs], nproc)
    _report(store, tag, rewrite_id, kept, pairs, timings)


def _tag(rewrite_id: str, steps, seed, nproc: int) -> str:
    """The runs' ids: from the rewrite set (which names the data, see _rewrite), the step budget, the seed, the
    processes and the demo preset's recipe, so that another setting or other data trains new models."""
    from laclip.train.config import PRESETS

    return hashlib.sha256(json.dumps([rewrite_id, steps, seed, nproc, PRESETS["demo"]], sort_keys=True,
                                     default=str).encode()).hexdigest()[:6]


def _data_digest(store) -> str:
    """The demo training shards' content (laclip.train.inputs.content_digest)."""
    from laclip import layout
    from laclip.data.registry import resolve_shards
    from laclip.train.inputs import content_digest

    shards = resolve_shards(store, "demo")
    return content_digest(store, [p for s in shards for p in (s.tar, s.parquet)], layout.dataset_folder("demo") + "/")


def _paired(store, runs: dict, checkpoints: dict, records: dict, seed: int) -> dict:
    """LaCLIP - CLIP of every metric, paired over the test images: {task: {metric: Difference dict}}. Only
    the results this pipeline evaluated are paired, so the differences are those of the numbers shown."""
    from laclip.eval import comparison

    sides = [comparison.Side(label, store, runs[label], checkpoints[label].rsplit("/", 1)[-1].removesuffix(".pt"))
             for label in ("CLIP", "LaCLIP")]
    mine = {r["laclip"]["result_id"] for recs in records.values() for r in recs}
    found: dict = {}
    for item in comparison.compare(*sides, [EVAL_SET], results=mine, seed=seed):
        if item.differences:
            found[item.task] = {m: d.to_dict() for m, d in item.differences.items()}
        elif item.note:
            out.print(styled(("note:", "yellow"), f" {item.task}: {item.note}"))
    return found


def _ensure_demo(store) -> None:
    from laclip.data.synth import is_complete, synth_demo

    if not is_complete(store):  # also finishes a build that was interrupted
        synth_demo(store)


def _rewrite(cfg, data: str) -> str:
    """The rewrite set of these settings for this data: the pipeline's rewrite id is the derived one and the
    data's digest, so that demo data drawn again (`laclip data synth --overwrite`) gets rewrites of its own."""
    from rich.progress import Progress

    from laclip_cli.stages.rewrite import for_here, run_here

    cfg = for_here(cfg)
    cfg = cfg.model_copy(update={"rewrite_id": f"{cfg.rewrite_id}-d{data[:6]}"})
    with Progress(console=out, transient=True) as progress:
        task = progress.add_task("shards rewritten", total=None)
        return run_here(cfg, progress=lambda done, total: progress.update(task, completed=done, total=total))


def _rewrite_stats(store, rewrite_id: str) -> dict:
    """Rewrites kept vs fallen back to the original, summed over the shards' stats."""
    from laclip.rewrite.output import summarize

    total = summarize(store, "demo", rewrite_id)
    kept, prompts, reasons = total["kept"], total["prompts"], total["fallbacks"]
    why = ", ".join(f"{n} {reason}" for reason, n in reasons.items())
    rest = f" (the rest keep the original caption: {why})" if why else ""
    out.print(f"rewrites kept: {kept:,} of {prompts:,}{rest}")
    ops = total.get("engine", {}).get("operations")
    if ops:
        missing = total["engine"].get("missing") or []
        out.print(styled(f"eda operations: {', '.join(ops)}",
                         *([" (", (f"without {', '.join(missing)}", "yellow"), ")"] if missing else [])))
    if prompts and not kept:
        out.print(styled(("warning:", "yellow"), " no rewrite passed the filters, so LaCLIP trains on the original "
                         "captions only"))
    return {"kept": kept, "prompts": prompts, "fallbacks": dict(reasons), "engine": total.get("engine", {})}


def _train(root: str, run: str, rewrite_id: Optional[str], steps: Optional[int], seed: int, nproc: int) -> str:
    """Train one model (or find it already trained); returns its final checkpoint path in the store."""
    from laclip import layout
    from laclip.storage import open_store
    from laclip.train.config import PRESETS, TrainConfig
    from laclip_cli.stages.train import train_here

    augment = "laclip" if rewrite_id else "none"
    cfg = TrainConfig(preset="demo", run=run, root=root, augment=augment, rewrites=rewrite_id, seed=seed,
                      procs_per_node=nproc, **({"steps": steps} if steps else {}))
    final = layout.checkpoint(run, steps or PRESETS["demo"]["steps"])
    store = open_store(root)
    if store.exists(final):  # reused only as the train stage reuses a run: the recorded identity is this one
        from laclip.data.registry import resolve_shards
        from laclip.train.inputs import check_run

        check_run(cfg, store, resolve_shards(store, cfg.dataset))
        out.print(f"reusing {final}", markup=False)
    else:
        with _LogProgress() as bar:
            train_here(cfg, echo=bar.line)
    return final


class _LogProgress:
    """A progress bar fed by the `step N/M ... loss L` lines rank 0 prints; other lines are kept
    and shown when training fails."""

    STEP = re.compile(r"step (\d+)/(\d+).*?loss ([0-9.]+)")

    def __enter__(self):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                                 TimeRemainingColumn(), console=out, transient=True)
        self.task = self.progress.add_task("starting torchrun", total=None)
        self.lines: list[str] = []
        self.progress.start()
        return self

    def line(self, text: str) -> None:
        m = self.STEP.search(text)
        if m:
            step, total, loss = int(m.group(1)), int(m.group(2)), m.group(3)
            self.progress.update(self.task, completed=step, total=total, description=f"training, loss {loss}")
        else:
            self.lines = (self.lines + [text])[-40:]

    def __exit__(self, *exc):
        self.progress.stop()
        if exc[0] is not None:  # the run failed: show what it said
            for text in self.lines:
                out.print(text, markup=False, highlight=False, soft_wrap=True)


def _evaluate(root: str, checkpoint: str, seed: int) -> list[dict]:
    from laclip.eval.config import EvalConfig
    from laclip_cli.stages.eval import results, run_here

    cfg = EvalConfig(checkpoint=checkpoint, root=root, datasets=[EVAL_SET], tasks=TASKS, seed=seed, workers=0,
                     batch_size=256, fewshot={"episodes": 200})
    if len(results(cfg)) == len(TASKS):
        out.print(f"reusing the results for {checkpoint}", markup=False)
    with out.status("embedding images and fitting classifiers"):
        return run_here(cfg, quiet=True)


# -- the comparison ------------------------------------------------------------------------
ROWS = [  # (label, task, metric in the outcomes' names): the metrics of TASKS the table shows
    ("zero-shot top-1", "zeroshot", "acc1"),
    ("zero-shot top-5", "zeroshot", "acc5"),
    ("zero-shot mean per-class recall", "zeroshot", "mean_per_class_recall"),
    ("few-shot 5-way 5-shot kNN", "fewshot", "acc1"),
    ("linear probe top-1", "linear_probe", "acc1"),
]


def _metric(results: dict[str, dict], task: str, metric: str) -> Optional[float]:
    value = results.get(task, {}).get(metric)
    return float(value) if isinstance(value, (int, float)) else None


def _report(store, tag, rewrite_id, kept, pairs: list[dict], timings: Timings) -> None:
    from rich.table import Table

    from laclip.eval.comparison import fmt_p
    from laclip.eval.stats import across_seeds

    many = len(pairs) > 1
    seeds = [p["seed"] for p in pairs]
    title = f"CLIP vs LaCLIP on {EVAL_SET} (8 classes, chance 12.5 %)" + (f", seeds {seeds[0]}-{seeds[-1]}" if many
                                                                           else "")
    table = Table(title=title)
    table.add_column("metric")
    for label in ("CLIP", "LaCLIP"):
        table.add_column(label + (" (mean)" if many else ""), justify="right")
    table.add_column("LaCLIP - CLIP" + (" (mean)" if many else ""), justify="right")
    table.add_column("95% CI " + ("across seeds" if many else "(paired bootstrap)"), justify="right")
    table.add_column("per seed [paired 95% CI]" if many else "McNemar p", justify="right")
    from laclip.eval.tasks import get

    rows, summary_rows = [], []
    for name, key, metric in ROWS:
        spec = get(key)
        task = spec.result_name
        values = [[_metric(p["results"][label], task, spec.result_metric(metric)) for p in pairs]
                  for label in ("CLIP", "LaCLIP")]
        diffs = [p["differences"].get(task, {}).get(metric) for p in pairs]
        if all(v is None for v in values[0] + values[1]) or any(d is None for d in diffs):
            continue
        means = [sum(v) / len(v) for v in values]
        if many:
            spread = across_seeds([d["diff"] for d in diffs])
            diff, lo, hi = spread.mean, spread.lo, spread.hi
            last = "  ".join(f"{100 * d['diff']:+.1f} [{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}]" for d in diffs)
        else:
            diff, lo, hi = diffs[0]["diff"], diffs[0]["lo"], diffs[0]["hi"]
            last = fmt_p(diffs[0]["p_mcnemar"])
        table.add_row(name, *(f"{100 * m:.1f}" for m in means), f"{100 * diff:+.1f}",
                      f"[{100 * lo:+.1f}, {100 * hi:+.1f}]", last)
        rows.append((name, means, diff, lo, hi))
        summary_rows.append({"metric": name, "task": task, "key": spec.result_metric(metric), "clip": means[0],
                             "laclip": means[1], "diff": diff, "lo": lo, "hi": hi, "per_seed": diffs,
                             "interval": "student-t across seeds" if many else "paired bootstrap over test images"})
    out.print(table)
    if many:
        out.print("A difference is clear when its interval across seeds excludes 0; each seed's own paired interval "
                  "says whether that pair of models differs on these test images.", soft_wrap=True)
    times = Table(title="stage timings")
    times.add_column("stage")
    times.add_column("seconds", justify="right")
    for name, seconds in timings.seconds.items():
        times.add_row(name, f"{seconds:.1f}")
    times.add_row(styled(("total", "bold")), styled((f"{sum(timings.seconds.values()):.1f}", "bold")))
    out.print(times)

    first = pairs[0]
    summary = {"rewrite_id": rewrite_id, "rewrites": kept, "seeds": seeds, "runs": first["runs"],
               "checkpoints": first["checkpoints"], "results": first["results"], "differences": summary_rows,
               "per_seed": pairs, "seconds": timings.seconds}
    from laclip import layout

    base = layout.pipeline_folder(tag)
    store.write_text(f"{base}/summary.json", json.dumps(summary, indent=2))
    store.write_bytes(f"{base}/clip_vs_laclip.png", _chart(rows, many))
    out.print(f"summary and chart: {store.url_of(base)}/summary.json, clip_vs_laclip.png")


def _chart(rows, many: bool) -> bytes:
    """Left: each model's accuracy; right: LaCLIP - CLIP with its 95 % interval as error bars."""
    import io

    from laclip.eval.results import _pyplot

    plt = _pyplot()
    fig, (ax, dx) = plt.subplots(1, 2, figsize=(11, 4), dpi=120, gridspec_kw={"width_ratios": [3, 2]})
    width = 0.38
    for i, label in enumerate(("CLIP", "LaCLIP")):
        xs = [j + (i - 0.5) * width for j in range(len(rows))]
        bars = ax.bar(xs, [100 * r[1][i] for r in rows], width, label=label + (" (mean over seeds)" if many else ""))
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.axhline(12.5, color="grey", linestyle=":", linewidth=1, label="chance (zero-shot)")
    names = [r[0] for r in rows]
    ax.set_xticks(range(len(rows)), names, rotation=15, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("CLIP vs LaCLIP on the demo evaluation set", fontsize=9)
    ax.legend(fontsize=7)
    ys = list(range(len(rows)))[::-1]
    for y, (_, _, diff, lo, hi) in zip(ys, rows):
        colour = "tab:green" if lo > 0 else "tab:red" if hi < 0 else "tab:grey"
        dx.errorbar([100 * diff], [y], xerr=[[100 * (diff - lo)], [100 * (hi - diff)]], fmt="o", color=colour,
                    capsize=4)
    dx.axvline(0, color="black", linewidth=0.8)
    dx.set_yticks(ys, names, fontsize=8)
    dx.set_xlabel("LaCLIP - CLIP, points (95% CI " + ("across seeds)" if many else "paired bootstrap)"), fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
