"""Every benchmark in bench/ still runs end to end, at a toy size: the numbers in BENCHMARKS.md
come from these scripts, and a script that rots is found here rather than at the next measurement.
Only that they run and report both sides is checked; speed is measured in bench/, not in tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # each runs a benchmark as a Python process


@pytest.mark.parametrize("module, args, expect", [
    ("cli_startup", ["--runs", "2"], ["`laclip --help`", "`laclip version`"]),
    ("rewrite_pipeline", ["--captions", "200", "--runs", "1", "--skip-hf"], ["rewrite CPU side", "eda engine"]),
    ("train_loader", ["--runs", "1", "--batches", "2", "--per-shard", "200"],
     ["laclip (augment laclip)", "open_clip_train", "256 px JPEG q95"]),
    ("train_loader", ["--data", "demo", "--runs", "1", "--batches", "2"], ["laclip (augment none)", "64 px crops"]),
    ("eval_zeroshot", ["--images-per-class", "4", "--runs", "1"], ["clip_benchmark"]),
    ("train_steps", ["--runs", "1", "--short", "1", "--long", "2", "--per-shard", "200"],
     ["| laclip |", "| open_clip_train |", "data real"]),
    pytest.param("accum_curve", ["--steps", "2", "--log-every", "1"],
                 ["batch 32 x accum 4", "mean |accum - batch 128|"]),  # three trainings
    pytest.param("gpu", ["--toy", "--out", "{tmp}/gpu.json"], ["| train laclip-tiny fp32", "zero-shot", "rewrite hf"]),
    ("rewrite_import", ["--rows", "3000", "--runs", "1"], ["| rewrite import |", "matched "]),
])
def test_benchmark_runs(module, args, expect, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = subprocess.run([sys.executable, "-m", f"bench.{module}", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for text in expect:
        assert text in proc.stdout, proc.stdout[-3000:]
    if module == "gpu":  # every number in the file, the table printed last
        import json

        results = json.loads((tmp_path / "gpu.json").read_text())
        assert results["toy"] and results["train"][0]["laclip"] > 0 and results["train"][0]["open_clip_train"] > 0
        assert results["eval"]["images_per_s"]["clip_benchmark"] > 0 and results["rewrite"][0]["captions"] > 0
        assert proc.stdout.rstrip().splitlines()[-1].startswith("| rewrite hf")
