"""What a training pod (and `submit train --local`) runs: torchrun, under a launcher that keeps
permanent errors permanent.

    python -m laclip.train.launch [torchrun options] -m laclip.train.main --config JSON

torchrun restarts its worker group on any worker failure, and exits with its own code, so
neither a typo'd `--rewrites` nor bad data would ever end the Job: each would be retried
max_restarts times per start, on every start the Job makes. The launcher therefore
1. checks what can be checked before any GPU work (the config, the dataset, the rewrite set)
   and exits EXIT_PERMANENT at once when that fails;
2. runs torchrun in a process group of its own, with LACLIP_PERMANENT_FILE set: a worker that
   ends on a permanent error writes its message there (laclip.entrypoint) and the launcher ends
   torchrun at once and exits EXIT_PERMANENT, which the rendered Volcano Job and JobSet treat as
   final; any other end is torchrun's own exit code;
3. ends torchrun and its workers on SIGTERM (the kubelet stopping the pod), SIGINT and SIGHUP,
   and when its own parent dies (the local CLI).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

from laclip import procs
from laclip.entrypoint import PERMANENT_FILE_ENV
from laclip.errors import EXIT_PERMANENT, LaclipError, UsageError
from laclip.logs import setup


def config_of(argv: list[str]) -> str:
    """The TrainConfig JSON that torchrun hands to laclip.train.main."""
    for flag in ("--config", "--config-file"):
        if flag in argv:
            i = argv.index(flag)
            if i + 1 < len(argv):
                value = argv[i + 1]
                if flag == "--config":
                    return value
                with open(value, encoding="utf-8") as f:
                    return f.read()
    raise UsageError("the launcher found no --config for laclip.train.main in its arguments")


def preflight(config_json: str) -> None:
    """Permanent problems that need no GPU: each ends the run before torchrun starts."""
    from laclip.config import load_config
    from laclip.train.config import TrainConfig
    from laclip.train.inputs import check_inputs

    try:
        values = json.loads(config_json)
    except ValueError as exc:
        raise UsageError(f"the training config is not JSON: {exc}") from None
    cfg = load_config(TrainConfig, values)
    check_inputs(cfg)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    log = setup("train")
    try:
        preflight(config_of(argv))
    except (LaclipError, OSError) as exc:
        log.error("%s", " ".join(str(exc).split()))
        return EXIT_PERMANENT if getattr(exc, "permanent", True) else 1
    procs.die_with_parent()
    with tempfile.TemporaryDirectory(prefix="laclip-launch-") as tmp:
        marker = os.path.join(tmp, "permanent")
        env = {**os.environ, PERMANENT_FILE_ENV: marker, **procs.PYTHON_ENV}
        try:
            with procs.Group() as group:
                proc = group.start([sys.executable, "-m", "torch.distributed.run", *argv], env=env)
                while proc.poll() is None:
                    if os.path.exists(marker):  # a worker cannot succeed by trying again: no restart
                        procs.kill(proc)  # no restart, and none of torchrun's shutdown chatter
                        return EXIT_PERMANENT
                    time.sleep(0.1)
                return EXIT_PERMANENT if os.path.exists(marker) else proc.returncode
        except procs.Interrupted as stop:
            return 128 + stop.signum


if __name__ == "__main__":
    sys.exit(main())
