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
    runs: List[str] = typer.Argument(..., help="Training runs (folders under evals/), or RUN/CHECKPOINT."),
    layout_: str = typer.Option("runs", "--layout", help="runs: one line per checkpoint, a column per (dataset, "
                                                         "task); paper: the paper's table (rows zero-shot, linear "
                                                         "probe, few-shot; a column per dataset and the average)."),
    suite: Optional[str] = typer.Option(None, "--suite", help="--layout paper: the suite whose columns to show "
                                                              "[default: the one the results cover most]."),
    csv_out: Optional[str] = typer.Option(None, "--csv", help="--layout paper: also write the table as CSV to "
                                                              "this file ('-': print CSV instead of Markdown)."),
    png: Optional[Path] = typer.Option(None, help="Chart file (default: eval-<RUN>.png here)."),
    no_png: bool = typer.Option(False, "--no-png", help="Print the table only."),
    markdown: bool = typer.Option(False, "--markdown", help="Print a Markdown table (for CI job summaries)."),
) -> None:
    """Print the headline metric of every (checkpoint, dataset, task) and draw a chart, or the paper's table."""
    from laclip.eval.results import chart, load_rows, markdown as to_markdown, table

    if layout_ not in ("runs", "paper"):
        raise UsageError(f"invalid --layout {layout_!r}: use runs or paper")
    store = state.store()
    asked = [(ref.partition("/")[0], ref.partition("/")[2] or None) for ref in runs]
    rows = []
    for key in dict.fromkeys(run for run, _ in asked):
        found = load_rows(store, key)
        if not found:
            raise NotFound(f"no evaluation results under {store.url_of(layout.evals_of(key))}/: "
                           f"run `laclip submit eval --checkpoint {key}/step_N` first")
        rows.extend(found)
    if layout_ == "paper":
        _paper(rows, asked, suite, csv_out)
        return
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
        path = png or Path(f"eval-{'-'.join(runs).replace('/', '-')}.png")
        chart(rows, str(path))
        if not markdown:  # keep a Markdown summary clean
            out.print(f"chart: {path}", soft_wrap=True)


def _paper(rows, asked: list[tuple[str, str | None]], suite_name: str | None, csv_out: str | None) -> None:
    """The paper's table of the asked (run, checkpoint) pairs: a run alone means its latest step."""
    from laclip.eval import paper, suites

    picked = []
    for run, ckpt in asked:
        if ckpt is not None and not any(r.run == run and r.checkpoint == ckpt for r in rows):
            have = sorted({r.checkpoint for r in rows if r.run == run})
            raise NotFound(f"run {run} has no results of checkpoint {ckpt} (it has: {', '.join(have)})")
        picked += paper.pick_checkpoints(rows, {run: ckpt})
    if len(set(picked)) != len(picked):
        raise UsageError("the same run and checkpoint is asked for twice")
    mine = [r for r in rows if (r.run, r.checkpoint) in picked]
    found = {paper.dataset_key(r.dataset) for r in mine}
    if suite_name is None:  # the suite the results cover most, if any
        scored = sorted(((len(found & {d.name for d in suites.load(n).datasets}), n) for n in suites.names()),
                        reverse=True)
        suite_name = scored[0][1] if scored and scored[0][0] else None
    chosen = suites.load(suite_name) if suite_name else None
    tab = paper.build(mine, picked, chosen)
    if csv_out == "-":
        out.print(tab.csv(), markup=False, soft_wrap=True, end="")
        return
    out.print(tab.markdown(), markup=False, soft_wrap=True, end="")
    if csv_out:
        Path(csv_out).write_text(tab.csv(), encoding="utf-8")
