"""Read and write the img2dataset layout: NNNNN.tar (webdataset) beside NNNNN.parquet.

A tar holds `key.jpg`, `key.txt` (the caption) and `key.json` per sample; the parquet
holds one row per attempted sample with at least `key`, `caption` and `status`.
Only rows with status "success" are samples.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from dataclasses import dataclass
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


def _decode_caption(value, where: str, key) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{where}: caption of key {key!r} is not valid UTF-8 (byte {exc.start})") from None
    return str(value)


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


def read_captions(store: Store, shard: Shard) -> list[tuple[str, str]]:
    """(key, caption) of every successful sample of the shard, in file order."""
    where = store.url_of(shard.parquet)
    table = read_table(store, shard.parquet)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(
            f"{where} has no {', '.join(repr(c) for c in missing)} column "
            f"(columns: {', '.join(table.column_names)}); expected img2dataset's parquet layout"
        )
    keys = table.column("key").to_pylist()
    status = table.column("status").to_pylist()
    raw = table.column("caption").to_pylist()
    return [
        (str(k), _decode_caption(c, where, k))
        for k, c, s in zip(keys, raw, status)
        if s == "success"
    ]


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
                if current is not None and current["__key__"] != key:
                    yield current
                    current = None
                if current is None:
                    current = {"__key__": key}
                current[ext] = tar.extractfile(member).read()
            if current is not None:
                yield current
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{where} is not a readable tar file (corrupt or truncated): {exc}") from None


def check_shard(store: Store, shard: Shard) -> int:
    """Read a whole shard; check the tar and parquet agree. Returns the sample count."""
    captions = dict(read_captions(store, shard))
    seen = 0
    for sample in iter_tar(store, shard.tar):
        key = sample["__key__"]
        if key not in captions:
            raise DataError(f"{store.url_of(shard.tar)}: key {key!r} is not a successful row of its parquet")
        if "txt" in sample:
            try:
                sample["txt"].decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{store.url_of(shard.tar)}: {key}.txt is not valid UTF-8") from None
        seen += 1
    if seen != len(captions):
        raise DataError(
            f"{store.url_of(shard.tar)} holds {seen} samples but its parquet lists {len(captions)} successes"
        )
    return seen


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
