"""`laclip submit rewrite|train|eval`: render, print (--dry-run), run here (--local) or create.

Every stage is declared once (laclip_cli.stages) and driven the same way (laclip_cli.stage).
"""

import typer

from laclip_cli import stages
from laclip_cli.stage import command

app = typer.Typer(help="Submit a stage as a Kubernetes job, print it, or run it here.", no_args_is_help=True)
STAGES = {s.name: s for s in stages.STAGES if s.submit}
for _stage in STAGES.values():
    app.command(_stage.name, help=_stage.help)(command(_stage))
