"""`laclip eval report RUN...`: the results of every checkpoint of one or more runs, as a table and a chart.
`laclip eval compare A B`: two checkpoints metric by metric, with paired intervals and McNemar's test."""

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
    from laclip.eval.results import attach_intervals, chart, load_rows, markdown as to_markdown, table

    if layout_ not in ("runs", "paper"):
        raise UsageError(f"invalid --layout {layout_!r}: use runs or paper")
    asked = [_run_ref(ref) for ref in runs]
    if csv_out not in (None, "-"):
        check_out_file(Path(csv_out), "--csv", ".csv")
    path = None if no_png or layout_ == "paper" else \
        check_out_file(png or Path(f"eval-{'-'.join(runs).replace('/', '-')}.png"), "--png", ".png")
    store = state.store()
    rows = []
    for key in dict.fromkeys(run for run, _ in asked):
        found = load_rows(store, key, newest=layout_ != "paper")  # the paper layout picks pairs itself
        if not found:
            raise NotFound(f"no evaluation results under {store.url_of(layout.evals_of(key))}/: "
                           f"run `laclip submit eval --checkpoint {key}/step_N` first")
        rows.extend(found)
    for run, ckpt in asked:
        if ckpt is not None and not any(r.run == run and r.checkpoint == ckpt for r in rows):
            have = sorted({r.checkpoint for r in rows if r.run == run})
            raise NotFound(f"run {run} has no results of checkpoint {ckpt} (it has: {', '.join(have)})")
    if layout_ == "paper":
        _paper(store, rows, asked, suite, csv_out)
        return
    whole = {run for run, ckpt in asked if ckpt is None}  # RUN: every checkpoint; RUN/CHECKPOINT: that one
    rows = [r for r in rows if r.run in whole or (r.run, r.checkpoint) in asked]
    attach_intervals(store, rows)
    header, body = table(rows)
    if markdown:
        out.print(to_markdown(header, body), markup=False, soft_wrap=True, end="")
    else:
        from rich.table import Table

        t = Table(title="eval results (percent [95% bootstrap interval over the test images; few-shot: "
                        "over episodes])")
        for i, h in enumerate(header):
            t.add_column(h, justify="left" if i < 2 else "right")
        for line in body:
            t.add_row(*line)
        out.print(t)
    _print_notes(_mixed_columns(rows), markdown)
    if path is not None:
        try:
            chart(rows, str(path))
        except OSError as exc:
            raise UsageError(f"cannot write the chart {path}: {exc.strerror or exc}") from None
        if not markdown:  # keep a Markdown summary clean
            out.print(f"chart: {path}", soft_wrap=True)


def _mixed_columns(rows) -> list[str]:
    """A column whose checkpoints were evaluated with other settings (a curve of unlike numbers): why."""
    from laclip.eval.comparison import unlike
    from laclip.eval.results import _short

    notes = []
    for column in dict.fromkeys((r.dataset, r.task) for r in rows):
        mine = [r for r in rows if (r.dataset, r.task) == column]
        why = next((unlike(mine[0], r) for r in mine[1:] if unlike(mine[0], r)), None)
        if why:
            notes.append(f"{column[0]} {_short(column[1])}: its checkpoints were {why}")
    return notes


def _print_notes(notes: list[str], markdown: bool) -> None:
    """Notes under a table, on screen: `note: ...` lines, or a Markdown list."""
    if notes:
        text = "\n".join(("- " if markdown else "note: ") + n for n in notes)
        out.print(("\n" if markdown else "") + text, markup=False, soft_wrap=True)


def _run_ref(ref: str) -> tuple[str, str | None]:
    """(run, checkpoint or None) of a `RUN` or `RUN/CHECKPOINT` argument, checked as names."""
    from laclip.eval.config import RUN_RE

    parts = [p for p in ref.strip().split("/") if p]
    if ref.strip().startswith(("/", "~")) or not 1 <= len(parts) <= 2 or not all(RUN_RE.fullmatch(p) for p in parts):
        raise UsageError(f"run {ref!r} is not RUN or RUN/CHECKPOINT (names of letters, digits, '.', '_' and '-', "
                         "not a path: the results are under --root)")
    return parts[0], parts[1] if len(parts) == 2 else None


def check_out_file(path: Path, flag: str, suffix: str) -> Path:
    """Where a file goes, checked before any result is read: a file in a folder that exists."""
    import os

    if path.is_dir():
        raise UsageError(f"{flag} {path} is a folder: give a file name, e.g. {path / ('eval' + suffix)}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"{flag} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{flag} {path}: the folder {folder} is not writable")
    if suffix == ".png" and path.suffix.lower() != suffix:  # the chart's format follows the name
        raise UsageError(f"{flag} {path}: the chart is a PNG image; name the file *.png")
    return path


def _paper(store, rows, asked: list[tuple[str, str | None]], suite_name: str | None, csv_out: str | None) -> None:
    """The paper's table of the asked (run, checkpoint) pairs: a run alone means its latest step."""
    from laclip.eval import paper, suites

    picked = []
    for run, ckpt in asked:
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
    tab = paper.build(mine, picked, chosen, store=store)
    if csv_out == "-":
        out.print(tab.csv(), markup=False, soft_wrap=True, end="")
        return
    out.print(tab.markdown(), markup=False, soft_wrap=True, end="")
    if csv_out:
        try:
            Path(csv_out).write_text(tab.csv(), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {csv_out}: {exc.strerror or exc}") from None



@app.command()
def compare(
    a: str = typer.Argument(..., help="A: a run (its newest evaluated checkpoint), RUN/CHECKPOINT, or a checkpoint "
                                      "URL or path."),
    b: str = typer.Argument(..., help="B: the same forms; differences are B - A."),
    datasets: Optional[str] = typer.Option(None, help="Comma-separated datasets [default: every one both have]."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="JSON file [default: compare-A-vs-B.json here]."),
    png: Optional[Path] = typer.Option(None, help="Chart file [default: compare-A-vs-B.png here]."),
    no_png: bool = typer.Option(False, "--no-png", help="No chart."),
    markdown: bool = typer.Option(False, "--markdown", help="Print a Markdown table (for CI job summaries)."),
    resamples: int = typer.Option(10_000, min=100, max=1_000_000, help="Bootstrap resamples."),
    seed: int = typer.Option(0, min=0, help="Seed of the bootstrap."),
) -> None:
    """B - A of every metric both checkpoints have, with a 95% paired-bootstrap interval over the test
    images (over episodes for few-shot) and McNemar's exact test for top-1 and top-5."""
    import json
    import re

    from laclip.eval import comparison as cmp
    from laclip.eval.results import markdown as to_markdown

    if json_path is not None:  # checked before any result is read, as `eval report` does
        check_out_file(json_path, "--json", ".json")
    if png is not None and not no_png:
        check_out_file(png, "--png", ".png")
    store = state.store()
    side_a, side_b = cmp.resolve(store, a, "A"), cmp.resolve(store, b, "B")
    names = [d.strip() for d in datasets.split(",") if d.strip()] if datasets else None
    items = cmp.compare(side_a, side_b, names, resamples=resamples, seed=seed)
    rows = cmp.flat(items)
    header, body = cmp.table(rows)
    title = f"B - A: A = {side_a.label}, B = {side_b.label} (percent)"
    if markdown:
        out.print(f"**{title}**\n\n" + to_markdown(header, body), markup=False, soft_wrap=True, end="")
    else:
        from rich.table import Table

        t = Table(title=title)
        for i, h in enumerate(header):
            t.add_column(h, justify="left" if i < 2 else "right")
        for line in body:
            t.add_row(*line)
        out.print(t, soft_wrap=True)
    _print_notes(cmp.notes(rows), markdown)  # on screen, not only in the JSON
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{side_a.label}-vs-{side_b.label}")
    path = json_path or Path(f"compare-{slug}.json")
    summary = {"a": {"ref": a, "run": side_a.run, "checkpoint": side_a.checkpoint, "store": side_a.store.url},
               "b": {"ref": b, "run": side_b.run, "checkpoint": side_b.checkpoint, "store": side_b.store.url},
               "difference": "b - a, percentage points", "confidence": 0.95, "seed": seed,
               "interval": "paired percentile bootstrap over test images (few-shot: episodes; text-to-image "
                           "retrieval: query images)", "test": "exact McNemar (binomial on discordant images)",
               "rows": rows}
    chart_path = png or Path(f"compare-{slug}.png") if not no_png and any(r["metric"] for r in rows) else None
    try:  # the default files go to the current folder, which may not be writable
        path.write_text(json.dumps(summary, indent=2) + "\n")
        if chart_path is not None:
            cmp.chart(rows, str(chart_path), title)
    except OSError as exc:
        raise UsageError(f"cannot write {exc.filename or path}: {exc.strerror or exc}") from None
    if chart_path is not None:
        if not markdown:
            out.print(f"json: {path}  chart: {chart_path}", markup=False, soft_wrap=True)
    elif not markdown:
        out.print(f"json: {path}", markup=False, soft_wrap=True)
