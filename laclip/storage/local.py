"""A folder as an object store: atomic writes by temp file + rename, create-only by link."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from laclip.errors import AlreadyExists, NotFound, StorageError, UsageError
from laclip.storage.base import Store
from laclip.storage.faults import os_fault


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; a published object gets the mode any other new file would get.
FILE_MODE = 0o666 & ~_umask()


class LocalStore(Store):
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()
        self.url = str(self.root)

    def _path(self, path: str) -> Path:
        # Lexical, not resolve(): a dataset folder may be a symlink to another disk; `..` may not leave.
        full = Path(os.path.normpath(self.root / path.lstrip("/")))
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
        except OSError as exc:  # permission denied, an I/O error: one line, classed for the retry policy
            raise os_fault(exc, "read", self.url_of(path)) from None

    def open_read(self, path: str) -> BinaryIO:
        try:
            return open(self._path(path), "rb")
        except FileNotFoundError:
            raise NotFound(f"{self.url_of(path)} does not exist") from None
        except IsADirectoryError:
            raise NotFound(f"{self.url_of(path)} is a folder, not an object") from None
        except OSError as exc:  # permission denied, an I/O error: one line, classed for the retry policy
            raise os_fault(exc, "read", self.url_of(path)) from None

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
        except IsADirectoryError:  # a folder holds the name: a message, not a traceback
            raise StorageError(f"cannot write {self.url_of(path)}: a folder has that name") from None
        except OSError as exc:
            raise os_fault(exc, "write", self.url_of(path)) from None
        finally:
            tmp.unlink(missing_ok=True)

    def _tempfile(self, dest: Path) -> Path:
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
            os.fchmod(fd, FILE_MODE)
            os.close(fd)
        except OSError as exc:
            raise os_fault(exc, "write in", str(dest.parent)) from None
        return Path(tmp)

    def _write(self, path: str, create_only: bool, fill) -> None:
        """Fill a temp file beside the object (fill(file)), fsync it, then publish it atomically."""
        dest = self._path(path)
        try:
            there = create_only and dest.exists()
        except OSError as exc:
            raise os_fault(exc, "write", self.url_of(path)) from None
        if there:
            raise AlreadyExists(f"{self.url_of(path)} already exists (create-only write)")
        tmp = self._tempfile(dest)
        try:
            with open(tmp, "wb") as f:
                fill(f)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:  # a full disk, a quota: no half object, no temp file left
            tmp.unlink(missing_ok=True)
            if isinstance(exc, FileNotFoundError) and exc.filename != str(tmp):
                raise NotFound(f"local file {exc.filename} does not exist") from None
            if exc.filename not in (None, str(tmp)):  # the source of an upload, not the store
                raise os_fault(exc, "read", str(exc.filename)) from None
            raise os_fault(exc, "write", self.url_of(path)) from None
        self._publish(tmp, dest, create_only, path)

    def write_bytes(self, path: str, data: bytes, *, create_only: bool = False) -> None:
        self._write(path, create_only, lambda f: f.write(data))

    def upload_file(self, local: str | Path, path: str, *, create_only: bool = False) -> None:
        def copy(f) -> None:
            with open(local, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)

        self._write(path, create_only, copy)

    def download_file(self, path: str, local: str | Path) -> None:
        src = self._path(path)
        if not self.exists(path):
            raise NotFound(f"{self.url_of(path)} does not exist")
        local = Path(local)
        tmp = local.with_name(f".{local.name}.part")  # like the GCS store: a broken copy leaves no file
        try:
            local.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, tmp)
            os.replace(tmp, local)
        except OSError as exc:
            raise os_fault(exc, "copy", f"{self.url_of(path)} to {local}") from None
        finally:
            try:  # nothing there (or no folder to look in) where the copy could not start
                tmp.unlink(missing_ok=True)
            except OSError:
                pass

    def exists(self, path: str) -> bool:
        try:
            return self._path(path).is_file()
        except OSError as exc:  # a folder we may not enter: not "absent"
            raise os_fault(exc, "check", self.url_of(path)) from None

    def versions(self, prefix: str = "") -> dict[str, str]:
        found = {}
        for rel in self.list(prefix):
            try:
                st = os.stat(self.root / rel)
            except OSError:  # deleted since the listing
                continue
            found[rel] = f"{st.st_size}-{st.st_mtime_ns}"
        return found

    def digests(self, prefix: str = "") -> dict[str, str]:
        from laclip.identity import file_digests

        paths = {rel: str(self.root / rel) for rel in self.list(prefix)}
        try:
            sums = file_digests(paths.values())
        except FileNotFoundError:  # deleted since the listing: list again
            return self.digests(prefix)
        except OSError as exc:
            raise os_fault(exc, "read", exc.filename or self.url_of(prefix)) from None
        return {rel: "sha256:" + sums[full] for rel, full in paths.items()}

    def list(self, prefix: str = "") -> list[str]:
        base = self._path(prefix) if prefix else self.root
        # A prefix may name a folder (datasets/demo/) or a name start (datasets/demo/000).
        try:
            folder = base if base.is_dir() else base.parent
            if not folder.is_dir():
                return []
        except OSError as exc:
            raise os_fault(exc, "list", self.url_of(prefix)) from None
        out = []

        def refused(exc: OSError):  # an unreadable folder must not read as an empty one
            raise os_fault(exc, "list", exc.filename or str(folder)) from None

        # followlinks: a dataset folder may be a link to another disk
        for dirpath, _, files in os.walk(folder, onerror=refused, followlinks=True):
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
        except IsADirectoryError:
            raise NotFound(f"{self.url_of(path)} is a folder, not an object") from None
        except OSError as exc:
            raise os_fault(exc, "delete", self.url_of(path)) from None
