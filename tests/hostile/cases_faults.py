"""Hostile-input class 5: storage faults end in one line naming the path and the cause, classed permanent or
transient so that the retry policy fits (laclip.storage.faults).

Real faults: a full and a read-only tmpfs in a mount namespace of its own (`unshare`), a folder owned by
a user the probe process does not map to (permission denied even for root), and a local HTTP server that
answers the real google-cloud-storage client with the status under test (STORAGE_EMULATOR_HOST).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .harness import Case, assert_clean_error, laclip

REPO = Path(__file__).resolve().parents[2]
NOBODY = 12345  # an owner no user namespace of the probe maps: no capability overrides its modes


class Skip(Exception):
    """This machine cannot make the fault (no user namespaces)."""


def _probe_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(REPO)) if p)
    return env


def probe(op: str, root: Path, path: str, *extra: str, mount: str | None = None, denied: Path | None = None) -> dict:
    """The outcome of one store operation in a child process. mount: "full" or "ro" puts a 64 KiB tmpfs
    (read-only for "ro") at root first; denied: a folder made unreadable for the child."""
    cmd = [sys.executable, "-m", "tests.hostile.faultprobe", op, str(root), path, *extra]
    if mount:
        if not shutil.which("unshare"):
            raise Skip("no unshare(1)")
        remount = f" && mount -o remount,ro {shlex.quote(str(root))}" if mount == "ro" else ""
        script = (f"mount -t tmpfs -o size=64k tmpfs {shlex.quote(str(root))}{remount} && "
                  f"cd / && exec {shlex.join(cmd)}")
        cmd = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script]
    elif denied is not None:
        if os.geteuid() == 0:  # root bypasses modes; in a user namespace, not for an unmapped owner
            os.chown(denied, NOBODY, NOBODY)
            cmd = ["unshare", "--user", "--map-root-user", *cmd]
        denied.chmod(0o700 if os.geteuid() == 0 else 0o000)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=_probe_env(), cwd="/")
    finally:
        if denied is not None and os.geteuid() != 0:
            denied.chmod(0o755)
    if proc.returncode != 0 or not proc.stdout.strip():
        if "unshare" in proc.stderr and ("Operation not permitted" in proc.stderr or "Invalid" in proc.stderr):
            raise Skip(proc.stderr.strip())
        raise AssertionError(f"probe failed (exit {proc.returncode}): {proc.stderr[-1500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def assert_fault(outcome: dict, permanent: bool, *words: str) -> None:
    """A LaclipError of one line, classed as expected, naming what is given (the path, the cause)."""
    assert not outcome["ok"], "the operation succeeded: no fault was made"
    assert outcome["laclip"], f"{outcome['type']} escaped: {outcome['traceback']}"
    message = outcome["message"]
    assert "\n" not in message.strip(), message
    assert outcome["permanent"] == permanent, \
        f"{outcome['type']} is {'permanent' if outcome['permanent'] else 'transient'}: {message}"
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


# -- local folders ----------------------------------------------------------------------------------
LOCAL = [  # (name, op, mount, expected cause)
    ("full-disk-write", "write", "full", "No space left on device"),
    ("full-disk-create-only-write", "write-create-only", "full", "No space left on device"),
    ("full-disk-upload", "upload", "full", "No space left on device"),
    ("full-disk-checkpoint", "checkpoint-save", "full", "No space left on device"),
    ("read-only-write", "write", "ro", "Read-only file system"),
    ("read-only-upload", "upload", "ro", "Read-only file system"),
]


def _local_mount(name: str, op: str, mount: str, cause: str) -> Case:
    def run(tmp: Path) -> None:
        root = tmp / "store"
        root.mkdir()
        path = "datasets/x/00000.tar"
        outcome = probe(op, root, path, mount=mount)
        assert_fault(outcome, True, cause, str(root))
    return Case(5, f"local-{name}", run, slow=True)  # the probe is a child process


DENIED = [  # (name, op, the path under the denied folder, expected words)
    ("read", "read", "f.bin"), ("open", "open", "f.bin"), ("list", "list", ""), ("exists", "exists", "f.bin"),
    ("delete", "delete", "f.bin"), ("write", "write", "new.bin"), ("checkpoint-load", "checkpoint-load", "step_1.pt"),
]


def _local_denied(name: str, op: str, leaf: str) -> Case:
    def run(tmp: Path) -> None:
        root = tmp / "store"
        denied = root / "checkpoints" / "r"
        denied.mkdir(parents=True)
        for f in ("f.bin", "step_1.pt"):
            (denied / f).write_bytes(b"data")
        outcome = probe(op, root, f"checkpoints/r/{leaf}".rstrip("/"), denied=denied)
        assert_fault(outcome, True, "Permission denied", str(root))
    return Case(5, f"local-permission-denied-{name}", run, slow=True)


def _download_denied(tmp: Path) -> None:
    root, target = tmp / "store", tmp / "out"
    (root / "checkpoints").mkdir(parents=True)
    (root / "checkpoints" / "f.bin").write_bytes(b"data")
    target.mkdir()
    outcome = probe("download", root, "checkpoints/f.bin", str(target / "copy.bin"), denied=target)
    assert_fault(outcome, True, "Permission denied", "f.bin")


def _cli_denied(tmp: Path) -> None:
    """The command names the folder and the cause in one line, and exits as a permanent error would."""
    from .harness import good_shard, write_dataset

    folder = write_dataset(tmp / "store", "locked", [good_shard("0000")])
    if os.geteuid() == 0:  # run the command as a process that cannot enter the folder
        os.chown(folder, NOBODY, NOBODY)
        folder.chmod(0o700)
        cmd = ["unshare", "--user", "--map-root-user", sys.executable, "-m", "laclip_cli.main",
               "--root", str(tmp / "store"), "datasets", "show", "locked"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=_probe_env(), cwd="/")
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode not in (0, 70) and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
        assert "Permission denied" in lines[0] and "locked" in lines[0], lines[0]
        return
    folder.chmod(0o000)
    try:
        assert_clean_error(laclip("--root", str(tmp / "store"), "datasets", "show", "locked"), "Permission denied")
    finally:
        folder.chmod(0o755)


# -- gs:// ------------------------------------------------------------------------------------------
class _Answer(BaseHTTPRequestHandler):
    status = 500
    reason = "backendError"

    def _reply(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({"error": {"code": self.status, "message": f"injected {self.status}",
                                     "errors": [{"message": f"injected {self.status}",
                                                 "reason": self.reason}]}}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _reply

    def log_message(self, *args):
        pass


def answering(status: int, reason: str = "backendError"):
    """A local HTTP server that answers every request with `status` (the store under test's view of GCS)."""
    handler = type("Handler", (_Answer,), {"status": status, "reason": reason})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


GCS_STATUS = {  # (status, reason) -> (permanent?, words the message holds)
    (400, "invalid"): (True, "400"), (401, "required"): (False, "refused"), (403, "forbidden"): (True, "403"),
    (403, "quotaExceeded"): (True, "no room left"), (404, "notFound"): (True, "does not exist"),
    (409, "conflict"): (True, "409"), (413, "uploadTooLarge"): (True, "413"),
    (429, "rateLimitExceeded"): (False, "answered 429 after retrying"),
    (500, "backendError"): (False, "answered 500 after retrying"),
    (503, "backendError"): (False, "answered 503 after retrying"),
    (507, "insufficientStorage"): (True, "507"), (501, "notImplemented"): (False, "answered 501"),
}


def _gcs(status: int, reason: str, op: str) -> Case:
    permanent, word = GCS_STATUS[status, reason]

    def run(tmp: Path) -> None:
        from laclip.errors import LaclipError
        from laclip.storage.gcs import GCSStore

        server = answering(status, reason)
        saved = os.environ.get("STORAGE_EMULATOR_HOST")
        os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            store = GCSStore("gs://fault-bucket/prefix", retry_timeout=0.5, request_timeout=5)
            call = {"read": lambda: store.read_bytes("datasets/x/00000.parquet"),
                    "write": lambda: store.write_bytes("datasets/x/00000.parquet", b"x", create_only=True),
                    "list": lambda: store.list("datasets/"),
                    "exists": lambda: store.exists("datasets/x/00000.parquet")}[op]
            try:
                call()
            except LaclipError as exc:
                outcome = {"ok": False, "laclip": True, "type": type(exc).__name__, "permanent": exc.permanent,
                           "message": str(exc), "traceback": ""}
            except Exception as exc:  # noqa: BLE001
                outcome = {"ok": False, "laclip": False, "type": type(exc).__name__, "traceback": repr(exc)}
            else:
                outcome = {"ok": True}
        finally:
            server.shutdown()
            if saved is None:
                os.environ.pop("STORAGE_EMULATOR_HOST", None)
            else:
                os.environ["STORAGE_EMULATOR_HOST"] = saved
        if status == 404 and op == "exists":
            assert outcome["ok"], outcome  # an answer, not a fault: the object is not there
            return
        assert_fault(outcome, permanent, word, "gs://fault-bucket/prefix")
    name = f"gcs-{status}-{op}" if reason in ("backendError", "forbidden") else f"gcs-{status}-{reason}-{op}"
    return Case(5, name, run)


CASES = ([_local_mount(*c) for c in LOCAL] + [_local_denied(*c) for c in DENIED]
         + [Case(5, "local-permission-denied-download-target", _download_denied, slow=True),
            Case(5, "cli-permission-denied-dataset-folder", _cli_denied, slow=True)]
         + [_gcs(status, reason, op) for status, reason in GCS_STATUS for op in ("read", "write", "list", "exists")
            if op in ("read", "write") or status in (403, 404, 500, 507)])
