"""Run every benchmark module in bench/ one after the other (`make bench`); bench.gpu only when named
(`python -m bench gpu`: it needs a GPU)."""

import pkgutil
import runpy
import sys
from pathlib import Path

names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_"))
only = set(sys.argv[1:])
for name in names:
    if (only and name not in only) or (name == "gpu" and name not in only):
        continue
    print(f"== bench.{name}", flush=True)
    runpy.run_module(f"bench.{name}", run_name="__main__")
