"""`laclip`: submit, run and watch LaCLIP jobs.

Sub-command modules are small typer apps; heavy libraries (kubernetes, torch, open_clip)
are imported inside the commands that need them so that `laclip --help` stays fast.
"""

from __future__ import annotations

import logging
import sys
from typing import Optional

import typer
from rich.markup import escape

from laclip import __version__
from laclip.errors import LaclipError
from laclip_cli import data as data_cmd
from laclip_cli import datasets as datasets_cmd
from laclip_cli import pipeline as pipeline_cmd
from laclip_cli import rewrites as rewrites_cmd
from laclip_cli import eval_cmd
from laclip_cli import submit as submit_cmd
from laclip_cli import status as status_cmd
from laclip_cli import plan as plan_cmd
from laclip_cli.console import err, out
from laclip_cli.state import state

app = typer.Typer(
    name="laclip",
    help="Train CLIP with LLM-rewritten captions (LaCLIP) as Kubernetes batch jobs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


@app.callback()
def _root(
    root: Optional[str] = typer.Option(
        None, "--root", envvar="LACLIP_ROOT", show_envvar=True,
        help="Store root: gs://BUCKET/PREFIX or a local folder [default: ~/.local/share/laclip].",
    ),
) -> None:
    if root is not None and not root.strip():  # `--root "$UNSET"` must not fall back to the default root
        raise typer.BadParameter("is empty: give gs://BUCKET/PREFIX or a folder", param_hint="--root")
    state.root = root


@app.command()
def version() -> None:
    """Print the laclip version and the store root in use."""
    from laclip.storage import resolve_root

    out.print(f"laclip {__version__}")
    out.print(f"store root: {resolve_root(state.root)}")


app.add_typer(datasets_cmd.app, name="datasets")
app.add_typer(data_cmd.app, name="data")
app.add_typer(submit_cmd.app, name="submit")
app.add_typer(rewrites_cmd.app, name="rewrites")
app.command("pipeline")(pipeline_cmd.pipeline)
app.add_typer(eval_cmd.app, name="eval")
status_cmd.register(app)
app.command("plan")(plan_cmd.plan)


class _Notes(logging.Handler):
    """Warnings of the library (laclip.cluster, laclip.lease...) as notes on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        err.print(f"note: {record.getMessage()}", markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    library = logging.getLogger("laclip")
    if not library.handlers:
        library.addHandler(_Notes(logging.WARNING))
        library.propagate = False
    try:
        app()
    except LaclipError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
