"""`laclip datasets list|show`: presets and what the store holds."""

from __future__ import annotations

import typer
from rich.table import Table

from laclip_cli.console import out
from laclip_cli.state import state

app = typer.Typer(help="Dataset presets and the datasets found in the store.", no_args_is_help=True)


@app.command("list")
def list_datasets() -> None:
    """Show the presets and every dataset found under `datasets/` in the store."""
    from laclip.data.registry import PRESETS, discover

    store = state.store()
    found = discover(store)
    table = Table(title="datasets", caption=f"folders are under the store root {store.url}")
    table.add_column("name", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    for col in ("nominal samples", "nominal shards", "shards here"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("folder", no_wrap=True)
    for name in sorted(set(PRESETS) | set(found)):
        preset, info = PRESETS.get(name), found.get(name)
        table.add_row(
            name,
            info.kind if info else preset.kind,
            f"{preset.samples:,}" if preset else "-",
            f"{preset.shards:,}" if preset else "-",
            f"{info.shards:,}" if info else "0",
            (info or preset).folder + "/",
        )
    out.print(table)


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Dataset name, e.g. demo or cc12m."),
    check: bool = typer.Option(False, "--check", help="Read every shard whole and check tar and parquet agree."),
) -> None:
    """Shards, samples and location of one dataset."""
    from laclip.data.registry import PRESETS
    from laclip.data.registry import resolve_shards
    from laclip.data.shards import check_shard, read_captions

    store = state.store()
    shards = resolve_shards(store, name)
    samples = 0
    for shard in shards:
        samples += check_shard(store, shard) if check else len(read_captions(store, shard))
    preset = PRESETS.get(name)
    table = Table(show_header=False, title=f"dataset {name}")
    table.add_row("location", store.url_of(shards[0].folder) + "/")
    table.add_row("shards", f"{len(shards):,} ({shards[0].id} .. {shards[-1].id})")
    table.add_row("samples (status=success)", f"{samples:,}")
    if preset:
        table.add_row("nominal samples", f"{preset.samples:,} — {preset.description}")
    if check:
        table.add_row("check", "[green]every tar and parquet read whole and consistent[/]")
    out.print(table)
