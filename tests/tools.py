"""Helpers for tests that call command-line tools."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest


def dev_tool(name: str) -> str:
    """A command-line tool from the [dev] extra: beside this Python (a venv run without
    activating it, as CI does) or on PATH. Missing means a broken setup, not a skip."""
    found = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if not found:
        pytest.fail(f"{name} is not installed: `pip install -e '.[dev]'` (or `make setup-dev`) provides it")
    return found
