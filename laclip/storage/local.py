"""A folder as an object store: atomic writes by temp file + rename, create-only by link."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from laclip.errors import AlreadyExists, NotFound, StorageError, UsageError
from laclip.storage.base import Store


class LocalStore(Store):
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()
        self.url = str(self.root)

    def _path(self, path: str) -> Path:
        full = (self.root / path.lstrip("/")).resolve()
        if full != self.root and self.root not in full.parents:
            raise UsageError(f"path {path!r} escapes the store root {self.url}")
        return full

    def local_path(self, path: str) -> Path:
        return self._path(path)

    def read_bytes(self, path: str) -> bytes:
        try:
            return self._path(path).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{self.url_of(path)} does not exist") from None
        except IsADirectoryError:
            raise NotFound(f"{self.url_of(path)} is a folder, not an object") from None

    def open_read(self, path: str) -> BinaryIO:
        try:
            return open(self._path(path), "rb")
        except FileNotFoundError:
            raise NotFound(f"{self.url_of(path)} does not exist") from None

    def _publish(self, tmp: Path, dest: Path, create_only: bool, path: str) -> None:
        # os.link fails if dest exists: the atomic create-only primitive of POSIX.
        try:
            if create_only:
                try:
                    os.link(tmp, dest)
                except FileExistsError:
                    raise AlreadyExists(f"{self.url_of(path)} already exists (create-only write)") from None
                except OSError:  # filesystems without hard links
                    if dest.exists():
                        raise AlreadyExists(f"{self.url_of(path)} already exists (create-only write)") from None
                    os.rename(tmp, dest)
            else:
                os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def _tempfile(self, dest: Path) -> Path:
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create folder {dest.parent}: {exc.strerror}") from None
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
        os.close(fd)
        return Path(tmp)

    def write_bytes(self, path: str, data: bytes, *, create_only: bool = False) -> None:
        dest = self._path(path)
        if create_only and dest.exists():
            raise AlreadyExists(f"{self.url_of(path)} already exists (create-only write)")
        tmp = self._tempfile(dest)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self._publish(tmp, dest, create_only, path)

    def upload_file(self, local: str | Path, path: str, *, create_only: bool = False) -> None:
        dest = self._path(path)
        if create_only and dest.exists():
            raise AlreadyExists(f"{self.url_of(path)} already exists (create-only write)")
        tmp = self._tempfile(dest)
        try:
            shutil.copyfile(local, tmp)
        except FileNotFoundError:
            tmp.unlink(missing_ok=True)
            raise NotFound(f"local file {local} does not exist") from None
        self._publish(tmp, dest, create_only, path)

    def download_file(self, path: str, local: str | Path) -> None:
        src = self._path(path)
        if not src.is_file():
            raise NotFound(f"{self.url_of(path)} does not exist")
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, local)

    def exists(self, path: str) -> bool:
        return self._path(path).is_file()

    def list(self, prefix: str = "") -> list[str]:
        base = self._path(prefix) if prefix else self.root
        # A prefix may name a folder ("datasets/demo/") or a name start ("datasets/demo/000").
        folder = base if base.is_dir() else base.parent
        if not folder.is_dir():
            return []
        out = []
        for dirpath, _, files in os.walk(folder):
            for name in files:
                if name.startswith(".") and name.endswith(".tmp"):
                    continue  # an unpublished write
                rel = os.path.relpath(os.path.join(dirpath, name), self.root).replace(os.sep, "/")
                if rel.startswith(prefix.lstrip("/")):
                    out.append(rel)
        return sorted(out)

    def delete(self, path: str) -> None:
        try:
            self._path(path).unlink()
        except FileNotFoundError:
            raise NotFound(f"{self.url_of(path)} does not exist") from None
