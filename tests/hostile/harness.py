"""What the hostile-input corpus is made of: the `laclip` command run in this process as a user
runs it, builders of malformed datasets and images, and the checks that an outcome is a clear message
or a counted fallback.

Only interfaces that the code before the fix already had are used here (the command line, the store,
the stage entrypoints, TrainStream's loop), so `python -m tests.hostile.measure` can run the same corpus
against the commit the work started from and count its cases then and now.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import sys
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq


# -- the command, in this process ----------------------------------------------------------------
@dataclass
class Result:
    rc: int | None  # None: an exception escaped (a traceback)
    out: str
    err: str
    exc: BaseException | None = None

    @property
    def messages(self) -> list[str]:
        """stderr lines that are neither notes nor warnings nor progress."""
        return [ln for ln in self.err.splitlines() if ln.strip() and not ln.startswith(("note:", "warning:"))]


def laclip(*argv: str, env: dict | None = None, cwd: str | os.PathLike | None = None, stdin: str = "") -> Result:
    """`laclip ARGV...` through the CLI's own main(), stdout and stderr captured."""
    from laclip_cli import main as cli_main

    saved_env, saved_cwd, saved_argv, saved_in = dict(os.environ), os.getcwd(), sys.argv, sys.stdin
    out, err = io.StringIO(), io.StringIO()
    rc, exc = None, None
    try:
        for key, value in (env or {}).items():  # None: unset
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if cwd is not None:
            os.chdir(cwd)
        sys.argv, sys.stdin = ["laclip", *argv], io.StringIO(stdin)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli_main.main()
                rc = 0
            except SystemExit as stop:
                rc = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            except BaseException as raised:  # noqa: BLE001 - what the user would see as a traceback
                exc = raised
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        sys.argv, sys.stdin = saved_argv, saved_in
    return Result(rc, out.getvalue(), err.getvalue(), exc)


def assert_clean_error(res: Result, *expected: str) -> None:
    """Non-zero exit, no traceback, exactly one line of message (`error: ...`) holding `expected`."""
    assert res.exc is None, f"an exception escaped: {res.exc!r}"
    assert res.rc not in (0, None, 70), f"exit {res.rc}: {res.err[-500:]}"
    text = res.out + res.err
    assert "Traceback (most recent call last)" not in text, text[-1500:]
    lines = res.messages
    assert len(lines) == 1 and lines[0].startswith("error: "), f"not one line of message: {lines[:6]}"
    for want in expected:
        assert want in lines[0], f"{want!r} not in {lines[0]!r}"


def assert_ok(res: Result) -> None:
    assert res.exc is None and res.rc == 0, f"exit {res.rc} {res.exc!r}: {res.err[-800:]}"


# -- images --------------------------------------------------------------------------------------
def jpeg(size: int = 32, seed: int = 0) -> bytes:
    from PIL import Image

    img = Image.new("RGB", (size, size), (seed * 37 % 256, 90, 160))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


_PNG_CACHE: dict[tuple[int, int], bytes] = {}


def png(width: int, height: int) -> bytes:
    """A valid grey PNG of any size, written without holding its pixels (a few KB per megapixel)."""
    if (width, height) not in _PNG_CACHE:
        comp = zlib.compressobj(9)
        row = b"\x00" * (width + 1)  # filter byte + grey pixels
        body = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
        ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
        _PNG_CACHE[width, height] = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body)
                                     + _chunk(b"IEND", b""))
    return _PNG_CACHE[width, height]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG header promising width x height with no pixels behind it (a decompression bomb's shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))


# -- img2dataset shards, good and bad ------------------------------------------------------------
@dataclass
class Sample:
    key: str
    caption: str | None = "a red square on grey"
    image: bytes | None = field(default_factory=jpeg)  # None: no .jpg in the tar
    txt: bytes | None | str = "caption"  # the tar's .txt: "caption" (the caption's bytes), bytes, or None (none)


def tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sample_members(samples: list[Sample]) -> list[tuple[str, bytes]]:
    members = []
    for s in samples:
        if s.image is not None:
            members.append((f"{s.key}.jpg", s.image))
        text = (s.caption or "").encode() if s.txt == "caption" else s.txt
        if text is not None:
            members.append((f"{s.key}.txt", text))
        members.append((f"{s.key}.json", json.dumps({"key": s.key}).encode()))
    return members


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def rows_table(samples: list[Sample]) -> pa.Table:
    return pa.table({"key": pa.array([s.key for s in samples], pa.string()),
                     "caption": pa.array([s.caption for s in samples], pa.string()),
                     "status": pa.array(["success"] * len(samples), pa.string())})


def write_dataset(root: Path, name: str, shards: list[tuple[bytes | None, bytes | None]]) -> Path:
    """datasets/<name>/NNNNN.tar + .parquet from raw bytes (None: that file left out)."""
    folder = root / "datasets" / name
    folder.mkdir(parents=True, exist_ok=True)
    for i, (tar, parquet) in enumerate(shards):
        if tar is not None:
            (folder / f"{i:05d}.tar").write_bytes(tar)
        if parquet is not None:
            (folder / f"{i:05d}.parquet").write_bytes(parquet)
    return folder


def good_shard(prefix: str, n: int = 4) -> tuple[bytes, bytes]:
    samples = [Sample(f"{prefix}{j:04d}", image=jpeg(32, j)) for j in range(n)]
    return tar_bytes(sample_members(samples)), parquet_bytes(rows_table(samples))


def keys_of(prefix: str, n: int = 4) -> set[str]:
    return {f"{prefix}{j:04d}" for j in range(n)}


# -- an evaluation set in CLIP_benchmark's layout and a checkpoint to evaluate ---------------------
def write_eval_set(root: Path, name: str, test: list[tuple[str, bytes, bytes]],
                   train: list[tuple[str, bytes, bytes]] | None = None, classes: int = 2) -> Path:
    """datasets/<name>/{train,test}/0.tar of (key, image, cls bytes), nshards.txt, classnames.txt."""
    folder = root / "datasets" / name
    for split, items in (("test", test), ("train", train)):
        if items is None:
            continue
        (folder / split).mkdir(parents=True, exist_ok=True)
        members = [m for key, image, cls in items for m in ((f"{key}.jpg", image), (f"{key}.cls", cls))]
        (folder / split / "0.tar").write_bytes(tar_bytes(members))
        (folder / split / "nshards.txt").write_text("1\n")
    (folder / "classnames.txt").write_text("".join(f"class{c}\n" for c in range(classes)))
    return folder


def labelled(n: int = 6, classes: int = 2) -> list[tuple[str, bytes, bytes]]:
    return [(f"s{i:04d}", jpeg(32, i), str(i % classes).encode()) for i in range(n)]


def write_checkpoint(root: Path, run: str = "corpus-run", step: int = 1) -> Path:
    """checkpoints/<run>/step_<step>.pt of an untrained laclip-tiny, as the trainer saves it."""
    import open_clip
    import torch

    import laclip.train.model  # noqa: F401  (registers laclip-tiny)

    torch.manual_seed(0)
    model = open_clip.create_model("laclip-tiny")
    path = root / "checkpoints" / run / f"step_{step}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "config": {"model": "laclip-tiny"}, "step": step}, path)
    return path


# -- the corpus ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One hostile input or fault. `check(tmp)` raises (AssertionError) unless the case ends in its
    documented outcome; tmp is an empty folder of its own."""

    klass: int
    name: str
    check: Callable[[Path], None]
    slow: bool = False
    group: str | None = None  # cases sharing a store built once per process run on one xdist worker

    @property
    def id(self) -> str:
        return f"c{self.klass}-{self.name}"


CLASSES = {
    1: "columns of the wrong type",
    2: "duplicates",
    3: "images that are not what they claim",
    4: "'never fatal' that was fatal",
    5: "faults without a message",
    6: "user text shown as markup",
    7: "user text that changes rendered objects",
    8: "where the command is run from",
    9: "small tracebacks and misleading answers",
    10: "files others must read",
    11: "the CLI's flag surface (seeded random invocations)",
    # round two (1xx: class xx of round two)
    101: "ties scored as correct",
    102: "results made with other settings paired",
    103: "a finished training run handed back for other settings or data",
    104: "the pipeline reusing models trained on data that has since changed",
    105: "exports and rewrite ids that outlive what made them (and the same input refused)",
    106: "damaged eval records",
    107: "leases with bad fields",
    108: "permanent errors retried, messages that blame the wrong thing (eval arguments included)",
}


def run_entry(main: Callable[[list[str]], int], argv: list[str]) -> tuple[int, str]:
    """A container entrypoint's main(argv) in this process: (exit code, what it logged). The logging
    set-up it makes is undone afterwards."""
    import logging

    root = logging.getLogger("laclip")
    saved = (list(root.handlers), root.level, root.propagate)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else 1
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        root.propagate = saved[2]
    return code, err.getvalue()
