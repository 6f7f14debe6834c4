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
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
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
    from laclip.storage import open_store, resolve_root

    root = resolve_root(state.root)
    if root.startswith("gs://"):
        raise UsageError("`laclip pipeline --local` needs a local folder as --root / LACLIP_ROOT, not a bucket")
    from laclip_cli.submit_rewrite import build_config

    if engine not in ("eda", "hf"):
        raise UsageError(f"--engine {engine!r}: the local pipeline runs eda, or hf with --model DIR")
    rewrite_cfg = build_config(dataset="demo", engine=engine, model=model, seed=seed)  # bad flags fail here
    store = open_store(root)
    timings = Timings()
    out.print(f"store: {store.url}")

    timings.run("data: demo dataset", _ensure_demo, store)
    rewrite_id = timings.run(f"rewrite: {engine} over demo", _rewrite, rewrite_cfg, root)
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


def _rewrite(cfg, root: str) -> str:
    from rich.progress import Progress

    from laclip.storage import open_store
    from laclip_cli.submit_rewrite import run_local

    with Progress(console=out, transient=True) as progress:
        task = progress.add_task("shards rewritten", total=None)
        return run_local(cfg, open_store(root),
                         progress=lambda done, total: progress.update(task, completed=done, total=total))


def _rewrite_stats(store, rewrite_id: str) -> dict:
    """Rewrites kept vs fallen back to the original, summed over the shards' stats files."""
    from collections import Counter

    prefix = f"rewrites/demo/{rewrite_id}/"
    kept, prompts, reasons = 0, 0, Counter()
    for path in store.list(prefix):
        if path.endswith(".stats.json"):
            stats = json.loads(store.read_text(path))
            prompts += stats["prompts"]
            for source in stats["sources"].values():
                kept += source["rewritten"]
                reasons.update(source.get("fallbacks", {}))
    why = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
    rest = f" (the rest keep the original caption: {why})" if why else ""
    out.print(f"rewrites kept: {kept:,} of {prompts:,}{rest}")
    if prompts and not kept:
        out.print("[yellow]warning:[/] no rewrite passed the filters, so LaCLIP trains on the original captions only")
    return {"kept": kept, "prompts": prompts, "fallbacks": dict(reasons)}


def _train(root: str, run: str, rewrite_id: Optional[str], steps: Optional[int], seed: int, nproc: int) -> str:
    """Train one model (or find it already trained); returns its final checkpoint path in the store."""
    from laclip.storage import open_store
    from laclip.train.config import PRESETS
    from laclip_cli.submit_train import build_config, run_local

    augment = "laclip" if rewrite_id else "none"
    cfg = build_config("demo", "demo", run, augment=augment, rewrites=rewrite_id, seed=seed, steps=steps, root=root)
    final = f"checkpoints/{run}/step_{steps or PRESETS['demo']['steps']}.pt"
    if open_store(root).exists(final):
        out.print(f"reusing {final}")
    else:
        with tempfile.TemporaryDirectory(prefix="laclip-torchx-") as log_dir, _LogProgress(log_dir):
            run_local(cfg, root=root, nproc=nproc, log_dir=log_dir, echo=False)
    return final


class _LogProgress:
    """A progress bar fed by the `step N/M ... loss L` lines rank 0 writes to its TorchX log."""

    STEP = re.compile(r"step (\d+)/(\d+).*?loss ([0-9.]+)")

    def __init__(self, log_dir: str):
        self.log_dir = Path(log_dir)
        self.stop = threading.Event()

    def __enter__(self):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                                 TimeRemainingColumn(), console=out, transient=True)
        self.task = self.progress.add_task("starting torchrun", total=None)
        self.progress.start()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _poll(self) -> None:
        while not self.stop.wait(0.5):
            logs = sorted(self.log_dir.glob("**/main/0/stdout.log"))
            if not logs:
                continue
            lines = logs[-1].read_text(errors="replace").splitlines()
            for line in reversed(lines):
                m = self.STEP.search(line)
                if m:
                    step, total, loss = int(m.group(1)), int(m.group(2)), m.group(3)
                    self.progress.update(self.task, completed=step, total=total, description=f"training, loss {loss}")
                    break

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.progress.stop()


def _evaluate(root: str, checkpoint: str, seed: int) -> dict[str, dict]:
    from laclip_cli.submit_eval import build_config, run_local

    previous, state.root = state.root, root
    try:
        cfg = build_config(checkpoint, datasets=EVAL_SET, tasks=",".join(TASKS), seed=seed, workers=0,
                           batch_size=256, episodes=200)
    finally:
        state.root = previous
    from laclip.eval.config import TASK_RESULT_NAMES
    from laclip.eval.results import result_path
    from laclip.storage import open_store

    store = open_store(root)
    if all(store.exists(result_path(cfg.run, cfg.checkpoint_name, EVAL_SET, TASK_RESULT_NAMES[t])) for t in TASKS):
        out.print(f"reusing the results for {checkpoint}")
    with out.status("embedding images and fitting classifiers"):
        records = run_local(cfg, quiet=True)
    return {r["task"]: r["metrics"] for r in records}


# -- the comparison ------------------------------------------------------------------------
ROWS = [  # (label, task as written in the result JSON, metric)
    ("zero-shot top-1", "zeroshot_classification", "acc1"),
    ("zero-shot top-5", "zeroshot_classification", "acc5"),
    ("zero-shot mean per-class recall", "zeroshot_classification", "mean_per_class_recall"),
    ("few-shot 5-way 5-shot kNN", "fewshot_knn", "acc1"),
    ("linear probe top-1", "linear_probe", "acc1"),
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
    base = f"evals/pipeline-{tag}"
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
