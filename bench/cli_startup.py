"""Start-up time of the `laclip` console script (target: median under 1 s for `--help`)."""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time


def median_seconds(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def console_script() -> str:
    """The `laclip` beside this Python (a venv used without activating it), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "laclip")
    return beside if os.path.exists(beside) else (shutil.which("laclip") or "laclip")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    exe = console_script()
    for cmd in ([exe, "--help"], [exe, "submit", "--help"], [exe, "version"]):
        seconds = median_seconds(cmd, args.runs)
        print(f"| `{' '.join(['laclip', *cmd[1:]])}` | {seconds:.3f} s median of {args.runs} |")
