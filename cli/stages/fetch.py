"""`laclip datasets get-eval NAME|SUITE` (also `laclip submit get-eval --datasets ...`): copy evaluation
sets from the Hugging Face hub into the store here, print the Job (--dry-run), or create it (--job)."""

from __future__ import annotations

import time

from laclip.errors import UsageError
from laclip.fetch.config import FetchConfig
from laclip_cli.console import err, out
from laclip_cli.stage import Context, Flag, Stage, cluster_flags, comma_list, fields, lazy


def _repos(values: list[str]) -> dict[str, str]:
    found = {}
    for v in values:
        name, eq, repo = v.partition("=")
        if not eq or not name.strip() or not repo.strip():
            raise UsageError(f"--repo {v!r}: expected NAME=OWNER/REPO")
        found[name.strip()] = repo.strip()
    return found


FLAGS = [
    Flag("datasets", ("--datasets", "-d"), parse=comma_list, kind=str),
    *fields("revision"),
    Flag("splits", ("--splits",), parse=comma_list, kind=str),
    Flag("repos", ("--repo",), "NAME=OWNER/REPO: fetch NAME from another hub repository (repeatable).", _repos,
         list[str]),
    *fields("endpoint", "workers", "scratch", "token_secret", "parallelism", "run"),
    *cluster_flags("namespace", "image", "queue", "priority_class", "service_account", "spot"),
]


def build(stage: Stage, values: dict, sets: list[str], ctx: Context) -> FetchConfig:
    import os

    from laclip.config import load_config

    if "datasets" not in values and not any(s.startswith("datasets=") for s in sets):
        raise UsageError("name the datasets or a suite: laclip datasets get-eval laclip-paper")
    # the hub endpoint as huggingface_hub reads it here: pods get the same one
    base = {"root": ctx.root, **({"endpoint": os.environ["HF_ENDPOINT"]} if os.environ.get("HF_ENDPOINT") else {})}
    return load_config(stage.config, {**base, **values}, sets=sets, flags=stage.flag_names())


class _Bars:
    """One rich bar per dataset, bytes done of bytes to fetch."""

    def __init__(self, progress):
        self.progress, self.tasks = progress, {}

    def begin(self, name, files, total):
        self.tasks[name] = self.progress.add_task(f"{name} ({files} files)", total=total or None)

    def advance(self, name, nbytes):
        self.progress.advance(self.tasks[name], nbytes)

    def end(self, name):
        self.progress.update(self.tasks[name], visible=False)


def fetch_here(cfg: FetchConfig, quiet: bool = False):
    """Fetch cfg's datasets in this process, with a progress bar on stderr; the outcomes."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, \
        TransferSpeedColumn

    from laclip.fetch.worker import fetch, hub_module

    hub_module()  # a clear error before anything starts when huggingface_hub is missing
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True, disable=quiet) as progress:
        return fetch(cfg, _Bars(progress))


def run_local(cfg: FetchConfig, ctx: Context) -> None:
    from laclip.errors import LaclipError

    start = time.perf_counter()
    try:
        outcomes = fetch_here(cfg)
    except LaclipError as exc:  # the others were fetched: say so, then the error (only the error if none were)
        done = [o for o in getattr(exc, "outcomes", []) if o.state != "missing"]
        if done:
            print_outcomes(done, cfg, time.perf_counter() - start, failed=True)
        raise
    print_outcomes(outcomes, cfg, time.perf_counter() - start)


def print_outcomes(outcomes, cfg: FetchConfig, seconds: float, failed: bool = False) -> None:
    fetched = sum(o.files for o in outcomes)
    for o in outcomes:
        where = f"{o.repo}@{o.revision[:12]}" if o.repo and o.revision else ""
        line = {"fetched": f"fetched {o.files} files ({o.bytes / 1e6:,.1f} MB), {o.present} were here",
                "up to date": f"up to date ({o.present} files)", "kept": "kept as it is"}.get(o.state, o.state)
        out.print(f"{o.name:>24}  {line}  {where}", markup=False, soft_wrap=True)
        for note in o.notes:
            err.print(f"note: {o.name}: {note}", markup=False, soft_wrap=True)
    out.print(f"{fetched} files fetched into {cfg.root.rstrip('/')}/ in {seconds:.1f}s"
              + ("" if fetched or failed else ": nothing to fetch"), markup=False, soft_wrap=True)


def submitted(cfg: FetchConfig, objects: list[dict], outcomes: list, ctx: Context) -> None:
    ns = cfg.cluster.namespace
    out.print(f"follow it: kubectl get pods -n {ns} -l laclip.dev/run={cfg.run}", markup=False, soft_wrap=True)


STAGE = Stage(
    name="get-eval", help="Copy evaluation sets (CLIP_benchmark's webdataset copies) from the Hugging Face hub "
                          "into the store.",
    config=FetchConfig, flags=FLAGS, build=build,
    render=lazy("laclip_jobs.fetch:render"), run_local=run_local, submitted=submitted,
)
