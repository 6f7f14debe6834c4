"""`laclip data synth`: build the demo dataset."""

from __future__ import annotations

import time

import typer

from laclip import layout
from laclip_cli.console import out
from laclip_cli.state import state

app = typer.Typer(help="Make datasets.", no_args_is_help=True)


@app.command()
def synth(
    shards: int = typer.Option(8, min=1, max=10_000, help="Training shards to write."),
    per_shard: int = typer.Option(512, min=1, max=100_000, help="Samples per shard."),
    seed: int = typer.Option(0, help="Everything is drawn from this seed."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing demo dataset."),
) -> None:
    """Write the synthetic `demo` dataset (shapes with captions) and its `demo-eval` set."""
    from rich.progress import Progress

    from laclip.data.registry import discover
    from laclip.data.synth import is_complete, synth_demo

    store = state.store()
    if is_complete(store) and not overwrite:
        out.print(f"demo dataset already in {store.url_of(layout.dataset_folder('demo'))}/ "
                  "(use --overwrite to rebuild)", markup=False)
    else:
        if "demo" in discover(store) and not overwrite:
            out.print("completing an interrupted build (shards already written are kept)")
        start = time.perf_counter()
        with Progress(transient=True) as progress:
            task = progress.add_task("drawing shards", total=shards)
            summary = synth_demo(store, shards=shards, per_shard=per_shard, seed=seed, overwrite=overwrite,
                                 progress=lambda: progress.advance(task))
        out.print(
            f"wrote {summary['samples']:,} samples in {summary['shards']} shards to "
            f"{store.url_of(summary['dataset'])}/ and {summary['eval_train']}+{summary['eval_test']} labelled "
            f"images of {summary['classes']} classes to {store.url_of(summary['eval'])}/ "
            f"in {time.perf_counter() - start:.1f}s"
        )
    from laclip_cli.datasets import show

    show("demo", check=False)
