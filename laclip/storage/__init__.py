"""Object storage: one interface over local folders and gs:// buckets.

    store = open_store("gs://bucket/prefix")   # or a folder, or None for $LACLIP_ROOT
    store.write_bytes(layout.rewrite_shard("cc12m", "r1", "00000"), data, create_only=True)

Paths are always relative to the store root and use "/" (the paths themselves: laclip.layout).
The backends import Store from laclip.storage.base; the factory lives here, above them.
"""

from __future__ import annotations

import os
import re

from laclip.errors import UsageError
from laclip.storage.base import Store

__all__ = ["Store", "default_root", "open_store", "resolve_root"]

ROOT_ENV = "LACLIP_ROOT"


def default_root() -> str:
    """The local folder used when neither --root nor $LACLIP_ROOT is given."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "laclip")


def resolve_root(root: str | None = None) -> str:
    """--root wins over $LACLIP_ROOT, which wins over the default folder. A root holding a line break
    or another control character is refused: it would split log lines, job annotations and the
    `$GITHUB_OUTPUT` lines that carry it, and no bucket or sane folder has one."""
    url = root or os.environ.get(ROOT_ENV) or default_root()
    bad = next((c for c in url if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise UsageError(f"root {url!r} holds a control character ({bad!r}): give gs://BUCKET/PREFIX or a folder")
    return url


def open_store(root: str | None = None, **options) -> "Store":
    """Open the store at `root`: a gs:// URL, a file:// URL or a folder."""
    url = resolve_root(root)
    scheme, sep, rest = url.partition("://")
    if not sep:
        # "gs:/bucket" or "gs:bucket" is a mistyped URL, not a folder named "gs:" under the
        # current directory (which is where the data would silently go).
        typo = re.match(r"(gs|file):", url)
        if typo:
            raise UsageError(f"root {url!r} is not a URL: write {typo.group(1)}://..., or ./{url} for a folder")
        from laclip.storage.local import LocalStore

        return LocalStore(url)
    if scheme == "file":
        if not rest:  # would be the current directory, wherever that happens to be
            raise UsageError(f"root {url!r} names no folder: use file:///ABSOLUTE/PATH or a folder")
        from laclip.storage.local import LocalStore

        return LocalStore(rest)
    if scheme == "gs":
        from laclip.storage.gcs import GCSStore

        return GCSStore(url, **options)
    raise UsageError(
        f"unknown storage scheme {scheme + '://'!r} in root {url!r}: "
        "use gs://BUCKET[/PREFIX] or a local folder"
    )
