"""`--local`: the pods' own entrypoints as processes on this machine.

An Indexed Job runs as one `python -m <entry> --config-file F` per completion index (at most
`workers` at once, JOB_COMPLETION_INDEX set as Kubernetes sets it, a failed index retried as
backoffLimitPerIndex would, but never after EXIT_PERMANENT). A TorchX AppDef runs as its role's
own command line. Every child is in a process group this process owns (laclip.procs): a
Ctrl-C, a SIGTERM, a dropped ssh session (SIGHUP) or the CLI dying ends them all.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from laclip import procs
from laclip.errors import EXIT_PERMANENT, LaclipError, UsageError


def child_env(extra: dict | None = None) -> dict:
    """The environment of a local child: ours, the safe `python -m` path, Python's folder first
    on PATH (a venv used without activating it still finds torchrun)."""
    env = {**os.environ, **procs.PYTHON_ENV, **(extra or {})}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def run_indexed(entry: str, config_json: str, indexes: list[int], *, workers: int = 1, retries: int = 0,
                echo: bool = False, progress: Callable[[int, int], None] | None = None,
                env: dict | None = None, what: str = "") -> None:
    """Run `indexes` of an Indexed Job; raises naming the failed ones (with the end of their logs)."""
    workers = max(1, min(workers, len(indexes) or 1))
    total, finished = len(indexes), 0
    with tempfile.TemporaryDirectory(prefix="laclip-local-") as tmp, procs.Group() as group:
        config_file = Path(tmp) / "config.json"
        config_file.write_text(config_json, encoding="utf-8")
        cmd = [sys.executable, "-m", entry, "--config-file", str(config_file)]
        base = child_env(env)
        pending = [(i, 0) for i in indexes]
        running: dict[int, tuple] = {}
        failed: dict[int, tuple[int, str]] = {}
        while pending or running:
            while pending and len(running) < workers:
                i, attempt = pending.pop(0)
                log = Path(tmp) / f"{i}.{attempt}.log"
                with open(log, "wb") as f:
                    out = None if echo else f
                    proc = group.start(cmd, env={**base, "JOB_COMPLETION_INDEX": str(i)}, stdout=out,
                                       stderr=None if echo else f)
                running[i] = (proc, attempt, log)
            time.sleep(0.05)
            for i, (proc, attempt, log) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                del running[i]
                if rc not in (0, EXIT_PERMANENT) and attempt < retries:
                    pending.append((i, attempt + 1))
                    continue
                if rc != 0:
                    failed[i] = (rc, _tail(log))
                finished += 1
                if progress:
                    progress(finished, total)
    if failed:
        lines = "; ".join(f"index {i} (exit {rc}){': ' + ' '.join(tail.split()) if tail else ''}"
                          for i, (rc, tail) in sorted(failed.items())[:3])
        kind = UsageError if all(rc == EXIT_PERMANENT for rc, _ in failed.values()) else LaclipError
        raise kind(f"{what or entry}: {len(failed)} of {total} indexes failed: {lines}")


def _tail(log: Path, chars: int = 600) -> str:
    text = log.read_text(errors="replace").strip() if log.exists() else ""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if " error: " in ln or '"severity": "ERROR"' in ln]
    return (errors[-1] if errors else "\n".join(lines[-8:]))[-chars:]


def run_role(app, *, echo: Callable[[str], None] | None = None) -> int:
    """Run a one-role TorchX AppDef's command here, in a process group we own; its exit code.
    Output goes to our stdout/stderr (or line by line to `echo`)."""
    from torchx.specs import macros

    role = app.roles[0]
    values = macros.Values(img_root=os.getcwd(), app_id=app.name, replica_id="0", rank0_env="MASTER_ADDR",
                           base_img_root="")
    role = values.apply(role)
    cmd = [role.entrypoint, *role.args]
    with procs.Group() as group:
        if echo is None:
            proc = group.start(cmd, env=child_env(role.env))
            return proc.wait()
        import subprocess

        proc = group.start(cmd, env=child_env(role.env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, errors="replace", bufsize=1)
        for line in proc.stdout:
            echo(line.rstrip("\n"))
        return proc.wait()
