"""The Store interface, root resolution and the operations shared by every backend."""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Iterable, Sequence

from laclip.errors import UsageError

ROOT_ENV = "LACLIP_ROOT"


def default_root() -> str:
    """The local folder used when neither --root nor $LACLIP_ROOT is given."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "laclip")


def resolve_root(root: str | None = None) -> str:
    """--root wins over $LACLIP_ROOT, which wins over the default folder."""
    return root or os.environ.get(ROOT_ENV) or default_root()


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


def join(*parts: str) -> str:
    """Join store paths with '/', ignoring empty parts."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


class Store(ABC):
    """Bytes by relative path. Backends: LocalStore, GCSStore."""

    url: str

    # -- the primitives every backend implements --------------------------------
    @abstractmethod
    def read_bytes(self, path: str) -> bytes: ...

    @abstractmethod
    def write_bytes(self, path: str, data: bytes, *, create_only: bool = False) -> None:
        """Write atomically: readers see the whole object or nothing.

        With create_only, raise AlreadyExists if the object is there (also when
        another writer got there first): exactly one of racing writers wins."""

    @abstractmethod
    def upload_file(self, local: str | Path, path: str, *, create_only: bool = False) -> None: ...

    @abstractmethod
    def download_file(self, path: str, local: str | Path) -> None: ...

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Paths of all objects under `prefix` (recursive), sorted."""

    @abstractmethod
    def delete(self, path: str) -> None: ...

    @abstractmethod
    def open_read(self, path: str) -> BinaryIO:
        """A readable binary stream, for large objects such as shards."""

    def local_path(self, path: str) -> Path | None:
        """The file behind `path` when the store is a folder, else None."""
        return None

    def url_of(self, path: str) -> str:
        return self.url.rstrip("/") + "/" + path.lstrip("/") if path else self.url

    # -- conveniences built on the primitives -----------------------------------
    def read_text(self, path: str) -> str:
        return self.read_bytes(path).decode("utf-8")

    def write_text(self, path: str, text: str, *, create_only: bool = False) -> None:
        self.write_bytes(path, text.encode("utf-8"), create_only=create_only)

    def upload_many(
        self, pairs: Iterable[tuple[str | Path, str]], *, create_only: bool = False, workers: int = 8
    ) -> None:
        """Upload (local file, store path) pairs in parallel; the first error is raised."""
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(self.upload_file, src, dst, create_only=create_only) for src, dst in pairs]
            for future in futures:
                future.result()

    def download_many(self, pairs: Sequence[tuple[str, str | Path]], *, workers: int = 8) -> None:
        """Download (store path, local file) pairs in parallel; the first error is raised."""
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(self.download_file, src, dst) for src, dst in pairs]
            for future in futures:
                future.result()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
