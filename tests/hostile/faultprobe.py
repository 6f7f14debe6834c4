"""One store operation in a process of its own, for faults the test process cannot have itself (a full or
read-only filesystem in a mount namespace, a folder it may not enter): prints what came of it as JSON.

    python -m tests.hostile.faultprobe OP ROOT PATH
"""

from __future__ import annotations

import json
import sys
import traceback


def run(op: str, root: str, path: str) -> None:
    from laclip.storage import open_store

    store = open_store(root)
    if op == "write":
        store.write_bytes(path, b"x" * 300_000)
    elif op == "write-create-only":
        store.write_bytes(path, b"x" * 300_000, create_only=True)
    elif op == "upload":
        import tempfile

        with tempfile.NamedTemporaryFile() as f:
            f.write(b"y" * 300_000)
            f.flush()
            store.upload_file(f.name, path)
    elif op == "read":
        store.read_bytes(path)
    elif op == "open":
        store.open_read(path).read()
    elif op == "list":
        store.list(path)
    elif op == "exists":
        store.exists(path)
    elif op == "delete":
        store.delete(path)
    elif op == "download":
        store.download_file(path, sys.argv[4])
    elif op == "checkpoint-save":
        import torch

        from laclip.train import checkpoint

        checkpoint.save(store, "r", 1, {"state_dict": {"w": torch.zeros(100_000)}, "step": 1}, 3)
    elif op == "checkpoint-load":
        from laclip.train import checkpoint

        checkpoint.load(store, path)
    else:
        raise SystemExit(f"unknown op {op}")


def main() -> None:
    op, root, path = sys.argv[1:4]
    outcome = {"ok": True}
    try:
        run(op, root, path)
    except Exception as exc:  # noqa: BLE001 - reported, whatever it is
        from laclip.errors import LaclipError

        outcome = {"ok": False, "type": type(exc).__name__, "laclip": isinstance(exc, LaclipError),
                   "permanent": bool(getattr(exc, "permanent", False)), "message": str(exc),
                   "traceback": "".join(traceback.format_exception(exc))[-1500:]}
    print(json.dumps(outcome))


if __name__ == "__main__":
    main()
