"""One rich console for output and one for errors, shared by every command."""

from rich.console import Console

from laclip.errors import UsageError

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def show_estimate(estimate, dry_run: bool) -> None:
    """A `laclip plan` estimate (or None) before a submit: stderr under --dry-run, so stdout stays YAML."""
    if estimate is not None:
        (err if dry_run else out).print(estimate.summary(), soft_wrap=True)


def require_bucket(path: str, dry_run: bool, need: str = "--root gs://BUCKET/PREFIX") -> None:
    """Pods reach only gs://: a local folder ends a cluster submit, and is noted under --dry-run."""
    if path.startswith("gs://"):
        return
    if not dry_run:
        raise UsageError(f"pods cannot read the local folder {path}: pass {need} "
                         "(or use --local to run here, --dry-run to print)")
    err.print(f"note: {path} is a local folder; pods need {need}", soft_wrap=True)
