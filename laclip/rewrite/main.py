"""The rewrite pod's entrypoint: `python -m laclip.rewrite.main --config JSON` (laclip.entrypoint).

Exit codes: 0 done; 3 (EXIT_PERMANENT) bad config or data, or a shard listing that changed since
submit (Kubernetes `FailIndex`, no retry); 1 anything else (retried up to backoffLimitPerIndex).
"""

import sys

from laclip.entrypoint import main
from laclip.rewrite.config import RewriteConfig


def run(cfg: RewriteConfig) -> None:
    from laclip.rewrite.worker import run as run_pod

    run_pod(cfg)


if __name__ == "__main__":
    sys.exit(main("rewrite", RewriteConfig, run))
