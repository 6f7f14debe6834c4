"""`laclip pipeline --local`: every stage end to end on a small demo store, then again to
show that a second run reuses each finished stage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

LACLIP = str(Path(sys.executable).with_name("laclip"))


@pytest.mark.slow
@pytest.mark.timeout(900)  # three pipeline runs: the last trains a second seed
def test_pipeline_runs_every_stage_then_reuses_them(demo_copy):
    env = {**os.environ, "LACLIP_ROOT": demo_copy.url, "COLUMNS": "160", "OMP_NUM_THREADS": "2"}
    cmd = [LACLIP, "pipeline", "--local", "--steps", "6", "--seed", "1"]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=540)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    for needle in ("CLIP vs LaCLIP", "zero-shot top-1", "few-shot 5-way 5-shot kNN", "linear probe top-1", "total",
                   "95% CI (paired bootstrap)", "McNemar p"):
        assert needle in first.stdout, first.stdout

    [summary_path] = [p for p in demo_copy.list("evals/") if p.endswith("/summary.json")]
    summary = json.loads(demo_copy.read_text(summary_path))
    assert set(summary["runs"]) == {"CLIP", "LaCLIP"}
    assert summary["rewrites"]["prompts"] == 512 * 4 and summary["rewrites"]["kept"] > 0  # 4 sources per caption
    assert "rewrites kept:" in first.stdout
    for label, ckpt in summary["checkpoints"].items():
        assert ckpt.endswith("/step_6.pt") and demo_copy.exists(ckpt), label
        zs = summary["results"][label]["zeroshot_classification"]
        assert 0.0 <= zs["acc1"] <= zs["acc5"] <= 1.0
        assert 0.0 <= summary["results"][label]["fewshot_knn"]["acc1"] <= 1.0
    assert demo_copy.read_bytes(summary_path.replace("summary.json", "clip_vs_laclip.png"))[:8] == b"\x89PNG\r\n\x1a\n"
    # each difference is LaCLIP - CLIP paired over the same test images, with its interval
    diffs = {d["metric"]: d for d in summary["differences"]}
    assert {"zero-shot top-1", "few-shot 5-way 5-shot kNN", "linear probe top-1"} <= set(diffs)
    zs1 = diffs["zero-shot top-1"]
    acc = [summary["results"][m]["zeroshot_classification"]["acc1"] for m in ("CLIP", "LaCLIP")]
    assert zs1["diff"] == pytest.approx(acc[1] - acc[0]) and zs1["lo"] <= zs1["diff"] <= zs1["hi"]
    assert 0 <= zs1["per_seed"][0]["p_mcnemar"] <= 1 and zs1["per_seed"][0]["n"] == 80
    # only LaCLIP reads the rewrites; both runs share the seed and the step budget
    lac = json.loads(demo_copy.read_text(summary["checkpoints"]["LaCLIP"].rsplit("/", 1)[0] + "/config.json"))
    clip = json.loads(demo_copy.read_text(summary["checkpoints"]["CLIP"].rsplit("/", 1)[0] + "/config.json"))
    assert lac["rewrites"] == summary["rewrite_id"] and not clip.get("rewrites")
    assert (lac["seed"], lac["steps"]) == (clip["seed"], clip["steps"]) == (1, 6)

    # one result per (checkpoint, task), each named by what decided it: evals/<run>/step_6/demo-eval/<task>-<id>.json
    from laclip import layout

    for run in summary["runs"].values():
        found = layout.eval_results(demo_copy, run)
        assert sorted((ckpt, ds, task) for ckpt, ds, task, _, _ in found) == [
            ("step_6", "demo-eval", t) for t in ("fewshot_knn", "linear_probe", "zeroshot_classification")]
        assert all(rid and path.endswith(f"{task}-{rid}.json") for _, _, task, rid, path in found)
    evaluated = {p: demo_copy.read_bytes(p) for p in demo_copy.list("evals/") if "/pipeline-" not in p}

    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("reusing") >= 2, second.stdout
    assert json.loads(demo_copy.read_text(summary_path))["results"] == summary["results"]
    # nothing evaluated again: the same result files, byte for byte, and no new ones
    assert {p: demo_copy.read_bytes(p) for p in demo_copy.list("evals/") if "/pipeline-" not in p} == evaluated

    # two seeds: seed 1's models are reused, seed 2's trained; mean differences with t intervals across seeds
    third = subprocess.run(cmd + ["--seeds", "2"], capture_output=True, text=True, env=env, timeout=540)
    assert third.returncode == 0, third.stdout[-4000:] + third.stderr[-4000:]
    assert "seeds 1-2" in third.stdout and "95% CI across seeds" in third.stdout and "reusing" in third.stdout
    [two] = [p for p in demo_copy.list("evals/") if p.endswith("/summary.json") and p != summary_path]
    two = json.loads(demo_copy.read_text(two))
    assert two["seeds"] == [1, 2] and two["per_seed"][0]["results"] == summary["results"]
    zs2 = {d["metric"]: d for d in two["differences"]}["zero-shot top-1"]
    per = [d["diff"] for d in zs2["per_seed"]]
    assert len(per) == 2 and zs2["diff"] == pytest.approx(sum(per) / 2) and zs2["lo"] <= zs2["diff"] <= zs2["hi"]


@pytest.mark.slow
def test_pipeline_refuses_bad_flags_before_any_work(tmp_path):
    for args, needle in ([["--root", str(tmp_path), "pipeline"], "--local"],
                         [["--root", "gs://bucket/x", "pipeline", "--local"], "local folder"],
                         [["--root", str(tmp_path), "pipeline", "--local", "--engine", "gpt"], "runs eda, or hf"],
                         [["--root", str(tmp_path), "pipeline", "--local", "--engine", "hf"], "needs --model"],
                         [["--root", str(tmp_path), "pipeline", "--local", "--model", "m"], "pass --engine vllm, hf"],
                         [["--root", str(tmp_path), "pipeline", "--local", "--engine", "vllm"], "runs eda, or hf"],
                         [["--root", str(tmp_path), "pipeline", "--local", "--seed", str(2**63 - 1), "--seeds", "2"],
                          "invalid --seeds 2"]):
        proc = subprocess.run([LACLIP, *args], capture_output=True, text=True)
        assert proc.returncode == 2 and needle in proc.stdout + proc.stderr, proc
        assert "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())
