"""`laclip eval report RUN...`: the results of every checkpoint of one or more runs, as a table and a chart."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from laclip import layout
from laclip.errors import NotFound, UsageError
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

    path = None if no_png else check_png(png or Path(f"eval-{'-'.join(runs)}.png"))
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
    if path is not None:
        try:
            chart(rows, str(path))
        except OSError as exc:
            raise UsageError(f"cannot write the chart {path}: {exc.strerror or exc}") from None
        if not markdown:  # keep a Markdown summary clean
            out.print(f"chart: {path}", soft_wrap=True)


def check_png(path: Path) -> Path:
    """Where the chart goes, checked before any result is read: a file in a folder that exists."""
    import os

    if path.is_dir():
        raise UsageError(f"--png {path} is a folder: give a file name, e.g. {path / 'eval.png'}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"--png {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"--png {path}: the folder {folder} is not writable")
    if path.suffix.lower() != ".png":
        raise UsageError(f"--png {path}: the chart is a PNG image; name the file *.png")
    return path
