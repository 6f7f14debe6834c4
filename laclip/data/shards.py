"""Read and write the img2dataset layout: NNNNN.tar (webdataset) beside NNNNN.parquet.

A tar holds `key.jpg`, `key.txt` (the caption) and `key.json` per sample; the parquet
holds one row per attempted sample with at least `key`, `caption` and `status`.
Only rows with status "success" are samples.

Bad input, the one rule every stage follows (the README repeats it):

- A parquet that cannot be read, lacks `key`, `caption` or `status`, or whose `key`, `caption` or
  `status` column is not text (integers, lists, structs...) is a bad *file*: `DataError` naming
  the file and the column. Nothing in it is ever turned into text with str(). The rewrite
  stage, whose input it is, stops on it (exit 3, never retried: fix or remove the file); the
  trainer, whose input is the tar, counts it (`unreadable_parquets`), leaves it out of the
  sample count and the caption check, and trains on the tar; `datasets show --check` lists it.
- A successful row whose key is null, empty or not UTF-8, whose caption is null or not UTF-8,
  or whose key repeats an earlier row of the same parquet, is a bad *row*: every stage skips it
  and counts it by reason (SKIP_REASONS; the first row of a repeated key is kept). The rewrite
  stage records the counts in the shard's stats (`skipped_rows`); `--check` lists them.
- Duplicates: a key in two shards belongs to the first shard (in shard order). The trainer
  skips the later copies and a repeat of a key inside one tar, counted as `duplicate_keys`;
  `--check` lists both, and tar samples without an image or a `.txt`.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from laclip.errors import DataError, NotFound
from laclip.storage.base import Store, join

SHARD_RE = re.compile(r"^(\d{5,})\.(tar|parquet)$")
REQUIRED_COLUMNS = ("key", "caption", "status")


@dataclass(frozen=True)
class Shard:
    """One shard of a dataset: `datasets/<name>/<id>.tar` + `.parquet`."""

    dataset: str
    id: str  # "00042"
    folder: str  # store path of the dataset folder

    @property
    def index(self) -> int:
        return int(self.id)

    @property
    def tar(self) -> str:
        return join(self.folder, f"{self.id}.tar")

    @property
    def parquet(self) -> str:
        return join(self.folder, f"{self.id}.parquet")


def shard_id(index: int) -> str:
    return f"{index:05d}"


def list_shards(store: Store, dataset: str, folder: str) -> list[Shard]:
    """Shards found by listing `folder`; a tar without its parquet (or the reverse) is an error."""
    found: dict[str, set[str]] = {}
    for path in store.list(folder.rstrip("/") + "/"):
        name = path.rsplit("/", 1)[-1]
        if "/" in path[len(folder.rstrip("/")) + 1:]:
            continue  # sub-folders are not part of this dataset
        m = SHARD_RE.fullmatch(name)
        if m:
            found.setdefault(m.group(1), set()).add(m.group(2))
    shards = []
    for sid in sorted(found):
        missing = {"tar", "parquet"} - found[sid]
        if missing:
            (kind,) = missing
            raise DataError(
                f"dataset {dataset!r}: shard {store.url_of(join(folder, sid))} has a "
                f"{'parquet' if kind == 'tar' else 'tar'} but no .{kind}; re-download or remove it"
            )
        shards.append(Shard(dataset, sid, folder.rstrip("/")))
    return shards


def arrow_owned(data: bytes) -> pa.Buffer:
    """A copy of `data` in Arrow's memory. Arrow's pool threads release what they read late, even
    after the interpreter began to exit; releasing a Python object then needs the GIL and aborts the
    process ("terminate called without an active exception", exit 134 after `laclip data synth`
    had succeeded; apache/arrow#34314). Arrow's own memory is released without the GIL."""
    buf = pa.allocate_buffer(len(data))
    with pa.FixedSizeBufferWriter(buf) as writer:
        writer.write(data)
    return buf


def read_table(store: Store, path: str) -> pa.Table:
    """A parquet object as a table, with a readable error for anything unreadable."""
    try:
        data = store.read_bytes(path)
    except NotFound:
        raise NotFound(f"shard metadata {store.url_of(path)} is missing") from None
    try:
        return pq.read_table(pa.BufferReader(arrow_owned(data)))
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{store.url_of(path)} is not a readable parquet file: {exc}") from None


# Why a successful row is skipped (the bad-row rule above).
SKIP_REASONS = ("null_key", "empty_key", "key_not_utf8", "null_caption", "caption_not_utf8", "duplicate_key")


@dataclass
class ShardRows:
    """The usable rows of a shard's parquet and the successful rows skipped, by reason."""

    rows: list[tuple[str, str]]  # (key, caption) of every usable successful row, in file order
    skipped: Counter = field(default_factory=Counter)


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or getattr(pa.types, "is_string_view",
                                                                          lambda _: False)(t)


def _is_bytes(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t)


def _text_column(table: pa.Table, name: str, where: str) -> list:
    """A column's values as str, bytes (to decode per row) or None; any other type is a bad file."""
    col = table.column(name)
    kind = col.type
    if pa.types.is_dictionary(kind) and (_is_text(kind.value_type) or _is_bytes(kind.value_type)):
        col, kind = col.cast(kind.value_type), kind.value_type
    if _is_text(kind) or _is_bytes(kind):
        return col.to_pylist()
    if pa.types.is_null(kind):  # every value null: bad rows, not a bad file
        return [None] * len(col)
    raise DataError(f"{where}: column {name!r} holds {kind} values, not text: img2dataset's parquet has "
                    "string key, caption and status columns (no value of it is used)")


def _text(value) -> str | None:
    """str as is, bytes decoded as UTF-8 (None when they are not), None as None."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return value


def read_rows(store: Store, shard: Shard) -> ShardRows:
    """The usable successful rows of the shard's parquet and the skipped ones (the rule above);
    DataError naming the file (and the column) for a bad file."""
    where = store.url_of(shard.parquet)
    table = read_table(store, shard.parquet)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(
            f"{where} has no {', '.join(repr(c) for c in missing)} column "
            f"(columns: {', '.join(table.column_names)}); expected img2dataset's parquet layout"
        )
    keys, raw, status = (_text_column(table, c, where) for c in ("key", "caption", "status"))
    out = ShardRows([])
    seen: set[str] = set()
    for k, c, st in zip(keys, raw, status):
        if _text(st) != "success":
            continue
        key, caption = _text(k), _text(c)
        reason = ("null_key" if k is None else "key_not_utf8" if key is None else "empty_key" if not key.strip()
                  else "null_caption" if c is None else "caption_not_utf8" if caption is None
                  else "duplicate_key" if key in seen else None)
        if reason:
            out.skipped[reason] += 1
            continue
        seen.add(key)
        out.rows.append((key, caption))
    return out


def read_captions(store: Store, shard: Shard) -> list[tuple[str, str]]:
    """(key, caption) of every usable successful sample of the shard, in file order."""
    return read_rows(store, shard).rows


def repeated_keys(keys_by_shard: dict[str, list[str]]) -> dict[str, set[str]]:
    """Keys each shard must skip because an earlier shard (in shard order) holds them."""
    owner: dict[str, str] = {}
    later: dict[str, set[str]] = {}
    for sid in sorted(keys_by_shard):
        for key in keys_by_shard[sid]:
            if owner.setdefault(key, sid) != sid:
                later.setdefault(sid, set()).add(key)
    return later


def iter_tar(store: Store, path: str) -> Iterator[dict]:
    """Samples of a webdataset tar as {"__key__": key, ext: bytes, ...}, in file order."""
    where = store.url_of(path)
    try:
        stream = store.open_read(path)
    except NotFound:
        raise NotFound(f"shard {where} is missing") from None
    try:
        with stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            current: dict | None = None
            for member in tar:
                if not member.isfile():
                    continue
                base = member.name.rsplit("/", 1)[-1]
                key, dot, ext = base.partition(".")
                if not dot:
                    continue
                if current is not None and (current["__key__"] != key or ext in current):
                    yield current  # a new key, or the same key again (a repeat: the reader counts it)
                    current = None
                if current is None:
                    current = {"__key__": key}
                current[ext] = tar.extractfile(member).read()
            if current is not None:
                yield current
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{where} is not a readable tar file (corrupt or truncated): {exc}") from None


IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


@dataclass
class ShardCheck:
    """What `datasets show --check` found in one shard: its samples and one line per problem."""

    shard: Shard
    samples: int = 0
    keys: list[str] = field(default_factory=list)  # usable parquet keys, for repeats across shards
    problems: list[str] = field(default_factory=list)


def _count(n: int, what: str) -> str:
    """`1 sample without a .txt`, `2 samples without a .txt`: the first word takes the plural."""
    first, _, rest = what.partition(" ")
    return f"{n} {first if n == 1 else first + 's'}{' ' + rest if rest else ''}"


def check_shard(store: Store, shard: Shard, max_pixels: int | None = None) -> ShardCheck:
    """Read a whole shard and report every problem (never raise for bad data): a bad parquet,
    bad rows, repeated keys, tar samples without an image or a caption, keys the tar and the
    parquet do not share, and (with max_pixels) image headers that cannot be read or promise
    more pixels than that."""
    tar_url, pq_url = store.url_of(shard.tar), store.url_of(shard.parquet)
    found = ShardCheck(shard)
    try:
        parsed = read_rows(store, shard)
        captions = dict(parsed.rows)
        found.keys = [k for k, _ in parsed.rows]
        for reason, n in sorted(parsed.skipped.items()):
            found.problems.append(f"{pq_url}: {_count(n, 'successful row')} skipped ({reason.replace('_', ' ')})")
    except DataError as exc:
        found.problems.append(str(exc))
        captions = None
    seen: Counter = Counter()
    no_image = no_text = bad_text = unlisted = unreadable = too_big = 0
    try:
        for sample in iter_tar(store, shard.tar):
            key = sample["__key__"]
            seen[key] += 1
            image = next((e for e in IMAGE_EXTS if e in sample), None)
            if image is None:
                no_image += 1
            elif max_pixels is not None:
                pixels = _header_pixels(sample[image])
                unreadable += pixels is None
                too_big += pixels is not None and pixels > max_pixels
            if "txt" not in sample:
                no_text += 1
            else:
                try:
                    sample["txt"].decode("utf-8")
                except UnicodeDecodeError:
                    bad_text += 1
            if captions is not None and key not in captions:
                unlisted += 1
    except (DataError, NotFound) as exc:
        found.problems.append(str(exc))
    repeats = sum(n - 1 for n in seen.values() if n > 1)
    for n, what in ((repeats, "repeat of a key in this tar (trained once, the copies skipped)"),
                    (no_image, "sample without an image (.jpg/.png/.webp)"), (no_text, "sample without a .txt"),
                    (bad_text, "caption (.txt) that is not UTF-8"), (unreadable, "image whose header cannot be read"),
                    (too_big, f"image above {max_pixels:,} pixels" if max_pixels else ""),
                    (unlisted, "sample whose key is no usable successful row of the parquet")):
        if n:
            found.problems.append(f"{tar_url}: {_count(n, what)}")
    found.samples = len(seen)
    if captions is not None:
        absent = len(captions.keys() - seen.keys())
        if absent:
            found.problems.append(f"{tar_url}: {_count(absent, 'successful row')} of the parquet with no sample "
                                  "in the tar")
    return found


def _header_pixels(data: bytes) -> int | None:
    """Width x height from an image's header (nothing decoded); None when it cannot be read."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                return im.size[0] * im.size[1]
    except Image.DecompressionBombError:
        return 1 << 62
    except Exception:  # PIL raises many types for a file that is not an image
        return None


def write_shard(store: Store, folder: str, index: int, samples: list[dict], *, create_only: bool = True) -> Shard:
    """Write one shard in img2dataset's layout.

    Each sample: {"key", "caption", "jpg": bytes, optional "json": dict, "width", "height"}.
    The tar is written first and the parquet last, so a shard whose parquet exists is whole.
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for s in samples:
            meta = {"key": s["key"], "caption": s["caption"], "status": "success", **s.get("json", {})}
            for ext, data in (("jpg", s["jpg"]), ("txt", s["caption"].encode()), ("json", json.dumps(meta).encode())):
                info = tarfile.TarInfo(f"{s['key']}.{ext}")
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
    sid = shard_id(index)
    table = pa.table({
        "key": pa.array([s["key"] for s in samples], pa.string()),
        "caption": pa.array([s["caption"] for s in samples], pa.string()),
        "status": pa.array(["success"] * len(samples), pa.string()),
        "error_message": pa.array([None] * len(samples), pa.string()),
        "width": pa.array([s.get("width") for s in samples], pa.int32()),
        "height": pa.array([s.get("height") for s in samples], pa.int32()),
    })
    out = io.BytesIO()
    pq.write_table(table, out)
    store.write_bytes(join(folder, f"{sid}.tar"), buf.getvalue(), create_only=create_only)
    store.write_bytes(join(folder, f"{sid}.parquet"), out.getvalue(), create_only=create_only)
    return Shard(folder.rsplit("/", 1)[-1], sid, folder)
