"""The Store interface and the operations shared by every backend."""

from __future__ import annotations

from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Iterable, Sequence


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

    @abstractmethod
    def versions(self, prefix: str = "") -> dict[str, str]:
        """{path: version} of the objects under `prefix`: a version changes whenever an object is
        written again (size and modification time in a folder, size and generation on gs://)."""

    def digests(self, prefix: str = "") -> dict[str, str]:
        """{path: digest of its content} of the objects under `prefix`: the same bytes give the same
        digest wherever and whenever they were written (unlike versions()). This fallback reads every
        object; the backends take it from where it is cheap (GCS's listing, a cache of file hashes)."""
        import hashlib

        return {p: "sha256:" + hashlib.sha256(self.read_bytes(p)).hexdigest() for p in self.list(prefix)}

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
