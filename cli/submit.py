"""`laclip submit rewrite|train|eval`: render, print (--dry-run), run here (--local) or create.

Each stage registers its command here from its own module.
"""

import typer

app = typer.Typer(help="Submit a stage as a Kubernetes job, print it, or run it here.", no_args_is_help=True)

from laclip_cli import submit_train  # noqa: E402,F401  (registers `submit train`)

from laclip_cli import submit_eval  # noqa: E402,F401  (registers `submit eval`)

from laclip_cli import submit_rewrite  # noqa: E402,F401  (registers `submit rewrite`)
