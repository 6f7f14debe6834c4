"""`laclip plan rewrite|train|eval`: GPU-hours, wall time and cost before anything runs."""

from __future__ import annotations

from enum import Enum
from typing import Optional

import typer
from rich.table import Table

from laclip_cli.console import out


class StageName(str, Enum):
    rewrite = "rewrite"
    train = "train"
    eval = "eval"


def plan(
    stage: StageName = typer.Argument(..., help="The stage to estimate."),
    dataset: str = typer.Option("cc12m", "--dataset", "-d", help="Dataset preset (its nominal size is used); "
                                                                 "for eval, a suite: laclip-paper, datacomp."),
    gpus: int = typer.Option(8, "--gpus", "-g", help="A100 GPUs working at once."),
    price: Optional[float] = typer.Option(None, "--price-per-gpu-hour", help="Price of one GPU-hour, for the cost."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model for train/eval [default: the paper's]."),
    samples: Optional[int] = typer.Option(None, "--samples", help="Samples in the dataset [default: the preset's]."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Training epochs [default: the paper's recipe]."),
    sources: int = typer.Option(4, "--sources", help="Rewrites per caption (meta-pair sources)."),
    rate: Optional[float] = typer.Option(None, "--per-gpu-per-s", help="Override the throughput per GPU."),
    as_json: bool = typer.Option(False, "--json", help="Print the estimate as JSON."),
) -> None:
    """Estimate a stage from measured throughput (BENCHMARKS.md) or published figures."""
    from laclip.plan import estimate, format_hours

    est = estimate(stage.value, dataset, gpus, model=model, price_per_gpu_hour=price, samples=samples,
                   epochs=epochs, sources=sources, per_gpu_per_s=rate)
    if as_json:
        out.print_json(est.model_dump_json())
        return
    table = Table(title=f"plan: {est.stage} {est.dataset}", show_header=False, box=None, title_justify="left")
    table.add_row("work", f"{est.work:,.0f} {est.unit}")
    for note in est.notes:
        table.add_row("", note)
    table.add_row("throughput", f"{est.throughput.per_gpu_per_s:g} {est.throughput.unit} per GPU "
                                f"({est.throughput.source})")
    table.add_row("GPU-hours", f"{est.gpu_hours:,.1f}")
    table.add_row("wall time", f"{format_hours(est.wall_hours)} on {est.gpus} GPU(s)")
    table.add_row("cost", f"${est.cost:,.0f} at ${est.price_per_gpu_hour:g}/GPU-hour" if est.cost is not None
                  else "pass --price-per-gpu-hour for a cost")
    out.print(table)
