"""The get-eval pod's entrypoint: `python -m laclip.fetch.main --config JSON` (laclip.entrypoint).

Exit codes: 0 done; 3 (EXIT_PERMANENT) for what no retry fixes (no such repository, a set with no
published copy, a folder holding another copy); 1 otherwise (the hub unreachable...: retried).
"""

import sys

from laclip.entrypoint import main
from laclip.fetch.config import FetchConfig


def run(cfg: FetchConfig) -> None:
    from laclip.fetch.worker import run as run_pod

    run_pod(cfg)


if __name__ == "__main__":
    sys.exit(main("fetch", FetchConfig, run))
