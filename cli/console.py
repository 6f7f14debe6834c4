"""One rich console for output and one for errors, shared by every command.

Both read no markup and no emoji codes: what laclip prints is full of user text (store roots such as
`exp[v2]` or `gs://b/[/]`, paths, dataset names, error messages) that rich would otherwise take as
markup, dropping or misreading it, or failing on it after the work was done. Style comes only from
`styled` (or Text objects), never from text.
"""

from rich.console import Console
from rich.text import Text

from laclip.errors import UsageError

out = Console(highlight=False, markup=False, emoji=False)
err = Console(stderr=True, highlight=False, markup=False, emoji=False)


def styled(*parts) -> Text:
    """Text from plain strings and (text, style) pairs: the one way to style output here."""
    return Text.assemble(*parts)


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
