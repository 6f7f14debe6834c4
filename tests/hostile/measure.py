"""Run the hostile-input corpus and count, per class, the cases that end in their documented outcome.

    .venv/bin/python -m tests.hostile.measure [--json OUT] [-k SUBSTRING[,SUBSTRING...]] [-v]

Against another checkout of laclip (say, the commit before the fix): put its packages first on the
path, e.g. a folder P with links laclip -> CHECKOUT/laclip, laclip_cli -> CHECKOUT/cli and
laclip_jobs -> CHECKOUT/jobs, then `PYTHONPATH=P .venv/bin/python -m tests.hostile.measure` from a folder
whose `tests` links to this checkout's tests (`python -m` puts the current folder first on the path: run
from this checkout's root, its own `laclip` would win over PYTHONPATH's).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from collections import defaultdict
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", help="write {case id: outcome} here")
    ap.add_argument("-k", default="", help="only cases whose id holds this (or one of these, comma-separated)")
    ap.add_argument("-v", action="store_true", help="print why each failing case failed")
    args = ap.parse_args(argv)
    os.environ.setdefault("LACLIP_REGISTRY", "us-docker.pkg.dev/test-project/laclip")
    import laclip

    from .corpus import ALL_CASES
    from .harness import CLASSES

    print(f"laclip from {os.path.dirname(laclip.__file__)}", file=sys.stderr)
    results: dict[str, dict] = {}
    start = time.perf_counter()
    for case in ALL_CASES:
        if not any(k in case.id for k in args.k.split(",")):
            continue
        with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
            here = os.getcwd()
            os.chdir(tmp)
            try:
                case.check(Path(tmp))
                results[case.id] = {"class": case.klass, "ok": True}
            except BaseException as exc:  # noqa: BLE001 - any way of not ending correctly counts
                if isinstance(exc, KeyboardInterrupt):
                    raise
                why = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
                results[case.id] = {"class": case.klass, "ok": False, "why": why}
                if args.v:
                    print(f"FAIL {case.id}: {why}", file=sys.stderr)
                    if os.environ.get("HOSTILE_TRACEBACK"):
                        traceback.print_exc()
            finally:
                os.chdir(here)
    per = defaultdict(lambda: [0, 0])
    for r in results.values():
        per[r["class"]][0] += 1
        per[r["class"]][1] += r["ok"]
    print("| class | cases tried | end correctly |")
    print("|---|---:|---:|")
    for k in sorted(per):
        print(f"| {k}. {CLASSES[k]} | {per[k][0]} | {per[k][1]} |")
    total = [sum(v[0] for v in per.values()), sum(v[1] for v in per.values())]
    print(f"| all | {total[0]} | {total[1]} |")
    print(f"{time.perf_counter() - start:.0f}s", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
