"""Result files and the report across checkpoints.

One JSON per (checkpoint, dataset, task) at `evals/<run>/<checkpoint>/<dataset>/<task>.json`,
shaped like CLIP_benchmark's output ({dataset, model, pretrained, task, metrics, language}) so
`clip_benchmark build` and other tooling read it; laclip's own details sit under "laclip".
No torch here: `laclip eval report` runs on a laptop.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from laclip.errors import AlreadyExists, LaclipError, NotFound
from laclip.storage.base import Store

# The one number per task a table shows, in CLIP_benchmark's metric names.
HEADLINE = {
    "zeroshot_classification": "acc1",
    "fewshot_knn": "acc1",
    "linear_probe": "acc1",
    "zeroshot_retrieval": "image_retrieval_recall@1",
}
SHORT = {"zeroshot_classification": "zero-shot", "fewshot_knn": "few-shot", "linear_probe": "linear",
         "zeroshot_retrieval": "t2i R@1"}


def result_path(run: str, checkpoint: str, dataset: str, task: str) -> str:
    return f"evals/{run}/{checkpoint}/{dataset}/{task}.json"


def write_result(store: Store, path: str, record: dict) -> bool:
    """Create-only: False when an earlier attempt already wrote it (that result stands)."""
    try:
        store.write_text(path, json.dumps(_clean(record), indent=2) + "\n", create_only=True)
        return True
    except AlreadyExists:
        return False


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

    @property
    def value(self) -> float | None:
        return self.record.get("metrics", {}).get(HEADLINE.get(self.task, "acc1"))


def _step(name: str) -> tuple:
    m = re.search(r"(\d+)$", name)
    return (0, int(m.group(1)), name) if m else (1, 0, name)


def load_rows(store: Store, run: str) -> list[Row]:
    rows = []
    for path in store.list(f"evals/{run}/"):
        parts = path.split("/")
        if len(parts) != 5 or not path.endswith(".json") or parts[3] == "features":
            continue
        try:
            record = json.loads(store.read_text(path))
        except (NotFound, ValueError):
            continue
        if "metrics" in record:
            rows.append(Row(run, parts[2], parts[3], parts[4][:-5], record))
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


def _fmt(row: Row) -> str:
    v = row.value
    if v is None:
        return "n/a"
    ci = row.record["metrics"].get("acc1_ci95")
    return f"{100 * v:.1f}" + (f" ±{100 * ci:.1f}" if ci else "")


def markdown(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(line) + " |" for line in body]
    return "\n".join(lines) + "\n"


def chart(rows: list[Row], path: str) -> None:
    """Training curves (metric vs step, one line per run, dataset and task) when the runs have
    several step_N checkpoints; otherwise grouped bars, one bar per checkpoint. Percent."""
    try:
        import matplotlib
    except ImportError:  # the base install (submit, report tables) has no matplotlib
        raise LaclipError("the chart needs matplotlib: `pip install matplotlib` (or laclip[eval]), "
                          "or pass --no-png for the table only") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
        for i, line in enumerate(body):
            vals = [float(c.split()[0]) if c not in ("-", "n/a") else 0.0 for c in line[2:]]
            ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=f"{line[0]}/{line[1]}")
        ax.set_xticks(x, groups, rotation=20, ha="right")
    ax.set_ylabel("percent")
    ax.set_ylim(0, 100)
    ax.legend(fontsize="small")
    ax.set_title("laclip eval: headline metric per dataset and task")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
