"""Round two, classes 107 and 108: records with bad fields (leases), and permanent errors that are retried or
messages that blame the wrong thing. A lease whose clock cannot be read (no number, NaN, a far future) is
stale, taken over with a warning that says so, never a traceback or a run refused forever; a model folder
that does not load ends the index with the permanent exit code; a bad value names what the user typed
(the flag, the --set key, or the config file and its key); true/false is not a number; a step of one
sample is refused; `rewrites import` reads a .tsv as tab-separated and says how to start afresh.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pyarrow.parquet as pq

from .cases_reuse import _copy, _demo
from .harness import Case, assert_clean_error, assert_ok, laclip


# -- class 107: leases with bad fields --------------------------------------------------------------
def _write_lease(root: Path, run: str, record_time, refreshed, raw_alive: bytes | None = None) -> None:
    folder = root / "leases" / run
    folder.mkdir(parents=True, exist_ok=True)
    record = {"owner": "another-submission", "host": "another-host", "pid": 4242, "time": record_time,
              "started": "2025-01-01T00:00:00+00:00", "run": run}
    (folder / "00000000.json").write_text(json.dumps(record))
    if raw_alive is not None:
        (folder / "00000000.alive").write_bytes(raw_alive)
    elif refreshed is not ...:
        (folder / "00000000.alive").write_text(json.dumps({"refreshed": refreshed, "host": "another-host",
                                                           "pid": 4242}))


class _Logged(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def _lease(name: str, record_time, refreshed=..., raw_alive=None, taken: bool = True) -> Case:
    """Lease.acquire, as rank 0 of the trainer calls it: a stale lease is taken with a warning naming why."""
    def run(tmp: Path) -> None:
        from laclip.errors import LeaseHeld
        from laclip.lease import Lease
        from laclip.storage import open_store

        now = time.time()
        rt = record_time(now) if callable(record_time) else record_time
        rf = refreshed(now) if callable(refreshed) else refreshed
        _write_lease(tmp, "r", rt, rf, raw_alive)
        handler = _Logged()
        log = logging.getLogger("laclip.lease")
        log.addHandler(handler)
        try:
            lease = Lease(open_store(str(tmp)), "r", "me", 600)
            if taken:
                lease.acquire()
                assert lease.seq == 1
                assert any("took over" in line for line in handler.lines), handler.lines
            else:
                try:
                    lease.acquire()
                except LeaseHeld as exc:
                    assert "-" not in str(exc).split("alive", 1)[1].split("ago")[0], str(exc)  # no negative age
                else:
                    raise AssertionError("a live lease was taken")
        finally:
            log.removeHandler(handler)
    return Case(107, f"lease-{name}", run)


def _fresh(now):
    return now - 10


def _old(now):
    return now - 3600


LEASES = [
    _lease("refreshed-not-a-number", _fresh, "abc"), _lease("refreshed-empty-text", _fresh, ""),
    _lease("refreshed-nan", _fresh, float("nan")), _lease("refreshed-infinity", _fresh, float("inf")),
    _lease("refreshed-a-year-ahead", _fresh, lambda now: now + 365 * 86400),
    _lease("refreshed-a-day-ahead", _fresh, lambda now: now + 86400), _lease("refreshed-1e308", _fresh, 1e308),
    _lease("refreshed-true", _fresh, True), _lease("refreshed-number-as-text", _fresh, lambda now: str(now - 5)),
    _lease("refreshed-a-list", _fresh, [1, 2]),
    _lease("time-not-a-number-no-alive", "abc"), _lease("time-nan-no-alive", float("nan")),
    _lease("time-a-year-ahead-no-alive", lambda now: now + 365 * 86400),
    _lease("time-missing-no-alive", None),
    _lease("alive-not-json-old-lease", _old, raw_alive=b"{half a rec"),
    _lease("alive-not-utf8-old-lease", _old, raw_alive=b"\xff\xfe\x00"),
    _lease("refreshed-a-minute-ahead-is-alive", _fresh, lambda now: now + 60, taken=False),
    _lease("refreshed-just-now-is-alive", _fresh, lambda now: now - 1, taken=False),
]


def _lease_cli(tmp: Path) -> None:
    """`submit train --local` on a run whose lease has an unreadable clock: trained, not a traceback."""
    root = tmp / "store"
    _demo(root)
    _write_lease(root, "leased", time.time() - 10, "abc")
    res = laclip("--root", str(root), "submit", "train", "--dataset", "demo", "--local", "--run", "leased", "--steps",
                 "1", "--workers", "0", "--batch-size", "8")
    assert_ok(res)
    assert (root / "checkpoints" / "leased" / "step_1.pt").exists()


# -- class 108: permanent errors, and messages that blame the wrong thing -------------------------------
def _tiny_model(folder: Path) -> None:
    from laclip.rewrite.tiny_model import corpus, make_tiny_llama

    make_tiny_llama(folder, corpus())


def _broken(name: str, breaks) -> Case:
    def run(tmp: Path) -> None:
        root = tmp / "store"
        _demo(root)
        model = _copy("tiny-llama", _tiny_model, tmp, "llama-tiny")
        breaks(model)
        res = laclip("--root", str(root), "submit", "rewrite", "--dataset", "demo", "--engine", "hf", "--model",
                     str(model), "--local", "--workers", "1")
        assert_clean_error(res, "exit 3")  # permanent: the Job's FailIndex, no retry
        assert "Traceback" not in res.err
    return Case(108, f"hf-model-{name}", run, slow=True)


def _weights(model: Path) -> Path:
    return next(model.glob("*.safetensors"))


BROKEN = [
    _broken("weights-cut-short", lambda m: _weights(m).write_bytes(_weights(m).read_bytes()[:5000])),
    _broken("weights-garbage", lambda m: _weights(m).write_bytes(b"\x00garbage" * 100)),
    _broken("weights-missing", lambda m: _weights(m).unlink()),
    _broken("config-not-json", lambda m: (m / "config.json").write_text("{not json")),
    _broken("config-unknown-model-type", lambda m: (m / "config.json").write_text('{"model_type": "no-such-arch"}')),
]


def _dry(kind: str, *args: str, config: dict | None = None, expect: tuple = (), refuse: tuple = ("--set",),
         ok: bool = False) -> Case:
    """A dry run whose flags or config file hold a bad value: one line naming what the user typed."""
    def run(tmp: Path) -> None:
        extra = []
        if config is not None:
            (tmp / "mine.yaml").write_text(json.dumps(config))
            extra = ["--config-file", str(tmp / "mine.yaml")]
        base = ["--dataset", "demo", "--num-shards", "1"] if kind == "rewrite" else ["--dataset", "demo"]
        res = laclip("--root", str(tmp), "submit", kind, *base, "--dry-run", *extra, *args)
        if ok:
            assert_ok(res)
            return
        assert_clean_error(res, *expect)
        for word in refuse:
            assert word not in res.messages[0], f"{word!r} blamed: {res.messages[0]}"
    name = "-".join(a.strip("-").replace("=", "-") for a in args) or "file-" + "-".join(
        f"{k}" for k in (config or {}))
    return Case(108, f"{kind}-{name}", run)


BLAME = [
    _dry("train", config={"nope": 1}, expect=("nope", "mine.yaml")),
    _dry("train", config={"cluster": {"nope": 1}}, expect=("cluster.nope", "mine.yaml")),
    _dry("train", config={"batch_size": -1}, expect=("batch_size", "mine.yaml"), refuse=("--set", "--batch-size")),
    _dry("train", config={"steps": True}, expect=("steps", "mine.yaml")),
    _dry("train", config={"seed": "zero"}, expect=("seed", "mine.yaml"), refuse=("--set", "--seed")),
    _dry("rewrite", config={"nope": 1}, expect=("nope", "mine.yaml")),
    _dry("rewrite", config={"sampling": {"temperature": 9}}, expect=("sampling.temperature", "mine.yaml")),
    *[_dry("train", "--set", f"{key}={value}", expect=(f"--set {key}",), refuse=())
      for key, value in (("steps", "true"), ("batch_size", "true"), ("epochs", "false"), ("lr", "true"),
                         ("seed", "false"), ("tensorboard", "1"), ("compile", "0"))],
    _dry("train", "--set", "steps=3", ok=True), _dry("train", "--set", "tensorboard=false", ok=True),
    _dry("train", "--batch-size", "1", expect=("--batch-size",), refuse=()),
    _dry("train", "--batch-size", "1", "--loss", "multitext", "--texts-per-image", "2", expect=("--batch-size",),
         refuse=()),
    _dry("train", "--batch-size", "1", "--accum-freq", "2", ok=True),
]


def _release(root: Path, folder: Path, sep: str = ",", suffix: str = ".csv") -> dict:
    """A release of the demo's captions: the original (image, caption) and one rewrite file."""
    import csv

    captions = [c for p in sorted((root / "datasets" / "demo").glob("*.parquet"))
                for c in pq.read_table(p).column("caption").to_pylist()]
    folder.mkdir(parents=True, exist_ok=True)
    original = folder / f"demo_original{suffix}"
    with open(original, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=sep) if sep == "," else None
        for i, c in enumerate(captions):
            if writer:
                writer.writerow([f"img/{i:06d}.jpg", c])
            else:
                f.write(f"img/{i:06d}.jpg\t{c}\n")
    rewrites = folder / "demo_chatgpt.txt"
    rewrites.write_text("".join(f"a rewrite of {c}\n" for c in captions))
    return {"original": original, "chatgpt": rewrites, "captions": len(captions)}


def _import_tsv(tmp: Path) -> None:
    root = tmp / "store"
    _demo(root)
    files = _release(root, tmp / "release", sep="\t", suffix=".tsv")
    assert any("," in line for line in files["original"].read_text().splitlines())
    res = laclip("--root", str(root), "rewrites", "import", "--dataset", "demo", "--original", str(files["original"]),
                 "--source", str(files["chatgpt"]), "--rewrite-id", "tsv")
    assert_ok(res)
    summary = json.loads((root / "rewrites" / "demo" / "tsv" / "summary.json").read_text())
    assert summary["matched"] == files["captions"], summary


def _import_changed(given_id: bool) -> Case:
    def run(tmp: Path) -> None:
        root = tmp / "store"
        _demo(root)
        files = _release(root, tmp / "release")
        cmd = ["--root", str(root), "rewrites", "import", "--dataset", "demo", "--original", str(files["original"]),
               "--source", str(files["chatgpt"]), *(["--rewrite-id", "mine"] if given_id else [])]
        assert_ok(laclip(*cmd))
        files["chatgpt"].write_text(files["chatgpt"].read_text().replace("a rewrite", "another rewrite"))
        res = laclip(*cmd)
        assert_clean_error(res, "--rewrite-id")
        assert ("drop it" not in res.messages[0]) and ("derived" not in res.messages[0] or not given_id)
    return Case(108, f"import-files-changed-{'with' if given_id else 'without'}-an-id", run)


CASES = (LEASES + [Case(107, "lease-cli-clock-not-a-number", _lease_cli, slow=True)] + BROKEN + BLAME
         + [Case(108, "import-tsv-with-commas", _import_tsv), _import_changed(False), _import_changed(True)])
