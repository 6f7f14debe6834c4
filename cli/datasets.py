"""`laclip datasets list|show`: presets and what the store holds."""

from __future__ import annotations

import typer
from rich.table import Table

from laclip.data.images import PIL_LIMIT, pixel_limit
from laclip.errors import DataError
from laclip_cli.console import out, styled
from laclip_cli.state import state

app = typer.Typer(help="Dataset presets and the datasets found in the store.", no_args_is_help=True)


@app.command("list")
def list_datasets() -> None:
    """Show the presets and every dataset found under `datasets/` in the store."""
    from laclip.data.registry import PRESETS, discover, unfinished_build

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
            (info.kind if info else preset.kind) + (" (unfinished build)" if info and unfinished_build(store, name)
                                                   else ""),
            f"{preset.samples:,}" if preset else "-",
            f"{preset.shards:,}" if preset else "-",
            f"{info.shards:,}" if info else "0",
            (info or preset).folder + "/",
        )
    out.print(table)


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Dataset name, e.g. demo or cc12m."),
    check: bool = typer.Option(False, "--check", help="Read every tar and parquet whole and list every problem: "
                               "bad files and rows, keys repeated in a shard or across shards, samples without "
                               "an image or a .txt, image headers above --max-image-pixels; exit 1 if any."),
    max_image_pixels: int = typer.Option(pixel_limit(224), "--max-image-pixels", min=1, max=PIL_LIMIT,
                                         help="With --check: flag images whose header promises more pixels "
                                              "[default: the training limit for 224 px models]."),
) -> None:
    """Shards, samples and location of one dataset."""
    from laclip.data.registry import PRESETS
    from laclip.data.registry import resolve_shards
    from laclip.data.shards import check_shard, read_captions, repeated_keys

    store = state.store()
    shards = resolve_shards(store, name)
    samples, problems, bad_shards = 0, [], set()
    keys = {}
    for shard in shards:
        if check:
            found = check_shard(store, shard, max_image_pixels)
            samples += found.samples
            keys[shard.id] = found.keys
            problems += found.problems
            bad_shards.update([shard.id] if found.problems else [])
        else:
            samples += len(read_captions(store, shard))
    for sid, later in sorted(repeated_keys(keys).items()):
        bad_shards.add(sid)
        example = sorted(later)[0]
        problems.append(f"{store.url_of(shards[0].folder)}/{sid}.parquet: {len(later)} key(s) an earlier shard "
                        f"also holds, e.g. {example!r} (trained once, from the earlier shard)")
    preset = PRESETS.get(name)
    table = Table(show_header=False, title=f"dataset {name}")
    table.add_row("location", store.url_of(shards[0].folder) + "/")
    table.add_row("shards", f"{len(shards):,} ({shards[0].id} .. {shards[-1].id})")
    table.add_row("samples" if check else "samples (status=success)", f"{samples:,}")
    if preset:
        table.add_row("nominal samples", f"{preset.samples:,} — {preset.description}")
    if check:
        table.add_row("check", styled(("every tar and parquet read whole and consistent", "green")) if not problems
                      else styled((f"{len(problems)} problem(s) in {len(bad_shards)} of {len(shards)} shards", "red")))
    out.print(table)
    if problems:
        for line in problems[:MAX_LISTED]:
            out.print(f"  {line}", soft_wrap=True)
        if len(problems) > MAX_LISTED:
            out.print(f"  ... and {len(problems) - MAX_LISTED} more", soft_wrap=True)
        raise DataError(f"dataset {name!r}: {len(problems)} problem(s) in {len(bad_shards)} of {len(shards)} shards "
                        "(listed above; how each stage treats them: laclip/data/shards.py)")


MAX_LISTED = 50
