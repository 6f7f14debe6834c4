"""The rewrite-import pod's entrypoint: `python -m laclip.rewrite_import.main --config JSON` (laclip.entrypoint).

Exit codes: 0 done; 3 (EXIT_PERMANENT) bad config or data (files not line-aligned, a shard changed
since an earlier import under this id, other files under this id); 1 anything else (retried).
"""

import sys

from laclip.entrypoint import main
from laclip.rewrite_import.config import ImportConfig


def run(cfg: ImportConfig) -> None:
    from laclip.logs import event
    from laclip.rewrite_import.importer import logger, run_import

    totals = run_import(cfg)
    event(logger, "import-totals", **{k: v for k, v in totals.items() if not isinstance(v, dict)})


if __name__ == "__main__":
    sys.exit(main("rewrite_import", ImportConfig, run))
