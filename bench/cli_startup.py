"""Start-up time of the `laclip` console script (target: median under 1 s for `--help`)."""

import shutil
import statistics
import subprocess
import time


def median_seconds(cmd: list[str], runs: int = 10) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


if __name__ == "__main__":
    exe = shutil.which("laclip") or "laclip"
    for cmd in ([exe, "--help"], [exe, "submit", "--help"], [exe, "version"]):
        print(f"| `{' '.join(['laclip', *cmd[1:]])}` | {median_seconds(cmd):.3f} s median of 10 |")
