"""Reading the release: files outside the store (a path or gs:// URL, optionally gzip-compressed),
streamed once, line-aligned, with the digest of every file taken on the way.

Lines are what the release's own loader reads (Python text mode, `readlines()`): a line ends at
"\\n", "\\r\\n" or "\\r", and the line break is not part of it. The captions come from a CSV
(`csv.reader`; a row counts when its first field ends in .png/.jpg/.jpeg, as the release's loader
counts them, or every row) or from a file of one caption per line. Each rewrite file must have
exactly one line per counted row: any other count is a DataError naming both counts, since a
shifted file would pair every later caption with another caption's rewrites.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import posixpath
import sys
from dataclasses import dataclass, field
from itertools import islice
from typing import Iterator

from laclip.errors import DataError, NotFound, UsageError
from laclip.rewrite_import.config import IMAGE_SUFFIXES, ImportConfig

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # a caption may be long; the default limit is 128 KiB


def locate(url: str):
    """(store, name) of an input file: the store is its folder (laclip.storage), so gs:// works too."""
    from laclip.storage import open_store

    ref = url.strip()
    if "://" in ref:
        scheme, _, rest = ref.partition("://")
        folder, _, name = rest.rstrip("/").rpartition("/")
        if not folder or not name:
            raise UsageError(f"{url!r} names no file ({scheme}://BUCKET/PATH/FILE)")
        return open_store(f"{scheme}://{folder}"), name
    path = os.path.abspath(os.path.expanduser(ref))
    return open_store(posixpath.dirname(path)), posixpath.basename(path)


def version(url: str) -> str | None:
    """The file's version (size and mtime, or size and generation on gs://); None if it is missing."""
    store, name = locate(url)
    return store.versions(name).get(name)


class _Digest(io.RawIOBase):
    """A read-through wrapper that hashes and counts the raw (possibly compressed) bytes."""

    def __init__(self, raw):
        self.raw, self.sha, self.bytes = raw, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        data = self.raw.read(len(buf))
        n = len(data)
        buf[:n] = data
        self.sha.update(data)
        self.bytes += n
        return n

    def close(self) -> None:
        try:
            self.raw.close()
        finally:
            super().close()


@dataclass
class InputFile:
    """One input, opened for a single streaming pass."""

    url: str
    role: str  # "original" or the source name
    digest: _Digest = field(init=False)
    text: io.TextIOBase = field(init=False)
    count: int = 0

    def __post_init__(self):
        store, name = locate(self.url)
        try:
            raw = store.open_read(name)
        except NotFound:
            raise DataError(f"{self.role} file {store.url_of(name)} does not exist") from None
        self.version = store.versions(name).get(name)
        self.digest = _Digest(raw)
        stream = io.BufferedReader(self.digest, buffer_size=1 << 20)
        if self.url.lower().endswith(".gz"):
            stream = gzip.GzipFile(fileobj=stream, mode="rb")
        # newline=None: universal newlines, as the release's loader reads its files
        self.text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline=None)

    def lines(self, n: int) -> list[str]:
        """Up to n lines, each still ending in its "\\n" (but perhaps the last): see strip_newlines."""
        try:
            out = list(islice(self.text, n))
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise DataError(f"{self.url}: cannot be read ({exc})") from None
        self.count += len(out)
        return out

    def record(self) -> dict:
        return {"url": self.url, "sha256": self.digest.sha.hexdigest(), "bytes": self.digest.bytes,
                "rows" if self.role == "original" else "lines": self.count, "version": self.version}

    def close(self) -> None:
        self.text.close()


class CsvCaptions:
    """Captions of a CSV in the release's layout (image path, caption), `n` counted rows at a time."""

    def __init__(self, src: InputFile, cfg: ImportConfig):
        self.src, self.reader = src, csv.reader(src.text, delimiter="\t" if cfg.format == "tsv" else ",")
        self.images_only, self.column = cfg.csv_rows == "images", cfg.caption_column
        self.row = 0  # rows read, counted or not (for messages)
        self.uncounted, self.tabbed = 0, False  # rows whose first field names no image; one of them held a tab

    def take(self, n: int) -> list[str]:
        out: list[str] = []
        try:
            while len(out) < n:
                row = next(self.reader, None)
                if row is None:
                    break
                self.row += 1
                if not row or (self.images_only and not row[0].endswith(IMAGE_SUFFIXES)):
                    self.uncounted += bool(row)
                    self.tabbed = self.tabbed or bool(row and "\t" in row[0])
                    continue
                if len(row) <= self.column:
                    raise DataError(f"{self.src.url}: row {self.row} has {len(row)} fields, no caption in field "
                                    f"{self.column} (--set caption_column=N)")
                out.append(row[self.column])
        except csv.Error as exc:
            raise DataError(f"{self.src.url}: row {self.row + 1} is not CSV: {exc}") from None
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise DataError(f"{self.src.url}: cannot be read ({exc})") from None
        self.src.count += len(out)
        return out


def strip_newlines(lines: list[str]):
    """The lines as an Arrow array without their line break (universal newlines made every one "\\n")."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.utf8_rtrim(pa.array(lines, pa.string()), characters="\n")


@dataclass
class Chunk:
    start: int  # the release row of captions[0]
    captions: list[str]
    rewrites: dict[str, list[str]]  # source -> one rewrite per caption, each ending in "\n" (strip_newlines)


class Release:
    """The original and every source file, read together in line-aligned chunks."""

    def __init__(self, cfg: ImportConfig):
        self.cfg = cfg
        self.files: list[InputFile] = []
        try:
            self.original = InputFile(cfg.original, "original")
            self.files.append(self.original)
            for name, url in cfg.sources.items():
                self.files.append(InputFile(url, name))
        except BaseException:
            self.close()
            raise
        self.sources = {f.role: f for f in self.files[1:]}
        self.captions = CsvCaptions(self.original, cfg) if cfg.tabular else None

    def chunks(self, n: int) -> Iterator[Chunk]:
        start = 0
        while True:
            captions = self._take(n)
            rewrites = {name: f.lines(len(captions) or 1) for name, f in self.sources.items()}
            if any(len(v) != len(captions) for v in rewrites.values()):
                self._misaligned()
            if not captions:
                return
            yield Chunk(start, captions, rewrites)
            start += len(captions)

    def _take(self, n: int) -> list[str]:
        if self.captions:
            return self.captions.take(n)
        return [line[:-1] if line.endswith("\n") else line for line in self.original.lines(n)]

    def _misaligned(self) -> None:
        """Count every file to the end and name the ones whose length differs from the original's."""
        while self._take(1 << 16):
            pass
        rows = self.original.count
        for f in self.sources.values():
            while f.lines(1 << 16):
                pass
        wrong = [f for f in self.sources.values() if f.count != rows]
        what = "caption rows" if self.captions else "lines"
        listed = "; ".join(f"{f.url} has {f.count:,} lines" for f in wrong)
        why = "the files are not line-aligned (one rewrite per line, line i for row i of the original)"
        skipped = self.captions.uncounted if self.captions else 0
        if skipped and (self.captions.tabbed or all(f.count == rows + skipped for f in wrong)):
            # the original, not the rewrites: rows it holds were not read as rows of images
            why = (f"{skipped:,} rows of the original were not counted, their first field naming no .png/.jpg/.jpeg "
                   "image" + ("; they hold tabs: read it as TSV (--original-format tsv)" if self.captions.tabbed
                              else "; --set csv_rows=all counts every row"))
        raise DataError(f"{listed}, but {self.original.url} has {rows:,} {what}: {why}")

    def records(self) -> dict:
        return {"original": self.original.record(), "sources": {n: f.record() for n, f in self.sources.items()}}

    def close(self) -> None:
        for f in self.files:
            try:
                f.close()
            except Exception:
                pass
