"""`laclip eval report RUN...`: the results of every checkpoint of one or more runs, as a table and a chart."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from laclip import layout
from laclip.errors import NotFound
from laclip_cli.console import out
from laclip_cli.state import state

app = typer.Typer(help="Evaluation results.", no_args_is_help=True)


@app.command()
def report(
    runs: List[str] = typer.Argument(..., help="Training runs (folders under evals/)."),
    png: Optional[Path] = typer.Option(None, help="Chart file (default: eval-<RUN>.png here)."),
    no_png: bool = typer.Option(False, "--no-png", help="Print the table only."),
    markdown: bool = typer.Option(False, "--markdown", help="Print a Markdown table (for CI job summaries)."),
) -> None:
    """Print the headline metric of every (checkpoint, dataset, task) and draw a chart."""
    from laclip.eval.results import chart, load_rows, markdown as to_markdown, table

    store = state.store()
    rows = []
    for run in runs:
        found = load_rows(store, run)
        if not found:
            raise NotFound(f"no evaluation results under {store.url_of(layout.evals_of(run))}/: "
                           f"run `laclip submit eval --checkpoint {run}/step_N` first")
        rows.extend(found)
    header, body = table(rows)
    if markdown:
        out.print(to_markdown(header, body), markup=False, soft_wrap=True, end="")
    else:
        from rich.table import Table

        t = Table(title="eval results (percent; few-shot with its 95% interval)")
        for i, h in enumerate(header):
            t.add_column(h, justify="left" if i < 2 else "right")
        for line in body:
            t.add_row(*line)
        out.print(t)
    if not no_png:
        path = png or Path(f"eval-{'-'.join(runs)}.png")
        chart(rows, str(path))
        if not markdown:  # keep a Markdown summary clean
            out.print(f"chart: {path}", soft_wrap=True)
