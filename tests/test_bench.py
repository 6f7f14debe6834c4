"""Every benchmark in bench/ still runs end to end, at a toy size: the numbers in BENCHMARKS.md
come from these scripts, and a script that rots is found here rather than at the next measurement.
Only that they run and report both sides is checked; speed is measured in bench/, not in tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module, args, expect", [
    ("cli_startup", ["--runs", "2"], ["`laclip --help`", "`laclip version`"]),
    ("rewrite_pipeline", ["--captions", "200", "--runs", "1", "--skip-hf"], ["rewrite CPU side", "eda engine"]),
    ("train_loader", ["--runs", "1", "--batches", "2"], ["laclip (augment laclip)", "open_clip_train"]),
    ("eval_zeroshot", ["--images-per-class", "4", "--runs", "1"], ["clip_benchmark"]),
    ("train_steps", ["--runs", "1", "--short", "1", "--long", "2"], ["| laclip |", "| open_clip_train |"]),
    ("rewrite_import", ["--rows", "3000", "--runs", "1"], ["| rewrite import |", "matched "]),
])
def test_benchmark_runs(module, args, expect):
    proc = subprocess.run([sys.executable, "-m", f"bench.{module}", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for text in expect:
        assert text in proc.stdout, proc.stdout[-3000:]
