"""The container entrypoint every stage shares: one way in for the config, one logging set-up, one
mapping from errors to exit codes.

    python -m laclip.<stage>.main (--config JSON | --config-file FILE) [--set FIELD=VALUE ...]

Pods get `--config` (the rendered JSON in the container args), local runners `--config-file`.
A LaclipError ends the process with one line (a JSON line in pods); permanent ones (usage and
data errors, laclip.errors) exit with EXIT_PERMANENT, which every rendered Job, JobSet and
Volcano Job treats as final, and anything else with 1, which is retried.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Callable

from pydantic import BaseModel

from laclip.config import load_config
from laclip.errors import EXIT_PERMANENT, LaclipError, UsageError, container_exit_code
from laclip.logs import event, setup

# Where a torchrun worker reports a permanent error, so that the launcher ends the run at once
# instead of letting torchrun restart the worker group (laclip.train.launch sets it).
PERMANENT_FILE_ENV = "LACLIP_PERMANENT_FILE"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # bad container args are permanent: no retry (argparse would exit 2)
        self.print_usage(sys.stderr)
        self.exit(EXIT_PERMANENT, f"{self.prog}: error: {message}\n")


def parser(component: str) -> argparse.ArgumentParser:
    ap = _Parser(prog=f"python -m laclip.{component}.main")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="the stage config as JSON")
    src.add_argument("--config-file", help="a file holding the stage config (JSON or YAML)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override one field")
    return ap


def read_config(model: type[BaseModel], args: argparse.Namespace):
    base = {}
    if args.config is not None:
        try:
            base = json.loads(args.config)
        except ValueError as exc:
            raise UsageError(f"--config is not JSON: {exc}") from None
        if not isinstance(base, dict):
            raise UsageError("--config must be a JSON object")
    return load_config(model, base, file=args.config_file, sets=args.set)


def report_permanent(message: str) -> None:
    """Tell the launcher (if any) that this run cannot succeed by trying again."""
    path = os.environ.get(PERMANENT_FILE_ENV)
    if path:
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(message.replace("\n", " ") + "\n")
        except OSError:
            pass


def main(component: str, model: type[BaseModel], run: Callable[[BaseModel], object],
         argv: list[str] | None = None, log_setup: Callable[[], logging.Logger] | None = None) -> int:
    """Parse, run, map errors to an exit code. `run(cfg)` does the stage's work."""
    args = parser(component).parse_args(argv)
    log = (log_setup or (lambda: setup(component)))()
    try:
        run(read_config(model, args))
        return 0
    except LaclipError as exc:
        message = " ".join(str(exc).split()) if "\n" not in str(exc).strip() else str(exc).strip()
        event(log, message, logging.ERROR, permanent=exc.permanent, error=type(exc).__name__)
        if exc.permanent:
            report_permanent(message)
        return container_exit_code(exc)
    except KeyboardInterrupt:
        event(log, "interrupted", logging.WARNING)
        return 130
