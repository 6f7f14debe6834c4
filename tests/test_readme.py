"""Every `laclip ...` command in the README's code blocks parses against the CLI as it is: each
sub-command exists and answers --help, and its flags and arguments parse (click's own parser,
nothing run). An unknown or misspelt flag in the docs fails here, not in a user's terminal."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

try:  # typer >= 0.26 carries its own copy of click
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import UsageError

from laclip_cli.main import app

README = Path(__file__).resolve().parents[1] / "README.md"
# placeholders the README uses, and values that parse where they stand
FILL = {"<REWRITE_ID>": "r1", "<IMPORTED_ID>": "import-0123456789", "<RUN>": "run1", "<OTHER_RUN>...": "run2",
        "<N>": "6", "$BUCKET": "bkt", "$PROJECT": "proj", "$LACLIP_ROOT": "gs://bkt/laclip"}


def readme_commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip()
            if line.startswith("laclip "):
                commands.append(line)
    return commands


def argv(line: str) -> list[str]:
    line = line.split(" | ")[0]  # `laclip ... | less`
    for k, v in FILL.items():
        line = line.replace(k, v)
    line = re.sub(r"\[([^\]]*)\]", r"\1", line)  # optional parts, as the README writes them: [--wait]
    words = shlex.split(line, comments=True)
    assert words[0] == "laclip"
    return words[1:]


def parse(args: list[str]) -> list[str]:
    """Parse as `laclip ARGS` would, sub-command by sub-command, without running anything; the
    command path."""
    cmd = typer.main.get_command(app)
    path, rest = [], list(args)
    while True:
        ctx = cmd.make_context("laclip", rest, resilient_parsing=False)
        if not hasattr(cmd, "resolve_command"):
            return path
        rest = [*getattr(ctx, "_protected_args", getattr(ctx, "protected_args", [])), *ctx.args]
        name, cmd, rest = cmd.resolve_command(ctx, rest)
        path.append(name)


COMMANDS = readme_commands()


def test_the_readme_shows_the_everyday_commands():
    paths = {" ".join(parse(argv(c))[:2]) for c in COMMANDS}
    assert {"submit rewrite", "submit train", "submit eval", "rewrites import", "rewrites export", "eval report",
            "status", "logs", "plan", "datasets show"} <= paths, paths


@pytest.mark.parametrize("line", COMMANDS)
def test_readme_command_parses(line):
    args = argv(line)
    try:
        path = parse(args)
    except UsageError as exc:
        pytest.fail(f"README: `{line}`: {exc.format_message()}")
    res = CliRunner().invoke(app, [*path, "--help"])
    assert res.exit_code == 0, res.output


def test_a_wrong_flag_is_caught():
    with pytest.raises(UsageError, match="No such option"):
        parse(argv("laclip submit train --dataset cc12m --log-everyy 5"))
