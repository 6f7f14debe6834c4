"""`laclip datasets list|show|suites|get-eval`: presets, suites, what the store holds, and fetching
evaluation sets into it."""

from __future__ import annotations

from typing import List, Optional

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


@app.command("get-eval")
def get_eval(
    names: str = typer.Argument(..., help="Dataset names or suites, comma-separated: laclip-paper, datacomp, "
                                          "vtab-cifar10..."),
    root: Optional[str] = typer.Option(None, "--root", help="Store root the sets go to [default: laclip's --root]."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Hub revision of a first fetch [default: main]."),
    splits: Optional[str] = typer.Option(None, "--splits", help="Splits to copy, comma-separated [default: those "
                                                                "the suite's tasks read]."),
    repo: List[str] = typer.Option([], "--repo", help="NAME=OWNER/REPO: another hub repository for NAME."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Files copied at once per dataset [default: 4]."),
    scratch: Optional[str] = typer.Option(None, "--scratch", help="Folder a file passes through "
                                                                  "[default: ~/.cache/laclip/get-eval]."),
    job: bool = typer.Option(False, "--job", help="Fetch from the cluster instead: create a Job (gs:// store)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print that Job as YAML; contact nothing."),
    token_secret: Optional[str] = typer.Option(None, "--token-secret", help="--job: a Secret with key HF_TOKEN."),
    namespace: Optional[str] = typer.Option(None, "--namespace", help="--job: namespace [default: laclip]."),
    queue: Optional[str] = typer.Option(None, "--queue", help="--job: Kueue LocalQueue."),
    image: Optional[str] = typer.Option(None, "--image", help="--job: container image [default: the eval image]."),
    sets: List[str] = typer.Option([], "--set", help="FIELD=VALUE for any field of the config; repeatable."),
    context: Optional[str] = typer.Option(None, "--context", help="--job: kubeconfig context."),
) -> None:
    """Copy CLIP_benchmark's webdataset copies of evaluation sets from the Hugging Face hub into
    datasets/<name>/ of the store: resumable, create-only, pinned to a recorded commit. The hub
    endpoint is huggingface_hub's ($HF_ENDPOINT), and so is the token ($HF_TOKEN)."""
    from laclip_cli.stage import drive
    from laclip_cli.stages.fetch import STAGE

    if root is not None:
        if not root.strip():
            raise typer.BadParameter("is empty: give gs://BUCKET/PREFIX or a folder", param_hint="--root")
        state.root = root
    given = {"datasets": names, "revision": revision, "splits": splits, "repos": repo, "workers": workers,
             "scratch": scratch, "token_secret": token_secret, "namespace": namespace, "queue": queue,
             "image": image}
    fields = {f.names[0].lstrip("-").replace("-", "_"): f for f in STAGE.flags}
    fields["repos"] = fields.pop("repo")
    drive(STAGE, given, fields, config_file=None, sets=sets, dry_run=dry_run, local=not (job or dry_run),
          kube_context=context)


@app.command("suites")
def suites(name: Optional[str] = typer.Argument(None, help="A suite to show dataset by dataset.")) -> None:
    """The benchmark suites (`--datasets SUITE`), or one suite's datasets, tasks and sources."""
    from laclip.eval.suites import load, names, suite_files

    if name is None:
        table = Table(title="suites", caption="laclip datasets suites NAME shows one")
        for col in ("name", "datasets", "title", "file"):
            table.add_column(col)
        for n in names():
            s = load(n)
            table.add_row(n, str(len(s.datasets)), s.title, str(suite_files()[n]))
        out.print(table)
        return
    s = load(name)
    table = Table(title=f"{s.name}: {s.title}", caption=" | ".join(f"{k}: {v}" for k, v in s.source.items()))
    for col in ("name", "title", "tasks", "hub repository", "images"):
        table.add_column(col)
    for d in s.datasets:
        images = ", ".join(f"{k} {v:,}" if v else f"{k} ?" for k, v in d.images.items())
        table.add_row(d.name, d.title, ",".join(d.tasks) or "-", d.hub or "- (none published)", images)
    out.print(table)
