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


# -- content digests of files -----------------------------------------------------------------
# Hashing a model's weights or a dataset's shards on every start would take minutes; a file whose
# (path, size, mtime, inode, ctime) are unchanged holds the bytes it held when it was hashed, so each
# file is hashed once and its digest kept in a small SQLite cache ($LACLIP_DIGEST_CACHE; "off": none).
CACHE_ENV = "LACLIP_DIGEST_CACHE"


def _cache_path() -> str | None:
    import os

    value = os.environ.get(CACHE_ENV)
    if value == "off":
        return None
    if value:
        return value
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "laclip", "digests.sqlite")


def _cache():
    import os
    import sqlite3

    path = _cache_path()
    if path is None:
        return None
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        db = sqlite3.connect(path, timeout=30)
        db.execute("CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, stamp TEXT, sha256 TEXT)")
        return db
    except (OSError, sqlite3.Error):  # a read-only home: hash without a cache
        return None


def file_digests(paths: Iterable[str]) -> dict[str, str]:
    """{path: sha256 hex} of local files, each read once per change (see above)."""
    import os
    import sqlite3

    db, found = _cache(), {}
    try:
        for path in paths:
            st = os.stat(path)
            real = os.path.realpath(path)
            stamp = f"{st.st_size}-{st.st_mtime_ns}-{st.st_ino}-{st.st_ctime_ns}"
            row = None
            if db is not None:
                try:
                    row = db.execute("SELECT sha256 FROM digests WHERE path=? AND stamp=?", (real, stamp)).fetchone()
                except sqlite3.Error:
                    row = None
            if row:
                found[path] = row[0]
                continue
            with open(path, "rb") as f:
                found[path] = hashlib.file_digest(f, "sha256").hexdigest()
            if db is not None:
                try:
                    with db:
                        db.execute("INSERT OR REPLACE INTO digests VALUES (?, ?, ?)", (real, stamp, found[path]))
                except sqlite3.Error:
                    pass
    finally:
        if db is not None:
            db.close()
    return found


# What decides a local model folder's outputs: the files transformers reads from it (weights, configs,
# tokenizer, generation config), i.e. every top-level file but dot files, docs and licences.
NOT_MODEL = (".md", ".gitattributes")
NOT_MODEL_PREFIX = ("LICENSE", "LICENCE", "NOTICE", "USE_POLICY", "README")


def model_folder_files(folder: str) -> list[str]:
    import os

    names = sorted(os.listdir(folder))
    return [os.path.join(folder, n) for n in names if not n.startswith(".") and not n.endswith(NOT_MODEL)
            and not n.upper().startswith(NOT_MODEL_PREFIX) and os.path.isfile(os.path.join(folder, n))]


def model_folder_digest(folder: str) -> str:
    """The digest of a local model folder's content (model_folder_files): other weights, another
    tokenizer or config give another digest, the same files moved elsewhere the same one."""
    import os

    files = model_folder_files(folder)
    sums = file_digests(files)
    return digest({os.path.basename(p): sums[p] for p in files}, 32)
