"""The eval pod's entrypoint: `python -m laclip.eval.main --config JSON` (laclip.entrypoint).

Exit codes: 0 done; 3 (EXIT_PERMANENT) bad input, such as an unknown dataset or a checkpoint
that does not load (the Job's podFailurePolicy fails the index: a retry cannot help); 1 anything
else (retried).
"""

import sys

from laclip.entrypoint import main
from laclip.eval.config import EvalConfig


def run(cfg: EvalConfig) -> None:
    from laclip.eval.worker import run as run_pod

    run_pod(cfg)


if __name__ == "__main__":
    sys.exit(main("eval", EvalConfig, run))
