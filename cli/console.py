"""One rich console for output and one for errors, shared by every command."""

from rich.console import Console

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def show_estimate(estimate, dry_run: bool) -> None:
    """A `laclip plan` estimate (or None) before a submit: stderr under --dry-run, so stdout stays YAML."""
    if estimate is not None:
        (err if dry_run else out).print(estimate.summary(), soft_wrap=True)
