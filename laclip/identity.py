"""Digests of what made an output: an output is reused only when its recorded digest equals the
digest of the inputs and settings asked for now.

Canonical JSON (sorted keys, no spaces, ASCII) so that a digest does not depend on dict order or
on the Python version that wrote it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Iterable


def canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def digest(value, length: int = 64) -> str:
    """sha256 of the canonical JSON of `value`, in hex (the first `length` characters)."""
    return hashlib.sha256(canonical(value).encode()).hexdigest()[:length]


def rows_digest(rows: Iterable[tuple[str, str]]) -> str:
    """The digest of (key, caption) rows in order: what a shard's rewrites were made from."""
    h = hashlib.blake2b(digest_size=16)
    for key, caption in rows:
        h.update(f"{key}\t{caption}\x00".encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def listing_digest(versions: dict[str, str]) -> str:
    """The digest of a folder as (path, version) pairs: any added, removed or rewritten file changes it."""
    return digest(sorted(versions.items()), 32)
