"""One rich console for output and one for errors, shared by every command."""

from rich.console import Console

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
