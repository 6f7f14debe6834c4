"""`laclip pipeline --local`: the whole method on the demo dataset, on this machine.

demo data -> rewrite (eda by default) -> train CLIP and LaCLIP with the same seed and budget
-> evaluate both -> a table and a chart of CLIP vs LaCLIP. Each stage calls the same local
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
from laclip_cli.console import out
from laclip_cli.state import state

EVAL_SET = "demo-eval"
TASKS = ["zeroshot", "fewshot", "linear_probe"]


@dataclass
class Timings:
    seconds: dict[str, float] = field(default_factory=dict)

    def run(self, name: str, fn, *args, **kwargs):
        out.rule(f"[bold]{name}")
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        self.seconds[name] = time.perf_counter() - start
        out.print(f"[green]done[/] {name} in {self.seconds[name]:.0f}s")
        return result


def pipeline(
    local: bool = typer.Option(False, "--local", help="Run every stage here against a local store (required)."),
    engine: str = typer.Option("eda", help="Rewrite engine: eda (no weights), or hf with --model DIR."),
    model: Optional[str] = typer.Option(None, "--model", help="Local LLM checkpoint folder for --engine hf."),
    steps: Optional[int] = typer.Option(None, min=1, help="Training steps per model (default: the demo preset's)."),
    seed: int = typer.Option(0, help="One seed for data order, initialisation and evaluation episodes."),
    nproc: int = typer.Option(1, min=1, max=8, help="Training processes per model (torchrun, gloo)."),
) -> None:
    """Rewrite, train CLIP and LaCLIP side by side, evaluate both, and compare them."""
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
    rewrite_cfg = load_config(RewriteConfig, {"dataset": "demo", "engine": engine, "model": model, "seed": seed,
                                              "root": root}).check()  # bad flags fail here
    store = open_store(root)
    timings = Timings()
    out.print(f"store: {store.url}")

    timings.run("data: demo dataset", _ensure_demo, store)
    rewrite_id = timings.run(f"rewrite: {engine} over demo", _rewrite, rewrite_cfg)
    kept = _rewrite_stats(store, rewrite_id)
    tag = hashlib.sha256(json.dumps([rewrite_id, steps, seed, nproc]).encode()).hexdigest()[:6]
    runs = {"CLIP": f"demo-clip-{tag}", "LaCLIP": f"demo-laclip-{tag}"}
    checkpoints = {}
    for label, run in runs.items():
        checkpoints[label] = timings.run(
            f"train: {label} ({run})", _train, root, run, rewrite_id if label == "LaCLIP" else None, steps, seed, nproc)
    results = {label: timings.run(f"eval: {label}", _evaluate, root, ckpt, seed)
               for label, ckpt in checkpoints.items()}
    _report(store, tag, rewrite_id, kept, runs, checkpoints, results, timings)


def _ensure_demo(store) -> None:
    from laclip.data.synth import is_complete, synth_demo

    if not is_complete(store):  # also finishes a build that was interrupted
        synth_demo(store)


def _rewrite(cfg) -> str:
    from rich.progress import Progress

    from laclip_cli.stages.rewrite import run_here

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
    if prompts and not kept:
        out.print("[yellow]warning:[/] no rewrite passed the filters, so LaCLIP trains on the original captions only")
    return {"kept": kept, "prompts": prompts, "fallbacks": dict(reasons)}


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
    if open_store(root).exists(final):
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


def _evaluate(root: str, checkpoint: str, seed: int) -> dict[str, dict]:
    from laclip.eval.config import EvalConfig
    from laclip_cli.stages.eval import results, run_here

    cfg = EvalConfig(checkpoint=checkpoint, root=root, datasets=[EVAL_SET], tasks=TASKS, seed=seed, workers=0,
                     batch_size=256, fewshot={"episodes": 200})
    if len(results(cfg)) == len(TASKS):
        out.print(f"reusing the results for {checkpoint}", markup=False)
    with out.status("embedding images and fitting classifiers"):
        records = run_here(cfg, quiet=True)
    return {r["task"]: r["metrics"] for r in records}


# -- the comparison ------------------------------------------------------------------------
ROWS = [  # (label, task as written in the result JSON, metric)
    ("zero-shot top-1", "zeroshot_classification", "acc1"),
    ("zero-shot top-5", "zeroshot_classification", "acc5"),
    ("zero-shot mean per-class recall", "zeroshot_classification", "mean_per_class_recall"),
    ("few-shot 5-way 5-shot kNN", "fewshot_knn", "acc1"),
    ("linear probe top-1", "linear_probe", "lp_acc1"),
]


def _metric(results: dict[str, dict], task: str, metric: str) -> Optional[float]:
    value = results.get(task, {}).get(metric)
    return float(value) if isinstance(value, (int, float)) else None


def _report(store, tag, rewrite_id, kept, runs, checkpoints, results, timings: Timings) -> None:
    from rich.table import Table

    table = Table(title=f"CLIP vs LaCLIP on {EVAL_SET} (8 classes, chance 12.5 %)")
    table.add_column("metric")
    for label in runs:
        table.add_column(label, justify="right")
    table.add_column("LaCLIP - CLIP", justify="right")
    rows = []
    for name, task, metric in ROWS:
        values = [_metric(results[label], task, metric) for label in runs]
        if all(v is None for v in values):
            continue
        rows.append((name, values))
        diff = values[1] - values[0] if None not in values else None
        table.add_row(name, *(f"{100 * v:.1f}" if v is not None else "-" for v in values),
                      f"{100 * diff:+.1f}" if diff is not None else "-")
    out.print(table)
    times = Table(title="stage timings")
    times.add_column("stage")
    times.add_column("seconds", justify="right")
    for name, seconds in timings.seconds.items():
        times.add_row(name, f"{seconds:.1f}")
    times.add_row("[bold]total[/]", f"[bold]{sum(timings.seconds.values()):.1f}[/]")
    out.print(times)

    summary = {"rewrite_id": rewrite_id, "rewrites": kept, "runs": runs, "checkpoints": checkpoints, "results": results,
               "seconds": timings.seconds}
    from laclip import layout

    base = layout.pipeline_folder(tag)
    store.write_text(f"{base}/summary.json", json.dumps(summary, indent=2))
    store.write_bytes(f"{base}/clip_vs_laclip.png", _chart(rows, list(runs)))
    out.print(f"summary and chart: {store.url_of(base)}/summary.json, clip_vs_laclip.png")


def _chart(rows, labels) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4), dpi=120)
    width = 0.38
    for i, label in enumerate(labels):
        xs = [j + (i - 0.5) * width for j in range(len(rows))]
        ys = [100 * (vals[i] or 0) for _, vals in rows]
        bars = ax.bar(xs, ys, width, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.axhline(12.5, color="grey", linestyle=":", linewidth=1, label="chance (zero-shot)")
    ax.set_xticks(range(len(rows)), [name for name, _ in rows], rotation=15, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("CLIP vs LaCLIP on the demo evaluation set")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
